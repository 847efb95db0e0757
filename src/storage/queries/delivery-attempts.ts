/**
 * Delivery attempts (herald_delivery_attempts): one row per try at sending a delivery, started
 * (which also marks the delivery sending), finished with its outcome, or found lost when its
 * worker died mid-send, and the history read back.
 */
import type { Queryable } from '../db.ts';

export interface AttemptRow {
  delivery_id: string;
  attempt: number;
  host: string | null;
  started_at: Date;
  finished_at: Date | null;
  outcome: 'sent' | 'transient' | 'permanent' | 'lost' | null;
  response: string | null;
  error: string | null;
}

/** An attempt that started and never finished belonged to a worker that died mid-send. */
export async function markLostAttempts(tx: Queryable, id: string): Promise<void> {
  await tx.query(
    `UPDATE herald_delivery_attempts SET finished_at = now(), outcome = 'lost', error = 'the worker stopped during the attempt; the message may have been sent'
     WHERE delivery_id = $1 AND finished_at IS NULL`,
    [id],
  );
}

export async function startAttempt(tx: Queryable, d: { id: string; attempt: number; host: string | null; provider: string }): Promise<void> {
  await tx.query(
    `UPDATE herald_deliveries SET state = 'sending', attempts = $2, provider = $3, next_attempt_at = NULL, updated_at = now() WHERE id = $1`,
    [d.id, d.attempt, d.provider],
  );
  await tx.query(
    `INSERT INTO herald_delivery_attempts (delivery_id, attempt, host) VALUES ($1, $2, $3)
     ON CONFLICT (delivery_id, attempt) DO UPDATE SET started_at = now(), finished_at = NULL, outcome = NULL, response = NULL, error = NULL, host = EXCLUDED.host`,
    [d.id, d.attempt, d.host],
  );
}

export async function finishAttempt(
  tx: Queryable,
  d: { id: string; attempt: number; outcome: 'sent' | 'transient' | 'permanent'; response: string | null; error: string | null },
): Promise<void> {
  await tx.query(
    `UPDATE herald_delivery_attempts SET finished_at = now(), outcome = $3, response = $4, error = $5 WHERE delivery_id = $1 AND attempt = $2`,
    [d.id, d.attempt, d.outcome, d.response?.slice(0, 2000) ?? null, d.error?.slice(0, 2000) ?? null],
  );
}

export async function attemptsOf(db: Queryable, id: string): Promise<AttemptRow[]> {
  return (await db.query<AttemptRow>(`SELECT * FROM herald_delivery_attempts WHERE delivery_id = $1 ORDER BY attempt`, [id])).rows;
}
