import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Db } from './db.ts';
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
 */
export async function migrate(db: Db, onApply?: (name: string) => void): Promise<string[]> {
  const migrations = await loadMigrations();
  return db.withAdvisoryLock(LOCK_KEY, async (session) => {
    await session.exec(migrationQueries.createTable);
    const done = new Set((await session.query<{ id: number }>(migrationQueries.applied)).rows.map((r) => r.id));
    const latestKnown = migrations.at(-1)?.id ?? 0;
    const newest = Math.max(0, ...done);
    if (newest > latestKnown) {
      throw new Error(
        `database schema is at migration ${newest}, newer than this herald knows (${latestKnown}); upgrade herald`,
      );
    }
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
}
