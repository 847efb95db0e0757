import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import type { Db } from '../../src/storage/db.ts';
import { openStorage } from '../../src/storage/open.ts';
import { createTestDb, type TestDb } from '../helpers/db.ts';
import { startTcpProxy, viaProxy, type TcpProxy } from '../helpers/tcp-proxy.ts';
import { adminOf, isUnavailable, otherConnection, pgOnly, sleep, until, watchFaults } from './pg-fault-kit.ts';

/**
 * A Postgres connection that dies — its backend terminated, or the network cut — must never kill
 * the process: every connection herald holds (a transaction's, a pipeline's, the migration
 * lock's session, the LISTEN connection, the pool's idle ones) handles its errors, the caller gets
 * a DatabaseUnavailableError, a broken connection is never reused, and herald works again as
 * soon as Postgres answers. Real Postgres, real pg; the network is a TCP proxy of the test's own.
 */
describe('Postgres connection loss', { skip: pgOnly }, () => {
  let t: TestDb;
  let admin: Awaited<ReturnType<typeof adminOf>>;
  let watch: ReturnType<typeof watchFaults>;
  const dbs: Db[] = [];
  const open = async (url: string, opts: Record<string, unknown> = {}) => {
    const db = await openStorage({ databaseUrl: url, poolSize: 2, ...opts });
    dbs.push(db);
    return db;
  };

  before(async () => {
    t = await createTestDb({ migrate: false });
    await t.db.exec(`CREATE TABLE loss_t (x int PRIMARY KEY)`);
    admin = await adminOf(t.url!);
  });
  after(async () => {
    await admin.end();
    await t.drop();
  });
  beforeEach(() => {
    watch = watchFaults();
  });
  afterEach(async () => {
    await Promise.all(dbs.splice(0).map((db) => db.close().catch(() => {})));
    watch.stop();
  });
  /** pg reports a dead socket a moment after the failed query: give it that moment, then check. */
  const assertAlive = async () => {
    await sleep(150);
    assert.deepEqual(watch.faults, [], 'nothing escaped as an uncaught exception or unhandled rejection');
  };
  const activeWith = (marker: string) => `state = 'active' AND query LIKE '%${marker}%'`;

  test('a backend terminated under a running transaction statement: DatabaseUnavailableError, the pool works after', async () => {
    const db = await open(t.url!);
    // The expectation is attached before the fault, so the rejection is never unhandled meanwhile.
    const failed = assert.rejects(db.transaction((tx) => tx.query(`SELECT pg_sleep(5) /* tx victim */`)), isUnavailable(false));
    await until(async () => (await admin.count(activeWith('tx victim'))) === 1, 5_000, 'the statement to run');
    assert.equal(await admin.terminate(activeWith('tx victim')), 1);
    await failed;
    await assertAlive();
    for (let i = 0; i < 4; i++) assert.equal((await db.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one, 1);
  });

  test('a backend terminated between two statements of a transaction: the next one fails, nothing crashes', async () => {
    const db = await open(t.url!);
    await assert.rejects(
      db.transaction(async (tx) => {
        const { rows } = await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
        await tx.query('INSERT INTO loss_t (x) VALUES (1)');
        await admin.terminate(`pid = ${rows[0]!.pid}`);
        await sleep(150); // the checked-out connection's 'error' arrives while fn holds it
        await tx.query('INSERT INTO loss_t (x) VALUES (2)');
      }),
      isUnavailable(false),
    );
    await assertAlive();
    assert.deepEqual((await db.query('SELECT x FROM loss_t')).rows, [], 'the transaction rolled back');
  });

  test('a standalone pipeline whose backend is terminated: outcome unknown (it commits by itself)', async () => {
    const db = await open(t.url!);
    const failed = assert.rejects(db.pipeline([{ text: `SELECT pg_sleep(5) /* together victim */`, values: [] }]), isUnavailable(true));
    await until(async () => (await admin.count(activeWith('together victim'))) === 1, 5_000, 'the statement to run');
    await admin.terminate(activeWith('together victim'));
    await failed;
    await assertAlive();
    assert.equal((await db.pipeline([{ text: 'SELECT 2 AS two', values: [] }]))[0]!.rows[0]!.two, 2);
  });

  test('the migration lock session losing its backend: rejected, the lock is free again', async () => {
    const db = await open(t.url!);
    await assert.rejects(
      db.withAdvisoryLock('loss.lock', async (session) => {
        const { rows } = await session.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
        await admin.terminate(`pid = ${rows[0]!.pid}`);
        await sleep(150);
        await session.query('SELECT 1');
      }),
      isUnavailable(),
    );
    await assertAlive();
    assert.equal(await db.withAdvisoryLock('loss.lock', async (s) => (await s.query<{ v: number }>('SELECT 7 AS v')).rows[0]!.v), 7);
  });

  test('idle pooled connections terminated: the pool replaces them', async () => {
    const db = await open(t.url!);
    await Promise.all([1, 2].map(() => db.transaction((tx) => tx.query('SELECT pg_sleep(0.05)'))));
    assert.ok((await admin.terminate()) >= 2);
    await assertAlive();
    for (let i = 0; i < 4; i++) assert.equal((await db.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one, 1);
  });

  test('the LISTEN connection terminated: it reconnects and subscribes again by itself', async () => {
    const db = await open(t.url!);
    const got: string[] = [];
    await db.listen('loss_channel', (p) => got.push(p));
    const other = await otherConnection(t.url!);
    try {
      await other.query(`NOTIFY loss_channel, 'before'`);
      await until(() => got.includes('before'), 5_000, 'the first notification');
      assert.equal(await admin.terminate(`query LIKE 'LISTEN%'`), 1, 'the listen connection was found');
      await assertAlive();
      // Nothing calls listen() or wake() again: the driver must come back on its own.
      await until(
        async () => {
          await other.query(`NOTIFY loss_channel, 'after'`);
          return got.includes('after');
        },
        10_000,
        'a notification after the reconnect',
      );
    } finally {
      await other.end();
    }
    await assertAlive();
  });

  describe('through a TCP proxy that is cut', () => {
    let proxy: TcpProxy;
    beforeEach(async () => {
      const target = new URL(t.url!);
      proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
    });
    afterEach(() => proxy.close());

    test('cut (refused): every call fails fast with DatabaseUnavailableError; restored: herald works and hears NOTIFYs again', { timeout: 30_000 }, async () => {
      const db = await open(viaProxy(t.url!, proxy), { connectTimeoutMs: 2_000 });
      const got: string[] = [];
      await db.listen('proxy_channel', (p) => got.push(p));
      const running = assert.rejects(db.query(`SELECT pg_sleep(5) /* cut victim */`), isUnavailable(true));
      const inTx = assert.rejects(
        db.transaction(async (tx) => {
          await tx.query('SELECT 1');
          await sleep(1_000); // the cut comes meanwhile, while this transaction holds its connection
          await tx.query('SELECT 2');
        }),
        isUnavailable(false),
      );
      await until(async () => (await admin.count(activeWith('cut victim'))) === 1, 5_000, 'the statement to run');
      proxy.cut('refuse');
      await running;
      await inTx;
      // While down: no hang, no crash, the same error.
      await assert.rejects(db.query('SELECT 1'), isUnavailable(false));
      await assert.rejects(db.transaction((tx) => tx.query('SELECT 1')), isUnavailable(false));
      await assert.rejects(db.pipeline([{ text: 'SELECT 1', values: [] }]), isUnavailable(false));
      db.wake('proxy_channel'); // a NOTIFY that cannot be sent is dropped, not thrown
      await assertAlive();

      proxy.restore();
      await until(async () => (await db.query('SELECT 1').then(() => true, () => false)), 10_000, 'the pool to connect again');
      const other = await otherConnection(t.url!);
      try {
        await until(
          async () => {
            await other.query(`NOTIFY proxy_channel, 'back'`);
            return got.includes('back');
          },
          10_000,
          'the listen connection to come back',
        );
      } finally {
        await other.end();
      }
      await assertAlive();
    });

    test('a COMMIT sent to a server that stopped answering: outcome unknown, that connection is closed and never reused', { timeout: 30_000 }, async () => {
      const db = await open(viaProxy(t.url!, proxy), { poolSize: 1, statementTimeoutMs: 400 });
      await assert.rejects(
        db.transaction(async (tx) => {
          await tx.query('INSERT INTO loss_t (x) VALUES (10)');
          proxy.cut('blackhole'); // the COMMIT that follows is never answered
        }),
        isUnavailable(true),
      );
      await until(() => proxy.open === 0, 5_000, 'the stalled connection to be closed');
      await assertAlive();
      proxy.restore();
      assert.equal((await db.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one, 1, 'a new connection serves');
      // Here the COMMIT never reached Postgres: outcome unknown was the honest answer.
      await until(async () => (await admin.count(`state = 'idle in transaction'`)) === 0, 5_000, 'the dead session to end');
      assert.deepEqual((await db.query('SELECT x FROM loss_t WHERE x = 10')).rows, []);
      await assertAlive();
    });
  });
});
