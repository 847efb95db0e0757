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

export async function readKey(db: Queryable, key: string): Promise<IdempotencyRow | undefined> {
  return (
    await db.query<IdempotencyRow>(
      `SELECT body_sha256, state, status, response FROM herald_idempotency_keys WHERE key = $1`,
      [key],
    )
  ).rows[0];
}

/**
 * Stores the responses of keys claimed 'pending' (a direct-mode flush answers all its keyed
 * requests in one statement), in the transaction that claimed them, so both land or neither.
 */
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
