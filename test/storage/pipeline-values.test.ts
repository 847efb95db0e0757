import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createTestDb, type TestDb } from '../helpers/db.ts';

/**
 * pipeline encodes its parameters and builds its rows itself (drivers/pg-pipeline.ts): each value
 * must reach Postgres, and each column come back, exactly as through an ordinary query.
 */
describe('pipeline values and rows', () => {
  let t: TestDb;
  before(async () => {
    t = await createTestDb({ migrate: false });
  });
  after(() => t.drop());

  const SQL = `SELECT $1::int AS i, $2::bigint AS big, $3::numeric AS num, $4::bool AS yes, $5::text AS txt,
    $6::timestamptz AS at, $7::jsonb AS doc, $8::text[] AS texts, $9::int[] AS ints, $10::bytea AS bytes,
    $11::uuid AS id, $12::text AS nothing, $13::text AS undef, $14::json AS list, $15::float8 AS f,
    $16::int[][] AS grid, $17::date AS day, NULL::int AS null_int, 'a'::text AS dup, 'b'::text AS dup`;
  const VALUES = [
    7,
    2 ** 52,
    '12345.678900',
    false,
    `it's "quoted"; \\ back\\slash -- ünïcode 😀`,
    new Date('2026-01-02T03:04:05.678Z'),
    { a: 1, b: [true, null, 'x'], c: { d: 'é' } },
    ['plain', 'with "quotes"', 'with,comma', 'back\\slash', null, '', 'NULL'],
    [1, 2, 3],
    Buffer.from([0, 1, 2, 254, 255]),
    '0190f3a4-1b2c-7d3e-8f40-123456789abc',
    null,
    undefined,
    JSON.stringify([1, 'two', { three: 3 }]), // a JS array would be a Postgres array, as in pg
    1.5e-7,
    [
      [1, 2],
      [3, 4],
    ],
    '2026-03-04',
  ];

  test('every type comes back as an ordinary query returns it', async () => {
    const plain = await t.db.query(SQL, VALUES);
    const [together] = await t.db.pipeline([{ text: SQL, values: VALUES }]);
    assert.deepEqual(together!.rows, plain.rows);
    const row = together!.rows[0]!;
    assert.equal(row.big, 2 ** 52);
    assert.equal((row.at as Date).toISOString(), '2026-01-02T03:04:05.678Z');
    assert.deepEqual(row.doc, VALUES[6]);
    assert.deepEqual(row.texts, VALUES[7]);
    assert.deepEqual(Buffer.from(row.bytes as Uint8Array), VALUES[9]);
    assert.equal(row.nothing, null);
    assert.equal(row.undef, null);
    assert.equal(row.dup, 'b', 'a repeated column name keeps the last, as pg does');
    // And prepared, inside a transaction.
    const [inTx] = await t.db.transaction((tx) => tx.pipeline([{ text: SQL, values: VALUES, prepare: true }]));
    assert.deepEqual(inTx!.rows, plain.rows);
  });

  test('row counts of writes, and of statements that report none', async () => {
    const [create, insert, update, del, select, set] = await t.db.pipeline([
      { text: `CREATE TEMP TABLE tv (x int)`, values: [] },
      { text: `INSERT INTO tv SELECT generate_series(1, $1::int)`, values: [5] },
      { text: `UPDATE tv SET x = x + 1 WHERE x > $1`, values: [2] },
      { text: `DELETE FROM tv WHERE x > $1`, values: [5] },
      { text: `SELECT x FROM tv ORDER BY x`, values: [] },
      { text: `SELECT set_config('herald.tv', $1, true)`, values: ['v'] },
    ]);
    assert.equal(create!.rowCount, 0);
    assert.equal(insert!.rowCount, 5);
    assert.equal(update!.rowCount, 3);
    assert.equal(del!.rowCount, 1);
    assert.deepEqual(select!.rows.map((r) => r.x), [1, 2, 4, 5]);
    assert.equal(set!.rows.length, 1);
  });

  test('a value that cannot be sent throws before anything is sent', async () => {
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    await assert.rejects(async () => t.db.pipeline([{ text: 'SELECT $1::jsonb', values: [circular] }]), /circular/i);
    await assert.rejects(async () => t.db.pipeline([{ text: 'SELECT $1::timestamptz', values: [new Date(NaN)] }]));
    assert.equal((await t.db.pipeline([{ text: 'SELECT 1 AS one', values: [] }]))[0]!.rows[0]!.one, 1);
  });
});
