import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import pino from 'pino';
import { loadConfig } from '../../src/config/load-config.ts';
import { resolveSettings } from '../../src/config/settings.ts';
import { createEngine, type Engine } from '../../src/engine.ts';
import { createApp, type HeraldApp } from '../../src/http/app.ts';
import { mintUserToken } from '../../src/cli/demo.ts';
import type { Db } from '../../src/storage/db.ts';
import { openStorage } from '../../src/storage/open.ts';
import { BACKEND, createTestDb, type TestDb } from '../helpers/db.ts';
import { eventually, JWT_SECRET, SECRET, signedHeaders } from '../helpers/herald.ts';
import { startTcpProxy, viaProxy, type TcpProxy } from '../helpers/tcp-proxy.ts';

// A database outage, played by a TCP proxy of the test's own between herald and a throw-away
// Postgres database (the machine's server is never touched): every route that needs the database
// answers 503 with Retry-After and says so, the liveness probe stays 200, readiness is 503 and
// answers even when the database hangs, the log gets a rate-limited warning (no stacks at error
// level), and herald serves again when the proxy is restored. Then a write whose outcome is
// unknown (COMMIT sent, connection lost): 503, and the client's retry with its key is exact.

const skip = BACKEND === 'postgres' ? undefined : 'needs a Postgres server behind a TCP proxy (PGlite runs in-process: there is no connection to cut)';
const QSTASH_TOKEN = 'outage-qstash-token-0123456789';

interface LogLine {
  level: number;
  msg: string;
  stack?: string;
  [k: string]: unknown;
}

/** herald on the test's database, reached through the proxy; its log kept in memory. */
async function heraldViaProxy(t: TestDb, proxy: TcpProxy, env: Record<string, string> = {}) {
  const lines: LogLine[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  const db: Db = await openStorage({ databaseUrl: viaProxy(t.url!, proxy), poolSize: 4, onError: () => {} });
  const settings = resolveSettings({
    REQUEST_SIGNING_SECRET: SECRET,
    JWT_SECRET,
    QSTASH_TOKEN,
    HERALD_JOB_POLL_MS: '50',
    HERALD_MAINTENANCE_MS: '50',
    ...env,
  });
  const rules = (await loadConfig(undefined, '/nonexistent-dir')).rules;
  const engine: Engine = createEngine({ settings, db, rules, log });
  const app: HeraldApp = createApp(engine);
  const post = (path: string, body: unknown, o: { method?: string; key?: string } = {}) => {
    const raw = JSON.stringify(body);
    const method = o.method ?? 'POST';
    return app.request(path, { method, body: raw, headers: signedHeaders(raw, { method, path, headers: o.key ? { 'idempotency-key': o.key } : {} }) });
  };
  return { engine, app, db, lines, post, close: () => db.close().catch(() => {}) };
}

type Herald = Awaited<ReturnType<typeof heraldViaProxy>>;

const tenantId = randomUUID();
const userId = randomUUID();
const emitBody = (name = 'Escuela') => ({ type: 'obra.completed', ctx: { tenantId, actorId: userId, obra: { id: 'obra-1', name, percentage: 100 } } });

async function expect503(res: Response, shape: 'api' | 'v2', what: string) {
  const text = await res.text();
  assert.equal(res.status, 503, `${what}: ${res.status} ${text}`);
  const retryAfter = res.headers.get('retry-after');
  assert.ok(retryAfter && /^\d+$/.test(retryAfter) && Number(retryAfter) >= 1, `${what}: Retry-After is ${retryAfter}`);
  const body = JSON.parse(text) as Record<string, unknown>;
  if (shape === 'v2') assert.deepEqual(body, { error: 'database unavailable' }, what);
  else {
    assert.equal(body.ok, false, what);
    assert.equal(body.error, 'database unavailable', what);
  }
}

describe('a database outage', { skip }, () => {
  let t: TestDb;
  let proxy: TcpProxy;
  let h: Herald;
  before(async () => {
    t = await createTestDb();
    const target = new URL(t.url!);
    proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
    // An emit waits at most 1 s for a database that does not answer (the default is 3 s).
    h = await heraldViaProxy(t, proxy, { HERALD_INTAKE_FLUSH_TIMEOUT_MS: '1000' });
    const res = await h.post(`/api/users/${userId}`, { tenantId, name: 'actor' }, { method: 'PUT' });
    assert.equal(res.status, 201, await res.text());
  });
  after(async () => {
    await h?.close();
    await proxy?.close();
    await t?.drop();
  });

  /** Every route of this list needs the database. */
  async function everyRoute(token: string) {
    const auth = { authorization: `Bearer ${token}` };
    const v2 = { authorization: `Bearer ${QSTASH_TOKEN}` };
    return [
      ['emit', 'api', await h.post('/api/notifications/emit', emitBody('down'))],
      ['inbox list', 'api', await h.app.request('/api/notifications', { headers: auth })],
      ['inbox badge', 'api', await h.app.request('/api/notifications/unread-count', { headers: auth })],
      ['directory PUT', 'api', await h.post(`/api/users/${randomUUID()}`, { tenantId, name: 'x' }, { method: 'PUT' })],
      ['preferences', 'api', await h.app.request('/api/preferences', { headers: auth })],
      ['/v2/notify', 'v2', await h.app.request('/v2/notify/some-event', { method: 'POST', body: 'hi', headers: v2 })],
      ['/v2/waiters', 'v2', await h.app.request('/v2/waiters/some-event', { headers: v2 })],
    ] as const;
  }

  test('refused connections: 503 + Retry-After on every route that needs the database, /healthz 200, /readyz 503; herald recovers by itself', async () => {
    const token = await mintUserToken(JWT_SECRET, userId);
    assert.equal((await h.post('/api/notifications/emit', emitBody('before'))).status, 200);
    const linesBefore = h.lines.length;

    proxy.cut('refuse');
    for (let round = 0; round < 3; round++) {
      for (const [what, shape, res] of await everyRoute(token)) await expect503(res, shape, what);
    }
    const burst = await Promise.all(Array.from({ length: 20 }, (_, i) => h.post('/api/notifications/emit', emitBody(`burst ${i}`))));
    for (const res of burst) await expect503(res, 'api', 'emit in a burst');
    const health = await h.app.request('/healthz');
    assert.equal(health.status, 200, 'liveness does not depend on the database');
    const ready = await h.app.request('/readyz');
    assert.equal(ready.status, 503);
    assert.equal(((await ready.json()) as { ok: boolean }).ok, false);

    const during = h.lines.slice(linesBefore);
    assert.deepEqual(during.filter((l) => l.level >= 50).map((l) => l.msg), [], 'an outage is not an error-level event');
    assert.ok(during.every((l) => l.stack === undefined), 'no stack traces for an outage');
    const warnings = during.filter((l) => l.level === 40 && /database unavailable/.test(l.msg));
    assert.ok(warnings.length >= 1, 'the outage is logged');
    assert.ok(warnings.length <= 3, `the outage's warning is rate-limited, not one per request (${warnings.length} for ${3 * 7 + 20} requests)`);

    proxy.restore();
    await eventually(async () => (await h.post('/api/notifications/emit', emitBody('after'))).status === 200, 15_000);
    assert.equal((await h.app.request('/readyz')).status, 200);
    assert.equal((await h.app.request('/api/notifications', { headers: { authorization: `Bearer ${token}` } })).status, 200);
  });

  test('a database that hangs (accepts TCP, never answers): emit answers 503 at its flush bound, then at once; /readyz 503, /healthz 200', async () => {
    assert.equal((await h.post('/api/notifications/emit', emitBody('before the hang'))).status, 200);
    proxy.cut('blackhole');
    try {
      const [ready, ready2, health] = await Promise.all([h.app.request('/readyz'), h.app.request('/readyz'), h.app.request('/healthz')]);
      assert.equal(ready.status, 503);
      assert.equal(ready2.status, 503);
      assert.equal(health.status, 200);
      // The first emit's write hangs: answered at HERALD_INTAKE_FLUSH_TIMEOUT_MS (its outcome unknown).
      await expect503(await h.post('/api/notifications/emit', emitBody('hung 1')), 'api', 'emit into a hung database');
      // While that write is stuck, the writers are stalled: the next emits are refused at once.
      for (const res of await Promise.all([1, 2, 3].map((i) => h.post('/api/notifications/emit', emitBody(`hung +${i}`))))) {
        await expect503(res, 'api', 'emit while the writers are stalled');
      }
    } finally {
      proxy.restore();
    }
    await eventually(async () => (await h.app.request('/readyz')).status === 200, 15_000);
    await eventually(async () => (await h.post('/api/notifications/emit', emitBody('after the hang'))).status === 200, 15_000);
  });
});

describe('a write whose outcome is unknown (COMMIT sent, connection lost)', { skip }, () => {
  for (const mode of ['workflow', 'direct'] as const) {
    test(`${mode} mode: 503 + Retry-After, and the client's retry with its Idempotency-Key stores exactly one event each`, async () => {
      const t = await createTestDb();
      const target = new URL(t.url!);
      const proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
      const h = await heraldViaProxy(t, proxy, mode === 'direct' ? { WORKFLOWS_DISABLED: '1' } : {});
      // The test's own session, straight to Postgres: a deferred trigger makes each COMMIT that
      // stored an event wait for an advisory lock the test holds, so the COMMIT is on the server
      // when the proxy cuts the connection; the server then finishes it with nobody to tell.
      const observer = new pg.Client({ connectionString: t.url });
      await observer.connect();
      try {
        assert.equal((await h.post(`/api/users/${userId}`, { tenantId, name: 'actor' }, { method: 'PUT' })).status, 201);
        await observer.query(`
          CREATE FUNCTION test_hold_commit() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN PERFORM pg_advisory_xact_lock_shared(424242); RETURN NULL; END $$;
          CREATE CONSTRAINT TRIGGER test_hold_commit AFTER INSERT ON herald_events
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_hold_commit()`);
        await observer.query(`SELECT pg_advisory_lock(424242)`);

        const keys = [1, 2, 3].map((i) => `unknown-${mode}-${i}-${randomUUID()}`);
        const bodies = keys.map((k) => emitBody(k));
        const pending = keys.map((k, i) => h.post('/api/notifications/emit', bodies[i], { key: k }));
        // Both writers' COMMITs are waiting on the lock (the three emits ride in one or two flushes).
        await eventually(async () => {
          const { rows } = await observer.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'advisory'`,
          );
          return rows[0]!.n >= 1;
        });
        proxy.cut('refuse');
        const answers = await Promise.all(pending);
        for (const res of answers) await expect503(res, 'api', 'emit whose COMMIT was in flight');
        // The server completes the COMMITs it had received.
        await observer.query(`SELECT pg_advisory_unlock(424242)`);
        await eventually(async () => {
          const { rows } = await observer.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'advisory'`);
          return rows[0]!.n === 0;
        });
        await observer.query(`DROP TRIGGER test_hold_commit ON herald_events`);
        const stored = async () =>
          Number((await observer.query<{ n: number }>(`SELECT count(*)::int AS n FROM herald_events WHERE ctx->'obra'->>'name' = ANY($1)`, [keys])).rows[0]!.n);
        const committedMeanwhile = await stored();

        proxy.restore();
        const retries = await eventually(async () => {
          const rs = await Promise.all(keys.map((k, i) => h.post('/api/notifications/emit', bodies[i], { key: k })));
          return rs.every((r) => r.status === 200) ? rs : undefined;
        }, 15_000);
        assert.equal(await stored(), 3, `exactly one event per key (${committedMeanwhile} had committed while herald was cut off)`);
        for (const res of retries) {
          const body = (await res.json()) as { eventId: string };
          const { rows } = await observer.query<{ id: string }>(`SELECT id::text FROM herald_events WHERE ctx->'obra'->>'name' = ANY($1)`, [keys]);
          assert.ok(rows.some((r) => r.id === body.eventId), 'the retry names the stored event');
        }
        assert.equal(committedMeanwhile, 3, 'the server finished the COMMITs it had received: the retries replayed them (Idempotent-Replayed)');
        for (const res of retries) assert.equal(res.headers.get('idempotent-replayed'), 'true');
      } finally {
        await observer.end();
        await h.close();
        await proxy.close();
        await t.drop();
      }
    });
  }
});
