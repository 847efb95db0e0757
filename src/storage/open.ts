import type { Db } from './db.ts';
import { openPg } from './drivers/pg.ts';
import { openPglite } from './drivers/pglite.ts';

export interface StorageOptions {
  /** A Postgres server; when absent, embedded PGlite is used. */
  databaseUrl?: string;
  /** PGlite's data directory; `undefined` keeps the database in memory (tests). */
  dataDir?: string;
  poolSize?: number;
  onError?: (err: Error) => void;
}

export async function openStorage(opts: StorageOptions): Promise<Db> {
  if (opts.databaseUrl) {
    const db = openPg({ connectionString: opts.databaseUrl, max: opts.poolSize, onError: opts.onError });
    await db.query('SELECT 1'); // fail fast with a clear error when the server is unreachable
    return db;
  }
  return openPglite(opts.dataDir);
}
