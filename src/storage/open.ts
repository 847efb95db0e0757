import { DatabaseUnavailableError } from '../errors.ts';
import type { Db } from './db.ts';
import { DB_TIMEOUT_DEFAULTS } from '../config/settings.ts';
import { addressOf, openPg } from './drivers/pg.ts';
import { describeReason } from './drivers/pg-failures.ts';
import { openPglite } from './drivers/pglite.ts';

export interface StorageOptions {
  /** A Postgres server; when absent, embedded PGlite is used. */
  databaseUrl?: string;
  /** PGlite's data directory; `undefined` keeps the database in memory (tests). */
  dataDir?: string;
  /**
   * PGlite: start from this dump of a data directory (PGlite's dumpDataDir) instead of creating
   * one. Creating runs initdb inside WASM, seconds each time; the test suite starts every file's
   * database from one migrated dump made at the start of the run.
   */
  pgliteDump?: Blob;
  poolSize?: number;
  onError?: (err: Error) => void;
  /** Postgres: connecting, and waiting for a free pooled connection (HERALD_DB_CONNECT_TIMEOUT_MS). */
  connectTimeoutMs?: number;
  /** Postgres: statement_timeout of herald's connections, 0 = none (HERALD_DB_STATEMENT_TIMEOUT_MS). */
  statementTimeoutMs?: number;
  /** Postgres: idle_in_transaction_session_timeout, 0 = none (HERALD_DB_IDLE_TX_TIMEOUT_MS). */
  idleInTransactionTimeoutMs?: number;
}

export async function openStorage(opts: StorageOptions): Promise<Db> {
  if (opts.databaseUrl) {
    const db = openPg({
      connectionString: opts.databaseUrl,
      max: opts.poolSize,
      onError: opts.onError,
      connectTimeoutMs: opts.connectTimeoutMs,
      statementTimeoutMs: opts.statementTimeoutMs,
      idleInTransactionTimeoutMs: opts.idleInTransactionTimeoutMs,
    });
    try {
      await db.query('SELECT 1'); // fail fast, with a message that says where, when the server is unreachable
    } catch (err) {
      await db.close().catch(() => {});
      throw cannotOpen(err as Error, opts);
    }
    return db;
  }
  return openPglite(opts.dataDir, opts.pgliteDump);
}

/** The first connection failed: say which setting points where, and why, never the credentials. */
function cannotOpen(err: Error, opts: StorageOptions): Error {
  const at = `cannot connect to the database at ${addressOf(opts.databaseUrl!)} (DATABASE_URL)`;
  if (!(err instanceof DatabaseUnavailableError)) return new Error(`${at}: ${err.message}`, { cause: err });
  const ms = opts.connectTimeoutMs ?? DB_TIMEOUT_DEFAULTS.connectTimeoutMs;
  const reason = /did not answer within|could be had within/.test(err.message)
    ? `no answer within ${ms} ms (HERALD_DB_CONNECT_TIMEOUT_MS)`
    : describeReason(err.cause instanceof Error ? err.cause : err);
  return new DatabaseUnavailableError(`${at}: ${reason}`, false, { cause: err });
}
