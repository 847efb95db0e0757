import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Db } from '../../src/storage/db.ts';
import { openStorage } from '../../src/storage/open.ts';
import { asUserOneStatement } from '../../src/inbox/as-user.ts';
import { BACKEND, createTestDb, type TestDb } from '../helpers/db.ts';

/**
 * Db.pipeline: statements that commit together or not at all. On Postgres they are sent in one
 * round trip with a single Sync (a custom pg Submittable), so these tests pin down the protocol
 * behaviour it relies on: one implicit transaction, nothing after an error, prepared statements
 * that survive a failed run, a connection that stays usable. Each runs on both backends.
 */
describe('Db.pipeline', () => {
  let t: TestDb;
  /** One connection, so a test can see what a run leaves behind on it. */
  let single: Db;
  before(async () => {
    t = await createTestDb();
    single = t.url ? await openStorage({ databaseUrl: t.url, poolSize: 1 }) : t.db;
    await t.db.exec(`CREATE TABLE pipeline_t (x int PRIMARY KEY, at timestamptz, n bigint)`);
  });
  after(async () => {
    if (single !== t.db) await single.close();
    await t.drop();
  });

  test('returns each statement\'s rows in order, values sent as parameters, types parsed', async () => {
    const [a, b, c] = await t.db.pipeline([
      { text: `INSERT INTO pipeline_t (x, at, n) VALUES ($1, $2, $3) RETURNING x`, values: [1, new Date('2026-01-02T03:04:05Z'), 2 ** 40] },
      { text: `UPDATE pipeline_t SET n = n + 1 WHERE x = $1`, values: [1] },
      { text: `SELECT x, at, n, $1::text AS quoted FROM pipeline_t WHERE x = $2`, values: [`it's "quoted"; --`, 1] },
    ]);
    assert.deepEqual(a!.rows, [{ x: 1 }]);
    assert.equal(b!.rowCount, 1);
    assert.deepEqual(b!.rows, []);
    assert.equal(c!.rows.length, 1);
    assert.equal((c!.rows[0]!.at as Date).toISOString(), '2026-01-02T03:04:05.000Z');
    assert.equal(c!.rows[0]!.n, 2 ** 40 + 1);
    assert.equal(c!.rows[0]!.quoted, `it's "quoted"; --`);
  });

  test('the statements share one transaction, and its local settings end with it', async () => {
    const [, seen] = await single.pipeline([
      { text: `SELECT set_config('herald.together', $1, true)`, values: ['inside'] },
      { text: `SELECT current_setting('herald.together', true) AS v, txid_current() AS a, txid_current() AS b`, values: [] },
    ]);
    assert.equal(seen!.rows[0]!.v, 'inside');
    const after = await single.query<{ v: string | null }>(`SELECT current_setting('herald.together', true) AS v`);
    assert.ok(!after.rows[0]!.v, 'the setting did not outlive the run');
  });

  test('an error rolls back the statements before it, and the ones after it never run', async () => {
    await assert.rejects(
      single.pipeline([
        { text: `INSERT INTO pipeline_t (x) VALUES ($1)`, values: [10] },
        { text: `SELECT 1 / $1::int`, values: [0] },
        { text: `INSERT INTO pipeline_t (x) VALUES ($1)`, values: [11] },
      ]),
      /division by zero/,
    );
    const { rows } = await single.query(`SELECT x FROM pipeline_t WHERE x IN (10, 11)`);
    assert.deepEqual(rows, [], 'neither insert is there');
    // The connection is idle and usable again, in and out of pipeline.
    assert.equal((await single.query<{ one: number }>(`SELECT 1 AS one`)).rows[0]!.one, 1);
    const [r] = await single.pipeline([{ text: `SELECT 2 AS two`, values: [] }]);
    assert.equal(r!.rows[0]!.two, 2);
  });

  test('prepared statements work again after a run failed before or after their Parse', async () => {
    const early = { text: `SELECT $1::int + 1 AS v /* together early */`, prepare: true };
    const late = { text: `SELECT $1::int + 2 AS v /* together late */`, prepare: true };
    // `early` is parsed, then the run fails: it may exist on the connection unconfirmed.
    // `late` comes after the error: its Parse was skipped by the server.
    for (let i = 0; i < 3; i++) {
      await assert.rejects(
        single.pipeline([
          { ...early, values: [i] },
          { text: `SELECT 1 / $1::int`, values: [0] },
          { ...late, values: [i] },
        ]),
        /division by zero/,
      );
    }
    for (let i = 0; i < 3; i++) {
      const [a, b] = await single.pipeline([
        { ...early, values: [i] },
        { ...late, values: [i] },
      ]);
      assert.equal(a!.rows[0]!.v, i + 1);
      assert.equal(b!.rows[0]!.v, i + 2);
    }
  });

  test('a value that cannot be sent fails the run before anything is written', async () => {
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    await assert.rejects(
      single.pipeline([
        { text: `INSERT INTO pipeline_t (x) VALUES ($1)`, values: [20] },
        { text: `SELECT $1::jsonb`, values: [circular] },
      ]),
    );
    assert.deepEqual((await single.query(`SELECT x FROM pipeline_t WHERE x = 20`)).rows, []);
    assert.equal((await single.query<{ one: number }>(`SELECT 1 AS one`)).rows[0]!.one, 1);
  });

  test('asUserOneStatement runs its statement as herald_user with the claims, and only one', async () => {
    const sub = '00000000-0000-7000-8000-0000000000aa';
    const row = await asUserOneStatement(single, { sub, role: 'authenticated' }, async (q) => {
      const { rows } = await q.query<{ who: string; uid: string }>(`SELECT current_user AS who, auth.uid()::text AS uid`);
      await assert.rejects(q.query('SELECT 1'), /second call/);
      return rows[0]!;
    });
    assert.deepEqual(row, { who: 'herald_user', uid: sub });
    const back = await single.query<{ who: string; claims: string | null }>(
      `SELECT current_user AS who, current_setting('request.jwt.claims', true) AS claims`,
    );
    assert.notEqual(back.rows[0]!.who, 'herald_user', `the role ended with the statement (${BACKEND})`);
    assert.ok(!back.rows[0]!.claims, 'the claims ended with the statement');
  });

  describe('Db.transaction (BEGIN travels with the first statement)', () => {
    test('statements issued at once as the first ones all run inside the one transaction', async () => {
      const ids = await single.transaction((tx) =>
        Promise.all([1, 2, 3, 4].map(async () => (await tx.query<{ x: string }>(`SELECT txid_current()::text AS x`)).rows[0]!.x)),
      );
      assert.equal(new Set(ids).size, 1, `one transaction id for all: ${ids.join(', ')}`);
    });

    test('the begin statement applies to the whole transaction', async () => {
      const v = await single.transaction(
        async (tx) => (await tx.query<{ v: string }>(`SELECT current_setting('herald.begun', true) AS v`)).rows[0]!.v,
        { begin: { text: `SELECT set_config('herald.begun', $1, true)`, values: ['yes'] } },
      );
      assert.equal(v, 'yes');
    });

    test('a failing first statement rolls the transaction back and leaves the connection idle', async () => {
      await assert.rejects(
        single.transaction(async (tx) => {
          await tx.pipeline([
            { text: `INSERT INTO pipeline_t (x) VALUES ($1)`, values: [40] },
            { text: `SELECT 1 / $1::int`, values: [0] },
          ]);
        }),
        /division by zero/,
      );
      assert.deepEqual((await single.query(`SELECT x FROM pipeline_t WHERE x = 40`)).rows, []);
      const txid = async () => (await single.query<{ x: string }>(`SELECT txid_current()::text AS x`)).rows[0]!.x;
      assert.notEqual(await txid(), await txid(), 'each statement is its own transaction: none was left open');
    });

    test('a first statement whose value cannot be sent does not leave the rest outside the transaction', async () => {
      const circular: Record<string, unknown> = {};
      circular.self = circular;
      await assert.rejects(
        single.transaction(async (tx) => {
          await assert.rejects(tx.query(`SELECT $1::jsonb`, [circular]));
          await tx.query(`INSERT INTO pipeline_t (x) VALUES ($1)`, [30]);
          throw new Error('undo');
        }),
        /undo/,
      );
      assert.deepEqual((await single.query(`SELECT x FROM pipeline_t WHERE x = 30`)).rows, [], 'the insert was rolled back with the transaction');
    });
  });
});
