import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import type { Db } from '../../src/storage/db.ts';
import { migrate } from '../../src/storage/migrate.ts';
import { openStorage } from '../../src/storage/open.ts';

/** Which backend this run tests: `HERALD_TEST_BACKEND=postgres|pglite` (scripts/test.mjs sets it). */
export const BACKEND: 'postgres' | 'pglite' = process.env.HERALD_TEST_BACKEND === 'postgres' ? 'postgres' : 'pglite';
export const ADMIN_URL = process.env.HERALD_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestDb {
  db: Db;
  /** Set on Postgres: the throw-away database's URL (for child processes and extra pools). */
  url: string | undefined;
  drop(): Promise<void>;
}

const dumps = new Map<string, Blob>();

/** The suite's PGlite template of that name (see db-templates.ts), read once per process; none outside the runner. */
function pgliteTemplate(file: 'empty.tar' | 'migrated.tar'): Blob | undefined {
  const folder = process.env.HERALD_TEST_PGLITE_TEMPLATES;
  if (!folder) return undefined;
  let dump = dumps.get(file);
  if (!dump) dumps.set(file, (dump = new Blob([readFileSync(join(folder, file))])));
  return dump;
}

/**
 * `dir` as a HERALD_DATA_DIR whose PGlite database (`pgdata/`) is already created (and with
 * 'migrated', migrated) from the run's template, so a herald process started on it skips initdb,
 * seconds in WASM. Outside the runner (no templates), or for a test of the first run itself,
 * herald creates it as a newcomer's would. Returns `dir`.
 */
export function seededDataDir(dir: string, template: 'empty' | 'migrated' = 'migrated'): string {
  const folder = process.env.HERALD_TEST_PGLITE_TEMPLATES;
  if (!folder) return dir;
  const pgdata = join(dir, 'pgdata'); // cli/runtime.ts: pgliteDir
  mkdirSync(pgdata, { recursive: true });
  execFileSync('tar', ['-xf', join(folder, `${template}.tar`), '-C', pgdata], { stdio: ['ignore', 'ignore', 'ignore'] });
  return dir;
}

/** A fresh, migrated database: a new Postgres database (dropped afterwards), or in-memory PGlite. */
export async function createTestDb(opts: { migrate?: boolean } = {}): Promise<TestDb> {
  const migrated = opts.migrate !== false;
  if (BACKEND === 'pglite') {
    const db = await openStorage({ pgliteDump: pgliteTemplate(migrated ? 'migrated.tar' : 'empty.tar') });
    if (migrated) await migrate(db); // a no-op on the migrated template
    return { db, url: undefined, drop: () => db.close() };
  }
  const name = `herald_test_${process.pid}_${randomBytes(4).toString('hex')}`;
  const template = migrated ? process.env.HERALD_TEST_PG_TEMPLATE : undefined;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}${template ? ` TEMPLATE ${template}` : ''}`);
  await admin.end();
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  const db = await openStorage({ databaseUrl: url.toString(), poolSize: 8 });
  if (opts.migrate !== false) await migrate(db);
  return {
    db,
    url: url.toString(),
    async drop() {
      await db.close().catch(() => {});
      const a = new pg.Client({ connectionString: ADMIN_URL });
      await a.connect();
      await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await a.end();
    },
  };
}
