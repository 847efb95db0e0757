/**
 * What rate limits count: messages sent to a user on a channel (herald_deliveries) and attempts
 * on a host (herald_delivery_attempts) within a period, with when the oldest ages out.
 */
import type { Queryable } from '../db.ts';

/** How many messages went to this user on this channel within the period, and when the oldest may age out. */
export async function recentSendsTo(tx: Queryable, userId: string, channel: string, periodMs: number) {
  const { rows } = await tx.query<{ n: number; oldest: Date | null }>(
    `SELECT count(*)::int AS n, min(sent_at) AS oldest FROM herald_deliveries
     WHERE user_id = $1 AND channel = $2 AND sent_at > now() - make_interval(secs => $3::double precision / 1000)`,
    [userId, channel, periodMs],
  );
  return rows[0]!;
}

export async function recentAttemptsOn(tx: Queryable, host: string, periodMs: number) {
  const { rows } = await tx.query<{ n: number; oldest: Date | null }>(
    `SELECT count(*)::int AS n, min(started_at) AS oldest FROM herald_delivery_attempts
     WHERE host = $1 AND started_at > now() - make_interval(secs => $2::double precision / 1000)`,
    [host, periodMs],
  );
  return rows[0]!;
}
