import pg from 'pg';
import type { Db, QueryResult, Queryable } from '../db.ts';

// Return timestamps and bigints as the same JS types PGlite gives, so callers see one shape.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

export interface PgOptions {
  connectionString: string;
  max?: number;
  onError?: (err: Error) => void;
}

function wrap(client: pg.PoolClient | pg.Pool): Queryable {
  return {
    async query<T>(text: string, values?: unknown[]): Promise<QueryResult<T>> {
      const res = await client.query(text, values as unknown[]);
      return { rows: res.rows as T[], rowCount: res.rowCount ?? 0 };
    },
    async exec(sql: string) {
      await client.query(sql); // no values: simple protocol, several statements allowed
    },
  };
}

export function openPg(opts: PgOptions): Db {
  const pool = new pg.Pool({ connectionString: opts.connectionString, max: opts.max ?? 10 });
  // An idle client that loses its connection must not crash the process; the pool replaces it.
  pool.on('error', (err) => opts.onError?.(err));
  const listeners = new Map<string, Set<(payload: string) => void>>();
  let listenClient: pg.Client | undefined;
  let listenClientReady: Promise<pg.Client> | undefined;

  async function getListenClient(): Promise<pg.Client> {
    if (listenClient) return listenClient;
    listenClientReady ??= (async () => {
      const c = new pg.Client({ connectionString: opts.connectionString });
      c.on('error', (err) => {
        opts.onError?.(err);
        // Forget the broken connection; the next listen() reconnects. Polling covers the gap.
        listenClient = undefined;
        listenClientReady = undefined;
      });
      c.on('notification', (msg) => {
        for (const fn of listeners.get(msg.channel) ?? []) fn(msg.payload ?? '');
      });
      await c.connect();
      listenClient = c;
      return c;
    })();
    return listenClientReady;
  }

  return {
    kind: 'postgres',
    ...wrap(pool),
    async transaction(fn) {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const result = await fn(wrap(client));
        await client.query('COMMIT');
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        throw err;
      } finally {
        client.release();
      }
    },
    async withAdvisoryLock(key, fn) {
      const client = await pool.connect();
      try {
        await client.query('SELECT pg_advisory_lock(hashtext($1))', [key]);
        const session: Db = {
          kind: 'postgres',
          ...wrap(client),
          transaction: async (f) => {
            await client.query('BEGIN');
            try {
              const r = await f(wrap(client));
              await client.query('COMMIT');
              return r;
            } catch (err) {
              await client.query('ROLLBACK').catch(() => {});
              throw err;
            }
          },
          withAdvisoryLock: () => Promise.reject(new Error('nested advisory locks are not supported')),
          listen: () => Promise.reject(new Error('listen is not available on a locked session')),
          close: async () => {},
        };
        return await fn(session);
      } finally {
        await client.query('SELECT pg_advisory_unlock(hashtext($1))', [key]).catch(() => {});
        client.release();
      }
    },
    async listen(channel, onNotify) {
      let set = listeners.get(channel);
      const client = await getListenClient();
      if (!set) {
        set = new Set();
        listeners.set(channel, set);
        await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
      }
      set.add(onNotify);
      return async () => {
        set!.delete(onNotify);
      };
    },
    async close() {
      await listenClient?.end().catch(() => {});
      await pool.end();
    },
  };
}
