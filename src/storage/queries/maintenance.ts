import type { Db, Queryable } from '../db.ts';

/**
 * Runs `fn` in a transaction on at most one process at a time: the one that takes the
 * transaction-level advisory lock. The others skip this round instead of waiting.
 */
export async function runAsLeader(db: Db, key: string, fn: (tx: Queryable) => Promise<void>): Promise<boolean> {
  return db.transaction(async (tx) => {
    const { rows } = await tx.query<{ leader: boolean }>(`SELECT pg_try_advisory_xact_lock(hashtext($1)) AS leader`, [key]);
    if (!rows[0]?.leader) return false;
    await fn(tx);
    return true;
  });
}
