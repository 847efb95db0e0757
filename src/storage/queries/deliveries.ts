/**
 * Deliveries (herald_deliveries): one email, WhatsApp message or webhook POST per row, as planned
 * (insertDeliveries, with digests), sent (lock, mark sent, retrying or dead, postpone), read,
 * listed and redriven, and the job that sends one. Its attempts live in delivery-attempts.ts, the
 * counts rate limits read in rate-counts.ts, providers' status reports in provider-statuses.ts and
 * the WhatsApp window in whatsapp-sessions.ts.
 */
import type { Queryable } from '../db.ts';
import { uuidv7 } from '../../ids.ts';

export type DeliveryState = 'queued' | 'held' | 'sending' | 'sent' | 'failed' | 'dead';
export const DELIVERY_STATES: DeliveryState[] = ['queued', 'held', 'sending', 'sent', 'failed', 'dead'];

export interface DeliveryRow {
  id: string;
  event_id: string | null;
  event_type: string;
  channel: 'email' | 'whatsapp' | 'webhook';
  user_id: string | null;
  tenant_id: string | null;
  endpoint_id: string | null;
  destination: string;
  destination_host: string | null;
  message: Record<string, any>;
  state: DeliveryState;
  held_reason: string | null;
  not_before: Date | null;
  digest_key: string | null;
  digest_count: number;
  attempts: number;
  max_attempts: number;
  next_attempt_at: Date | null;
  provider: string | null;
  provider_message_id: string | null;
  provider_status: string | null;
  last_error: string | null;
  dedupe_key: string;
  created_at: Date;
  updated_at: Date;
  sent_at: Date | null;
  dead_at: Date | null;
}

/**
 * One email, WhatsApp message or webhook POST to create, as the rules plan it (rules/plan-channels.ts
 * re-exports it) and insertDeliveries stores it.
 */
export interface PlannedDelivery {
  channel: DeliveryRow['channel'];
  userId: string | null;
  tenantId: string | null;
  endpointId: string | null;
  destination: string;
  destinationHost: string | null;
  message: Record<string, unknown>;
  /** `${eventId}:${channel}:${user or endpoint}`: re-processing an event creates nothing new. */
  dedupeKey: string;
  /** queued: send now; held: wait for the end of quiet hours; digest: open or join a digest. */
  decision: 'queued' | 'held' | 'digest';
  reason: string;
  heldUntil: Date | null;
  digest: { key: string; windowMs: number } | null;
}

const COLUMNS = `id, event_id, event_type, channel, user_id, tenant_id, endpoint_id, destination, destination_host, message,
  state, held_reason, not_before, digest_key, digest_count, attempts, max_attempts, next_attempt_at, provider,
  provider_message_id, provider_status, last_error, dedupe_key, created_at, updated_at, sent_at, dead_at`;

/** A delivery that needs a send job, due at `runAtMs` (null: now). */
export interface NewDelivery {
  id: string;
  runAtMs: number | null;
}

/**
 * Stores an event's planned deliveries in the caller's transaction and returns the ones that need
 * a send job. Plain deliveries go in one statement; a digest joins the open digest for its key
 * (ON CONFLICT on the partial unique index) or opens one that waits out its window.
 */
export async function insertDeliveries(
  tx: Queryable,
  event: { id: string; type: string },
  planned: PlannedDelivery[],
  maxAttempts: number,
): Promise<NewDelivery[]> {
  if (planned.length === 0) return [];
  const existing = new Set(
    (await tx.query<{ dedupe_key: string }>(`SELECT dedupe_key FROM herald_deliveries WHERE dedupe_key = ANY($1::text[])`, [planned.map((p) => p.dedupeKey)]))
      .rows.map((r) => r.dedupe_key),
  );
  const fresh = planned.filter((p) => !existing.has(p.dedupeKey));
  const created: NewDelivery[] = [];
  const plain = fresh.filter((p) => !p.digest);
  if (plain.length) {
    const rows = plain.map((p) => ({
      id: uuidv7(),
      channel: p.channel,
      user_id: p.userId,
      tenant_id: p.tenantId,
      endpoint_id: p.endpointId,
      destination: p.destination,
      destination_host: p.destinationHost,
      message: p.message,
      state: p.decision === 'held' ? 'held' : 'queued',
      held_reason: p.decision === 'held' ? p.reason : null,
      not_before: p.heldUntil?.toISOString() ?? null,
      dedupe_key: p.dedupeKey,
    }));
    const { rows: inserted } = await tx.query<{ id: string; not_before: Date | null }>(
      `INSERT INTO herald_deliveries (id, event_id, event_type, channel, user_id, tenant_id, endpoint_id, destination,
         destination_host, message, state, held_reason, not_before, dedupe_key, max_attempts)
       SELECT t.id, $2, $3, t.channel, t.user_id, t.tenant_id, t.endpoint_id, t.destination, t.destination_host,
              t.message, t.state, t.held_reason, t.not_before, t.dedupe_key, $4
       FROM jsonb_to_recordset($1::jsonb) AS t(id uuid, channel text, user_id uuid, tenant_id uuid, endpoint_id uuid,
         destination text, destination_host text, message jsonb, state text, held_reason text, not_before timestamptz, dedupe_key text)
       ON CONFLICT (dedupe_key) DO NOTHING
       RETURNING id, not_before`,
      [JSON.stringify(rows), event.id, event.type, maxAttempts],
    );
    for (const r of inserted) created.push({ id: r.id, runAtMs: r.not_before?.getTime() ?? null });
  }
  for (const p of fresh.filter((x) => x.digest)) {
    const { rows } = await tx.query<{ id: string; inserted: boolean; not_before: Date }>(
      `INSERT INTO herald_deliveries AS d (id, event_id, event_type, channel, user_id, tenant_id, endpoint_id, destination,
         destination_host, message, state, held_reason, not_before, digest_key, dedupe_key, max_attempts)
       VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, NULL, $8::jsonb, 'held', $9,
               greatest(now() + make_interval(secs => $10::double precision / 1000), $11::timestamptz), $12, $13, $14)
       ON CONFLICT (digest_key) WHERE state = 'held' AND digest_key IS NOT NULL
       DO UPDATE SET digest_count = d.digest_count + 1,
                     message = jsonb_set(d.message, '{items}', (d.message -> 'items') || (EXCLUDED.message -> 'items')),
                     updated_at = now()
         WHERE NOT (d.message -> 'items') @> jsonb_build_array(jsonb_build_object('eventId', EXCLUDED.event_id::text))
       RETURNING id, (xmax = 0) AS inserted, not_before`,
      [
        uuidv7(), event.id, event.type, p.channel, p.userId, p.tenantId, p.destination, JSON.stringify(p.message), p.reason,
        p.digest!.windowMs, p.heldUntil?.toISOString() ?? null, p.digest!.key, p.dedupeKey, maxAttempts,
      ],
    );
    const r = rows[0];
    if (r?.inserted) created.push({ id: r.id, runAtMs: r.not_before.getTime() });
  }
  return created;
}

/** Locks a delivery for the send path (the job that sends it holds its lease). */
export async function lockDelivery(tx: Queryable, id: string): Promise<(DeliveryRow & { now: Date }) | undefined> {
  return (await tx.query<DeliveryRow & { now: Date }>(`SELECT ${COLUMNS}, now() AS now FROM herald_deliveries WHERE id = $1 FOR UPDATE`, [id])).rows[0];
}

export async function markSent(tx: Queryable, id: string, providerMessageId: string | null): Promise<void> {
  await tx.query(
    `UPDATE herald_deliveries SET state = 'sent', sent_at = now(), provider_message_id = $2, last_error = NULL, updated_at = now() WHERE id = $1`,
    [id, providerMessageId],
  );
}

export async function saveMessage(tx: Queryable, id: string, message: Record<string, unknown>): Promise<void> {
  await tx.query(`UPDATE herald_deliveries SET message = $2::jsonb WHERE id = $1`, [id, JSON.stringify(message)]);
}

export async function markRetrying(tx: Queryable, id: string, error: string, delayMs: number): Promise<void> {
  await tx.query(
    `UPDATE herald_deliveries SET state = 'failed', last_error = $2,
       next_attempt_at = now() + make_interval(secs => $3::double precision / 1000), updated_at = now() WHERE id = $1`,
    [id, error.slice(0, 2000), delayMs],
  );
}

export async function markDead(tx: Queryable, id: string, reason: string): Promise<void> {
  await tx.query(
    `UPDATE herald_deliveries SET state = 'dead', dead_at = now(), last_error = $2, next_attempt_at = NULL, updated_at = now() WHERE id = $1`,
    [id, reason.slice(0, 2000)],
  );
}

/** Keeps a delivery waiting (a rate limit) without spending an attempt. */
export async function postpone(tx: Queryable, id: string, delayMs: number, reason: string): Promise<void> {
  await tx.query(
    `UPDATE herald_deliveries SET held_reason = $2, next_attempt_at = now() + make_interval(secs => $3::double precision / 1000), updated_at = now() WHERE id = $1`,
    [id, reason, delayMs],
  );
}

export async function getDelivery(db: Queryable, id: string): Promise<DeliveryRow | undefined> {
  return (await db.query<DeliveryRow>(`SELECT ${COLUMNS} FROM herald_deliveries WHERE id = $1`, [id])).rows[0];
}

export interface DeliveryFilter {
  state?: DeliveryState;
  channel?: string;
  eventId?: string;
  userId?: string;
  provider?: string;
  /** Keyset: rows older than this id (ids are time-ordered UUIDv7). */
  before?: string;
  limit: number;
}

/** Newest first, keyset-paginated by id. */
export async function listDeliveries(db: Queryable, f: DeliveryFilter): Promise<DeliveryRow[]> {
  const where: string[] = [];
  const args: unknown[] = [];
  const add = (sql: string, v: unknown) => {
    args.push(v);
    where.push(sql.replace('?', `$${args.length}`));
  };
  if (f.state) add('state = ?', f.state);
  if (f.channel) add('channel = ?', f.channel);
  if (f.eventId) add('event_id = ?::uuid', f.eventId);
  if (f.userId) add('user_id = ?::uuid', f.userId);
  if (f.provider) add('provider = ?', f.provider);
  if (f.before) add('id < ?::uuid', f.before);
  args.push(f.limit);
  const { rows } = await db.query<DeliveryRow>(
    `SELECT ${COLUMNS} FROM herald_deliveries ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT $${args.length}`,
    args,
  );
  return rows;
}

/**
 * Puts dead deliveries back in the queue with a fresh set of attempts (their history stays).
 * Returns the ids redriven; the caller enqueues their send jobs in the same transaction.
 */
export async function redrive(tx: Queryable, ids: string[] | 'all-dead', maxAttempts: number): Promise<string[]> {
  const { rows } = await tx.query<{ id: string }>(
    `UPDATE herald_deliveries SET state = 'queued', max_attempts = attempts + $2, dead_at = NULL, next_attempt_at = NULL,
       held_reason = NULL, not_before = NULL, updated_at = now()
     WHERE state = 'dead' AND ($1::uuid[] IS NULL OR id = ANY($1::uuid[]))
     RETURNING id`,
    [ids === 'all-dead' ? null : ids, maxAttempts],
  );
  return rows.map((r) => r.id);
}

export async function deliveryCounts(db: Queryable): Promise<{ channel: string; state: string; n: number }[]> {
  return (await db.query<{ channel: string; state: string; n: number }>(`SELECT channel, state, count(*)::int AS n FROM herald_deliveries GROUP BY 1, 2 ORDER BY 1, 2`)).rows;
}

/** The job that sends one delivery; keyed so a delivery has at most one queued send. */
export const DELIVERY_JOB = 'delivery.send';
/** Delivery retries are counted on the delivery row; the job only needs room for lost leases. */
const DELIVERY_JOB_MAX_ATTEMPTS = 1000;
export const deliveryJob = (d: NewDelivery) => ({
  kind: DELIVERY_JOB,
  payload: { deliveryId: d.id },
  key: `delivery:${d.id}`,
  maxAttempts: DELIVERY_JOB_MAX_ATTEMPTS,
  runAtMs: d.runAtMs ?? undefined,
});
