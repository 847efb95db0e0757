import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Db, Queryable } from './db.ts';
import { migrationQueries } from './queries/migrations.ts';

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));
const LOCK_KEY = 'herald.migrate';

export interface Migration {
  id: number;
  name: string;
  sql: string;
}

/** Numbered, forward-only SQL files: `0001_name.sql`. */
export async function loadMigrations(): Promise<Migration[]> {
  const files = (await readdir(MIGRATIONS_DIR)).filter((f) => /^\d{4}_[\w-]+\.sql$/.test(f)).sort();
  return Promise.all(
    files.map(async (file) => ({
      id: Number(file.slice(0, 4)),
      name: file.replace(/\.sql$/, ''),
      sql: await readFile(MIGRATIONS_DIR + file, 'utf8'),
    })),
  );
}

/**
 * Applies pending migrations under an advisory lock, each in its own transaction together with its
 * bookkeeping row, so concurrent starts apply every migration exactly once.
 * Returns the names applied by this call.
 *
 * When nothing is pending it only reads the bookkeeping: no DDL and no lock. `herald start` migrates
 * at every start, and in the least-privilege setup (docs/DEPLOYMENT.md) it connects as a role that
 * owns nothing and may not create a table, not even `IF NOT EXISTS` one that exists.
 */
export async function migrate(db: Db, onApply?: (name: string) => void): Promise<string[]> {
  const migrations = await loadMigrations();
  const latestKnown = migrations.at(-1)?.id ?? 0;
  const exists = (await db.query<{ exists: boolean }>(migrationQueries.tableExists)).rows[0]?.exists;
  if (exists) {
    const done = await appliedIds(db, latestKnown);
    if (migrations.every((m) => done.has(m.id))) return [];
  }
  try {
    return await db.withAdvisoryLock(LOCK_KEY, async (session) => {
      await session.exec(migrationQueries.createTable);
      const done = await appliedIds(session, latestKnown);
      const applied: string[] = [];
      for (const m of migrations) {
        if (done.has(m.id)) continue;
        await session.transaction(async (tx) => {
          await tx.query(migrationQueries.record, [m.id, m.name]);
          await tx.exec(m.sql);
        });
        applied.push(m.name);
        onApply?.(m.name);
      }
      return applied;
    });
  } catch (err) {
    if ((err as { code?: string }).code !== '42501') throw err; // insufficient_privilege
    throw new Error(
      `${(err as Error).message}: the role herald connected as lacks a privilege that applying migrations needs. ` +
        `Migrate as the owner role; a superuser runs \`herald migrate --print-bootstrap\` once per cluster (docs/DEPLOYMENT.md)`,
      { cause: err },
    );
  }
}

async function appliedIds(db: Queryable, latestKnown: number): Promise<Set<number>> {
  const done = new Set((await db.query<{ id: number }>(migrationQueries.applied)).rows.map((r) => r.id));
  const newest = Math.max(0, ...done);
  if (newest > latestKnown) {
    throw new Error(`database schema is at migration ${newest}, newer than this herald knows (${latestKnown}); upgrade herald`);
  }
  return done;
}
