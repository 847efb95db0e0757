import { PGlite, type Transaction } from '@electric-sql/pglite';
import type { Db, QueryResult, Queryable } from '../db.ts';

/**
 * Embedded Postgres (WASM) in a local directory. PGlite is a single connection: it serialises
 * queries and transactions itself, so a transaction here blocks other queries until it ends.
 */
export async function openPglite(dataDir: string | undefined, dump?: Blob): Promise<Db> {
  const pglite = await PGlite.create({ ...(dataDir ? { dataDir } : {}), ...(dump ? { loadDataDir: dump } : {}) });
  // One process owns a PGlite directory, so a wake-up only has in-process listeners to reach.
  const listeners = new Map<string, Set<(payload: string) => void>>();

  function wrap(q: PGlite | Transaction): Queryable {
    return {
      async query<T>(text: string, values?: unknown[]): Promise<QueryResult<T>> {
        const res = await q.query<T>(text, values);
        return { rows: res.rows, rowCount: res.affectedRows ?? res.rows.length };
      },
      async exec(sql: string) {
        await q.exec(sql);
      },
      // In process there is no round trip to save: the statements one by one, in a transaction of
      // their own unless already inside one.
      async pipeline(statements) {
        const run = async (t: PGlite | Transaction) => {
          const results: QueryResult<Record<string, unknown>>[] = [];
          for (const s of statements) results.push(await wrap(t).query(s.text, s.values));
          return results;
        };
        return q instanceof PGlite ? q.transaction(run) : run(q);
      },
    };
  }

  const db: Db = {
    kind: 'pglite',
    ...wrap(pglite),
    transaction: (fn, opts) =>
      pglite.transaction(async (tx) => {
        if (opts?.begin) await tx.query(opts.begin.text, opts.begin.values);
        return fn(wrap(tx));
      }),
    // One process owns a PGlite directory, so the lock is uncontended; it is still taken so the
    // migration code path is the same on both backends.
    async withAdvisoryLock(key, fn) {
      await pglite.query('SELECT pg_advisory_lock(hashtext($1))', [key]);
      try {
        return await fn(db);
      } finally {
        await pglite.query('SELECT pg_advisory_unlock(hashtext($1))', [key]);
      }
    },
    async listen(channel, onNotify) {
      const unsub = await pglite.listen(channel, onNotify);
      let set = listeners.get(channel);
      if (!set) listeners.set(channel, (set = new Set()));
      set.add(onNotify);
      return async () => {
        set.delete(onNotify);
        await unsub();
      };
    },
    wake(channel) {
      for (const fn of listeners.get(channel) ?? []) fn('');
    },
    dumpDataDir: async () => pglite.dumpDataDir('none'),
    async close() {
      await pglite.close();
    },
  };
  return db;
}
