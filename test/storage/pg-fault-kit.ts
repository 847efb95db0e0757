import pg from 'pg';
import { DatabaseUnavailableError } from '../../src/errors.ts';
import { ADMIN_URL, BACKEND } from '../helpers/db.ts';

/** The reason the Postgres driver's fault tests skip on PGlite (printed by node:test). */
export const pgOnly = BACKEND !== 'postgres' && "a fault of the Postgres driver's connections (PGlite runs in process, it has none)";

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until `cond` holds (polling), or throws after `ms`. */
export async function until(cond: () => boolean | Promise<boolean>, ms = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/**
 * What would kill the process: an uncaught exception (pg's unhandled 'error' event) or an unhandled
 * rejection. Caught here while a test runs, so it fails the test with the error instead.
 */
export function watchFaults(): { faults: unknown[]; stop(): void } {
  const faults: unknown[] = [];
  const onFault = (err: unknown) => faults.push(err);
  process.on('uncaughtException', onFault);
  process.on('unhandledRejection', onFault);
  return {
    faults,
    stop() {
      process.off('uncaughtException', onFault);
      process.off('unhandledRejection', onFault);
    },
  };
}

export const isUnavailable = (outcomeUnknown?: boolean) => (err: unknown) => {
  if (!(err instanceof DatabaseUnavailableError)) throw err;
  if (outcomeUnknown !== undefined && err.outcomeUnknown !== outcomeUnknown) {
    throw new Error(`outcomeUnknown is ${err.outcomeUnknown}, expected ${outcomeUnknown}: ${err.message}`);
  }
  return true;
};

/**
 * The test's own Postgres admin session, on the admin database: it terminates backends of the
 * test's database only (never anyone else's), and is never among them.
 */
export async function adminOf(url: string) {
  const datname = new URL(url).pathname.slice(1);
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  return {
    /** Terminates the test database's backends matching `where` (SQL over pg_stat_activity). */
    async terminate(where = 'true'): Promise<number> {
      const { rows } = await admin.query<{ n: number }>(
        `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
          WHERE datname = $1 AND pid <> pg_backend_pid() AND (${where})`,
        [datname],
      );
      return rows[0]!.n;
    },
    /** How many of the test database's backends match `where`. */
    async count(where = 'true'): Promise<number> {
      const { rows } = await admin.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND (${where})`,
        [datname],
      );
      return rows[0]!.n;
    },
    end: () => admin.end(),
  };
}

/** A plain connection to the test database, as another process would have. */
export async function otherConnection(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => {});
  await c.connect();
  return c;
}
