import type { Queryable } from '../db.ts';

export interface IdempotencyRow {
  body_sha256: string;
  state: 'pending' | 'done';
  status: number | null;
  response: unknown;
}

/**
 * When an existing key (alias k) may be taken over by a new request: it expired ($ttlHours), or it
 * is a pending key older than 60 s, whose request died.
 */
export const keyTakeover = (ttlHoursParam: string) =>
  `k.created_at < now() - make_interval(hours => ${ttlHoursParam}::int)
   OR (k.state = 'pending' AND k.created_at < now() - interval '60 seconds')`;

/**
 * Claims a key for this request ('pending'), in the transaction that will store its answer
 * (completeKey), so no other request sees it pending: a concurrent claim of the same key waits
 * for that transaction. Also takes over keys that expired, or pending ones a dead request left
 * (written by herald versions that claimed keys in a transaction of their own).
 */
export async function reserveKey(db: Queryable, key: string, bodySha256: string, ttlHours: number): Promise<boolean> {
  const { rowCount } = await db.query(
    `INSERT INTO herald_idempotency_keys AS k (key, body_sha256, state) VALUES ($1, $2, 'pending')
     ON CONFLICT (key) DO UPDATE SET body_sha256 = EXCLUDED.body_sha256, state = 'pending',
       status = NULL, response = NULL, created_at = now()
     WHERE ${keyTakeover('$3')}`,
    [key, bodySha256, ttlHours],
  );
  return rowCount === 1;
}

export async function readKey(db: Queryable, key: string): Promise<IdempotencyRow | undefined> {
  return (
    await db.query<IdempotencyRow>(
      `SELECT body_sha256, state, status, response FROM herald_idempotency_keys WHERE key = $1`,
      [key],
    )
  ).rows[0];
}

/** Stores the response; runs in the transaction that commits the event, so both land or neither. */
export async function completeKey(db: Queryable, key: string, status: number, response: unknown): Promise<void> {
  await completeKeys(db, [{ key, status, response }]);
}

/** completeKey for many keys in one statement (a direct-mode flush answers all its keyed requests). */
export async function completeKeys(db: Queryable, done: { key: string; status: number; response: unknown }[]): Promise<void> {
  if (done.length === 0) return;
  await db.query(
    `UPDATE herald_idempotency_keys k SET state = 'done', status = t.status, response = t.response
     FROM json_to_recordset($1::json) AS t(key text, status int, response json)
     WHERE k.key = t.key`,
    [JSON.stringify(done)],
    { prepare: true },
  );
}

export async function pruneKeys(db: Queryable, ttlHours: number): Promise<number> {
  return (
    await db.query(`DELETE FROM herald_idempotency_keys WHERE created_at < now() - make_interval(hours => $1::int)`, [
      ttlHours,
    ])
  ).rowCount;
}
