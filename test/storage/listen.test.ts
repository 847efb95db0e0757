import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { BACKEND, createTestDb, type TestDb } from '../helpers/db.ts';
import { otherConnection, until, watchFaults } from './pg-fault-kit.ts';

/** Db.listen: every subscriber hears every NOTIFY on its channel, once. Both backends. */
describe('Db.listen', () => {
  let t: TestDb;
  before(async () => {
    t = await createTestDb({ migrate: false });
  });
  after(() => t.drop());

  /** A NOTIFY from another connection (on PGlite, the one connection there is). */
  async function notify(channel: string, payload: string): Promise<void> {
    if (BACKEND !== 'postgres') return void (await t.db.query(`SELECT pg_notify($1, $2)`, [channel, payload]));
    const other = await otherConnection(t.url!);
    try {
      await other.query(`SELECT pg_notify($1, $2)`, [channel, payload]);
    } finally {
      await other.end();
    }
  }

  test('three concurrent listen() calls on one channel: each handler is called once per NOTIFY', async () => {
    const got: string[][] = [[], [], []];
    const unlisten = await Promise.all(got.map((list) => t.db.listen('listen_many', (p) => list.push(p))));
    await notify('listen_many', 'one');
    await notify('listen_many', 'two');
    // Notifications arrive in order: once each handler has 'two', 'one' was delivered to it too.
    await until(() => got.every((l) => l.includes('two')), 5_000, 'every handler to hear both');
    assert.deepEqual(got, [['one', 'two'], ['one', 'two'], ['one', 'two']]);

    await unlisten[1]!();
    await notify('listen_many', 'three');
    await until(() => got[0]!.includes('three') && got[2]!.includes('three'), 5_000, 'the others to hear the third');
    assert.deepEqual(got[1], ['one', 'two'], 'an unsubscribed handler is not called');
    await Promise.all([unlisten[0]!(), unlisten[2]!()]);
  });

  const pgDriver = BACKEND !== 'postgres' && "the Postgres driver's dispatch (PGlite calls its handlers itself)";
  test('a handler that throws neither crashes the process nor keeps the others from hearing', { skip: pgDriver }, async () => {
    const watch = watchFaults();
    const errors: unknown[] = [];
    try {
      const heard: string[] = [];
      const u1 = await t.db.listen('listen_throws', () => {
        throw new Error('a handler bug');
      });
      const u2 = await t.db.listen('listen_throws', (p) => heard.push(p));
      await notify('listen_throws', 'x');
      await until(() => heard.includes('x'), 5_000, 'the second handler');
      t.db.wake('listen_throws'); // in-memory dispatch too
      assert.deepEqual(heard, ['x', '']);
      await Promise.all([u1(), u2()]);
      errors.push(...watch.faults);
    } finally {
      watch.stop();
    }
    assert.deepEqual(errors, []);
  });
});
