import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { after, afterEach, before, describe, test } from 'node:test';
import { resolveSettings, SettingsError } from '../../src/config/settings.ts';
import { DatabaseUnavailableError } from '../../src/errors.ts';
import type { Db } from '../../src/storage/db.ts';
import { migrate } from '../../src/storage/migrate.ts';
import { openStorage } from '../../src/storage/open.ts';
import { createTestDb, type TestDb } from '../helpers/db.ts';
import { startHerald } from '../helpers/processes.ts';
import { startTcpProxy, viaProxy } from '../helpers/tcp-proxy.ts';
import { isUnavailable, pgOnly, sleep, until, watchFaults } from './pg-fault-kit.ts';

/**
 * Every place a Postgres peer can stall has a bound: connecting, waiting for a pooled connection,
 * a statement (statement_timeout), a transaction left idle (idle_in_transaction_session_timeout),
 * and a server that stops answering mid-query (a client-side bound: statement_timeout cannot fire
 * when the server is unreachable).
 */
describe('database timeout settings', () => {
  test('defaults, and values validated with messages that name the variable', () => {
    const s = resolveSettings({});
    assert.equal(s.dbConnectTimeoutMs, 5_000);
    assert.equal(s.dbStatementTimeoutMs, 30_000);
    assert.equal(s.dbIdleInTransactionTimeoutMs, 60_000);
    const set = resolveSettings({
      HERALD_DB_CONNECT_TIMEOUT_MS: '1500',
      HERALD_DB_STATEMENT_TIMEOUT_MS: '0',
      HERALD_DB_IDLE_TX_TIMEOUT_MS: '2500',
    });
    assert.deepEqual([set.dbConnectTimeoutMs, set.dbStatementTimeoutMs, set.dbIdleInTransactionTimeoutMs], [1500, 0, 2500]);
    assert.throws(() => resolveSettings({ HERALD_DB_CONNECT_TIMEOUT_MS: 'soon' }), (e) => e instanceof SettingsError && /HERALD_DB_CONNECT_TIMEOUT_MS/.test(e.message));
    assert.throws(() => resolveSettings({ HERALD_DB_CONNECT_TIMEOUT_MS: '0' }), /HERALD_DB_CONNECT_TIMEOUT_MS must be between/);
    assert.throws(() => resolveSettings({ HERALD_DB_STATEMENT_TIMEOUT_MS: '-1' }), /HERALD_DB_STATEMENT_TIMEOUT_MS/);
    assert.throws(() => resolveSettings({ HERALD_DB_IDLE_TX_TIMEOUT_MS: '1e9' }), /HERALD_DB_IDLE_TX_TIMEOUT_MS/);
  });
});

describe('Postgres timeouts', { skip: pgOnly }, () => {
  let t: TestDb;
  const dbs: Db[] = [];
  const open = async (opts: Record<string, unknown> = {}, url = t.url!) => {
    const db = await openStorage({ databaseUrl: url, poolSize: 1, ...opts });
    dbs.push(db);
    return db;
  };
  before(async () => {
    t = await createTestDb({ migrate: false });
  });
  after(() => t.drop());
  afterEach(async () => {
    await Promise.all(dbs.splice(0).map((db) => db.close().catch(() => {})));
  });
  const show = async (db: Pick<Db, 'query'>, name: string) =>
    (await db.query<Record<string, string>>(`SHOW ${name}`)).rows[0]![name];

  test("herald's connections carry statement_timeout and idle_in_transaction_session_timeout", async () => {
    const defaults = await open();
    assert.equal(await show(defaults, 'statement_timeout'), '30s');
    assert.equal(await show(defaults, 'idle_in_transaction_session_timeout'), '1min');
    const own = await open({ statementTimeoutMs: 1234, idleInTransactionTimeoutMs: 2345 });
    assert.equal(await show(own, 'statement_timeout'), '1234ms');
    assert.equal(await show(own, 'idle_in_transaction_session_timeout'), '2345ms');
  });

  test('a statement past statement_timeout is cancelled: a SQL error of that statement, not an outage', async () => {
    const db = await open({ statementTimeoutMs: 200 });
    await assert.rejects(db.query('SELECT pg_sleep(2)'), (e: Error & { code?: string }) => {
      assert.ok(!(e instanceof DatabaseUnavailableError));
      assert.equal(e.code, '57014');
      return true;
    });
    assert.equal(await show(db, 'statement_timeout'), '200ms', 'the connection serves on');
  });

  test('a transaction left idle past idle_in_transaction_session_timeout: the next statement fails as an outage, nothing crashes', async () => {
    const watch = watchFaults();
    try {
      const db = await open({ idleInTransactionTimeoutMs: 200 });
      await assert.rejects(
        db.transaction(async (tx) => {
          await tx.query('SELECT 1');
          await sleep(800); // Postgres ends the session meanwhile
          await tx.query('SELECT 2');
        }),
        isUnavailable(false),
      );
      await sleep(100);
      assert.equal((await db.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one, 1, 'a new connection serves');
      assert.deepEqual(watch.faults, []);
    } finally {
      watch.stop();
    }
  });

  test('the migration lock session runs without a statement timeout, and the pooled connection gets its own back', async () => {
    const db = await open({ statementTimeoutMs: 100 });
    await db.withAdvisoryLock('timeouts.lock', async (session) => {
      assert.equal(await show(session, 'statement_timeout'), '0');
      await session.query('SELECT pg_sleep(0.3)');
      await session.transaction((tx) => tx.query('SELECT pg_sleep(0.3)'));
    });
    assert.equal(await show(db, 'statement_timeout'), '100ms', 'the same (only) pooled connection, reset');
    // And the migrations themselves, on a database that has none yet.
    const fresh = await createTestDb({ migrate: false });
    try {
      const tight = await open({ statementTimeoutMs: 20 }, fresh.url!);
      assert.ok((await migrate(tight)).length > 0);
    } finally {
      await fresh.drop();
    }
  });

  test('every pooled connection busy: a caller waits at most the connect timeout, then DatabaseUnavailableError', async () => {
    const db = await open({ poolSize: 1, connectTimeoutMs: 300 });
    let release!: () => void;
    const holding = db.transaction(async (tx) => {
      await tx.query('SELECT 1');
      await new Promise<void>((r) => (release = r));
    });
    await until(() => release !== undefined, 5_000, 'the transaction to hold the connection');
    const waited = db.query('SELECT 1').then(
      () => 'answered',
      (e) => e,
    );
    // Bounded by the test, not the driver: the old driver would wait for the release.
    const outcome = await Promise.race([waited, sleep(3_000).then(() => 'still waiting')]);
    release();
    await holding;
    assert.ok(outcome instanceof DatabaseUnavailableError, `got ${String(outcome)}`);
    assert.equal(outcome.outcomeUnknown, false, 'nothing was sent');
    assert.equal((await db.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one, 1);
  });

  test('a server that stops answering mid-query: the query fails within the client-side bound, its connection is closed', { timeout: 20_000 }, async () => {
    const target = new URL(t.url!);
    const proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
    try {
      const db = await open({ statementTimeoutMs: 300, connectTimeoutMs: 500 }, viaProxy(t.url!, proxy));
      await db.query('SELECT 1');
      assert.equal(proxy.open, 1);
      proxy.cut('blackhole');
      await assert.rejects(db.query('SELECT 1'), isUnavailable(true));
      await until(() => proxy.open === 0, 5_000, 'the stalled connection to be closed');
      // A new connection cannot be made either while the server is silent: the connect timeout.
      await assert.rejects(db.transaction((tx) => tx.query('SELECT 1')), isUnavailable(false));
      proxy.restore();
      assert.equal((await db.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one, 1);
    } finally {
      await proxy.close();
    }
  });

  test('openStorage on a server that accepts TCP and never answers fails within the connect timeout, naming DATABASE_URL and the address', { timeout: 20_000 }, async () => {
    const proxy = await startTcpProxy({ host: '127.0.0.1', port: 9 });
    proxy.cut('blackhole');
    try {
      await assert.rejects(openStorage({ databaseUrl: `postgres://herald@127.0.0.1:${proxy.port}/x`, connectTimeoutMs: 500 }), (e: Error) => {
        assert.ok(e instanceof DatabaseUnavailableError, String(e));
        assert.match(e.message, /DATABASE_URL/);
        assert.match(e.message, new RegExp(`127\\.0\\.0\\.1:${proxy.port}`));
        assert.match(e.message, /500 ms/);
        return true;
      });
    } finally {
      await proxy.close();
    }
  });

  test('openStorage on a closed port names DATABASE_URL and the address, not a bare ECONNREFUSED', async () => {
    const port = await freePort();
    await assert.rejects(openStorage({ databaseUrl: `postgres://herald:secret@127.0.0.1:${port}/x` }), (e: Error) => {
      assert.ok(e instanceof DatabaseUnavailableError, String(e));
      assert.match(e.message, /DATABASE_URL/);
      assert.match(e.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
      assert.match(e.message, /refused/);
      assert.doesNotMatch(e.message, /secret/, 'no password in the message');
      return true;
    });
  });

  test('herald start with a database that never answers exits within the connect timeout, saying so', { timeout: 60_000 }, async () => {
    const proxy = await startTcpProxy({ host: '127.0.0.1', port: 9 });
    proxy.cut('blackhole');
    try {
      const herald = startHerald(['start'], {
        DATABASE_URL: `postgres://herald@127.0.0.1:${proxy.port}/x`,
        HERALD_DB_CONNECT_TIMEOUT_MS: '500',
        REQUEST_SIGNING_SECRET: 'test-signing-secret-0123456789',
        PORT: '0',
      });
      const code = await new Promise<number | null>((r) => herald.child.once('exit', (c) => r(c)));
      assert.equal(code, 1, herald.output());
      assert.match(herald.output(), new RegExp(`127\\.0\\.0\\.1:${proxy.port}`));
      assert.match(herald.output(), /DATABASE_URL/);
      assert.match(herald.output(), /no answer within 500 ms/);
    } finally {
      await proxy.close();
    }
  });
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}
