import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadMigrations, migrate } from '../../src/storage/migrate.ts';
import { openStorage } from '../../src/storage/open.ts';
import { BACKEND, createTestDb } from '../helpers/db.ts';

test('migrations are numbered, contiguous and applied once', async () => {
  const migrations = await loadMigrations();
  assert.ok(migrations.length >= 1);
  migrations.forEach((m, i) => assert.equal(m.id, i + 1, `${m.name} is numbered in sequence`));
  const t = await createTestDb({ migrate: false });
  try {
    assert.deepEqual(await migrate(t.db), migrations.map((m) => m.name));
    assert.deepEqual(await migrate(t.db), [], 'a second run applies nothing');
  } finally {
    await t.drop();
  }
});

test('several processes migrating at once apply each migration exactly once (advisory lock)', { skip: BACKEND !== 'postgres' && 'PGlite has one connection; nothing runs concurrently' }, async () => {
  const t = await createTestDb({ migrate: false });
  const pools = await Promise.all([1, 2, 3, 4].map(() => openStorage({ databaseUrl: t.url!, poolSize: 2 })));
  try {
    const results = await Promise.all(pools.map((db) => migrate(db)));
    const all = results.flat();
    const names = (await loadMigrations()).map((m) => m.name);
    assert.deepEqual(all.sort(), names.sort(), 'each migration applied by exactly one of the racers');
    const { rows } = await t.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM herald_migrations`);
    assert.equal(rows[0]!.n, names.length);
  } finally {
    await Promise.all(pools.map((p) => p.close()));
    await t.drop();
  }
});

test('a database migrated by a newer herald is refused with a clear message', async () => {
  const t = await createTestDb();
  try {
    await t.db.query(`INSERT INTO herald_migrations (id, name) VALUES (9999, '9999_future')`);
    await assert.rejects(migrate(t.db), /newer than this herald knows/);
  } finally {
    await t.drop();
  }
});
