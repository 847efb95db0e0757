import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import type { Db } from '../../src/storage/db.ts';
import { openStorage } from '../../src/storage/open.ts';
import { BACKEND, createTestDb, type TestDb } from '../helpers/db.ts';

const until = async (cond: () => boolean, ms = 5_000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe('Db.wake', () => {
  let t: TestDb;
  before(async () => {
    t = await createTestDb({ migrate: false });
  });
  after(() => t.drop());

  test('wakes this process\'s listeners at once, in memory', async () => {
    let woken = 0;
    const unlisten = await t.db.listen('wake_local', () => woken++);
    t.db.wake('wake_local');
    assert.equal(woken, 1, 'dispatched synchronously, before any round trip');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(woken, 1, 'our own NOTIFY coming back is not dispatched a second time');
    await unlisten();
    t.db.wake('wake_local');
    assert.equal(woken, 1, 'an unsubscribed listener is not called');
  });

  /** Another process's connection LISTENing on `channel`, counting what it receives. */
  async function listeningElsewhere(channel: string, body: (received: () => number) => Promise<void>): Promise<void> {
    const other = new pg.Client({ connectionString: t.url! });
    await other.connect();
    let received = 0;
    other.on('notification', () => received++);
    await other.query(`LISTEN ${channel}`);
    try {
      await body(() => received);
    } finally {
      await other.end();
    }
  }
  const oneProcess = BACKEND !== 'postgres' && 'a PGlite directory belongs to one process';

  test('reaches other processes with NOTIFYs outside any transaction, coalesced', { skip: oneProcess }, () =>
    listeningElsewhere('wake_remote', async (received) => {
      t.db.wake('wake_remote');
      await until(() => received() === 1);
      // A burst while the first NOTIFY is in flight folds into one more, not one per call.
      for (let i = 0; i < 100; i++) t.db.wake('wake_remote');
      await until(() => received() >= 2);
      await new Promise((r) => setTimeout(r, 200));
      assert.ok(received() <= 3, `100 wake-ups sent ${received() - 1} NOTIFYs`);
    }),
  );

  test('a steady flow of wake-ups is spaced out: one NOTIFY per 5 ms at most', { skip: oneProcess }, () =>
    listeningElsewhere('wake_steady', async (received) => {
      // 300 wake-ups at least 1 ms apart (like group commits under load): each NOTIFY would be back
      // before the next wake-up, so without spacing this is ~300 NOTIFYs.
      const t0 = performance.now();
      for (let i = 0; i < 300; i++) {
        t.db.wake('wake_steady');
        await new Promise((r) => setTimeout(r, 1));
      }
      const elapsed = performance.now() - t0;
      await new Promise((r) => setTimeout(r, 100));
      assert.ok(received() >= 2, `${received()} NOTIFYs`);
      // (4, not 5: Node's millisecond timers may fire a fraction of a millisecond early.)
      assert.ok(received() <= elapsed / 4 + 3, `${received()} NOTIFYs in ${elapsed.toFixed(0)} ms`);
    }),
  );

  test('listeners survive a lost listen connection: the next wake-up reconnects and re-subscribes', { skip: BACKEND !== 'postgres' && 'PGlite has no connection to lose' }, async () => {
    const listener: Db = await openStorage({ databaseUrl: t.url!, poolSize: 2 });
    try {
      let woken = 0;
      await listener.listen('wake_again', () => woken++);
      const killer = new pg.Client({ connectionString: t.url! });
      await killer.connect();
      // The listen connection is the only one in this database that ran LISTEN.
      const { rows } = await killer.query<{ n: number }>(
        `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
         WHERE datname = current_database() AND query LIKE 'LISTEN%'`,
      );
      assert.equal(rows[0]!.n, 1);
      await new Promise((r) => setTimeout(r, 100));
      listener.wake('wake_again'); // in memory, and reconnects the listen connection
      await until(() => woken === 1);
      await new Promise((r) => setTimeout(r, 100));
      await killer.query('NOTIFY wake_again');
      await until(() => woken === 2);
      await killer.end();
    } finally {
      await listener.close();
    }
  });
});
