import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { resolveSettings } from '../../src/config/settings.ts';
import { createEngine } from '../../src/engine.ts';
import { createApp, type HeraldApp } from '../../src/http/app.ts';
import { defineConfig, rule, z } from '../../src/index.ts';
import { silentLogger } from '../../src/log.ts';
import { createTestHerald, JWT_SECRET, SECRET, signedHeaders, type SignOptions, type TestHerald } from '../helpers/herald.ts';

const EMIT = '/api/notifications/emit';

/** When > 0, the next `flaky` evaluations throw (inside the emit transaction, after the key is reserved). */
let failNext = 0;

const config = defineConfig({
  events: {
    'note.created': rule({
      schema: z.object({ userId: z.string().uuid(), text: z.string().min(1) }),
      recipients: (ctx, to) => {
        if (ctx.text === 'flaky' && failNext > 0) {
          failNext--;
          throw new Error('internal detail: connection to 10.0.0.7 refused (password=hunter2)');
        }
        return to.users(ctx.userId);
      },
      inApp: { title: 'Note: {{ ctx.text }}', type: 'info' },
    }),
  },
});

let h: TestHerald;
let workflowApp: HeraldApp;
before(async () => {
  h = await createTestHerald({ config, env: { WORKFLOWS_DISABLED: '1' } });
  const settings = resolveSettings({ REQUEST_SIGNING_SECRET: SECRET, JWT_SECRET });
  assert.equal(settings.workflowMode, true);
  workflowApp = createApp(createEngine({ settings, db: h.db, rules: h.engine.rules, log: silentLogger }));
});
after(async () => h?.close());

const note = (text = `note ${randomUUID()}`, userId: string = randomUUID()) => JSON.stringify({ type: 'note.created', ctx: { userId, text } });
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

function send(raw: string, opts: SignOptions & { key?: string } = {}, app: HeraldApp = h.app) {
  const headers = signedHeaders(raw, opts);
  if (opts.key !== undefined) headers['idempotency-key'] = opts.key;
  return app.request(EMIT, { method: 'POST', body: raw, headers });
}

async function counts() {
  const { rows } = await h.db.query<{ n: number; e: number; j: number }>(
    `SELECT (SELECT count(*) FROM notifications)::int AS n, (SELECT count(*) FROM herald_events)::int AS e,
            (SELECT count(*) FROM herald_jobs)::int AS j`,
  );
  return rows[0]!;
}

const newKey = () => `key-${randomUUID()}`;

describe('Idempotency-Key', () => {
  test('same key and same body: the first response is replayed byte for byte, with no new effects', async () => {
    const key = newKey();
    const raw = note();
    const c0 = await counts();
    const first = await send(raw, { key });
    const firstText = await first.text();
    assert.equal(first.status, 200, firstText);
    assert.equal(first.headers.get('idempotent-replayed'), null);
    const body = JSON.parse(firstText) as { ok: boolean; delivered: boolean; inserted: number };
    assert.deepEqual([body.ok, body.delivered, body.inserted], [true, true, 1]);
    const c1 = await counts();
    assert.deepEqual(c1, { ...c0, n: c0.n + 1, e: c0.e + 1 });

    // A retry may be signed differently (Standard Webhooks, new timestamp): the key decides.
    for (const scheme of ['x-signature', 'standard-webhooks'] as const) {
      const again = await send(raw, { key, scheme });
      assert.equal(again.status, 200);
      assert.equal(again.headers.get('idempotent-replayed'), 'true');
      assert.equal(await again.text(), firstText);
    }
    assert.deepEqual(await counts(), c1, 'no new notifications, events or jobs');
  });

  test('workflow mode: a replay enqueues no second job', async () => {
    const key = newKey();
    const raw = note();
    const c0 = await counts();
    const first = await send(raw, { key }, workflowApp);
    const firstText = await first.text();
    assert.equal(first.status, 200, firstText);
    assert.equal((JSON.parse(firstText) as { workflow: string }).workflow, 'queued');
    const c1 = await counts();
    assert.deepEqual(c1, { ...c0, e: c0.e + 1, j: c0.j + 1 });
    const again = await send(raw, { key }, workflowApp);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.equal(await again.text(), firstText);
    assert.deepEqual(await counts(), c1);
  });

  test('same key with a different body is 422, and the stored response is kept', async () => {
    const key = newKey();
    const raw = note();
    const first = await send(raw, { key });
    const firstText = await first.text();
    assert.equal(first.status, 200);
    const c1 = await counts();
    const other = await send(note(), { key });
    assert.equal(other.status, 422);
    const err = (await other.json()) as { ok: boolean; error: string };
    assert.equal(err.ok, false);
    assert.match(err.error, /idempotency key/i);
    // Whitespace changes the bytes, so it is another body too.
    assert.equal((await send(`${raw}\n`, { key })).status, 422);
    assert.deepEqual(await counts(), c1);
    const replay = await send(raw, { key });
    assert.equal(replay.status, 200);
    assert.equal(await replay.text(), firstText);
  });

  test('a request still in flight with the same key is 409 with Retry-After', async () => {
    const key = newKey();
    const raw = note();
    await h.db.query(`INSERT INTO herald_idempotency_keys (key, body_sha256, state) VALUES ($1, $2, 'pending')`, [`key:${key}`, sha256(raw)]);
    const c0 = await counts();
    const res = await send(raw, { key });
    assert.equal(res.status, 409);
    const retryAfter = res.headers.get('retry-after');
    assert.ok(retryAfter !== null && /^\d+$/.test(retryAfter) && Number(retryAfter) >= 1, `Retry-After: ${retryAfter}`);
    const body = (await res.json()) as { ok: boolean; error: string };
    assert.equal(body.ok, false);
    assert.equal(typeof body.error, 'string');
    assert.deepEqual(await counts(), c0, 'nothing processed');
    // In flight with another body: that is a key reused for another request.
    assert.equal((await send(note(), { key })).status, 422);
  });

  test('a pending key abandoned by a dead request (older than 60 s) is taken over', async () => {
    const key = newKey();
    const raw = note();
    await h.db.query(
      `INSERT INTO herald_idempotency_keys (key, body_sha256, state, created_at) VALUES ($1, $2, 'pending', now() - interval '2 minutes')`,
      [`key:${key}`, sha256(raw)],
    );
    const res = await send(raw, { key });
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal(res.headers.get('idempotent-replayed'), null);
    const { rows } = await h.db.query<{ state: string }>(`SELECT state FROM herald_idempotency_keys WHERE key = $1`, [`key:${key}`]);
    assert.equal(rows[0]?.state, 'done');
    assert.equal((await send(raw, { key })).headers.get('idempotent-replayed'), 'true');
  });

  test('a key older than HERALD_IDEMPOTENCY_TTL_HOURS (24 h default) no longer deduplicates', async () => {
    const key = newKey();
    const raw = note();
    const first = (await (await send(raw, { key })).json()) as { eventId: string };
    await h.db.query(`UPDATE herald_idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = $1`, [`key:${key}`]);
    const c0 = await counts();
    const second = await send(raw, { key });
    assert.equal(second.status, 200);
    assert.equal(second.headers.get('idempotent-replayed'), null);
    const body = (await second.json()) as { eventId: string };
    assert.notEqual(body.eventId, first.eventId);
    assert.deepEqual(await counts(), { ...c0, n: c0.n + 1, e: c0.e + 1 });
  });

  test('concurrent requests with one key: exactly one is processed; the others replay or get 409', async () => {
    const key = newKey();
    const raw = note();
    const c0 = await counts();
    const results = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const res = await send(raw, { key });
        return { status: res.status, replayed: res.headers.get('idempotent-replayed'), retryAfter: res.headers.get('retry-after'), text: await res.text() };
      }),
    );
    const fresh = results.filter((r) => r.status === 200 && r.replayed === null);
    assert.equal(fresh.length, 1, JSON.stringify(results.map((r) => [r.status, r.replayed])));
    for (const r of results) {
      if (r.status === 200 && r.replayed === 'true') assert.equal(r.text, fresh[0]!.text);
      else if (r.status === 409) assert.ok(r.retryAfter, '409 carries Retry-After');
      else assert.equal(r, fresh[0]);
    }
    assert.deepEqual(await counts(), { ...c0, n: c0.n + 1, e: c0.e + 1 });
  });

  test('a request that fails after reserving releases the key: the retry is processed (once)', async () => {
    const key = newKey();
    const raw = note('flaky');
    const c0 = await counts();
    failNext = 1;
    const failed = await send(raw, { key });
    assert.equal(failed.status, 500);
    const err = (await failed.json()) as Record<string, unknown>;
    assert.equal(err.ok, false);
    assert.equal(err.error, 'internal error');
    assert.ok(!JSON.stringify(err).includes('hunter2') && !JSON.stringify(err).includes('10.0.0.7'), 'no internals in a 500');
    assert.deepEqual(await counts(), c0, 'the failed request rolled back');
    const { rows } = await h.db.query(`SELECT 1 FROM herald_idempotency_keys WHERE key = $1`, [`key:${key}`]);
    assert.equal(rows.length, 0, 'the key is released');

    const retry = await send(raw, { key });
    const retryText = await retry.text();
    assert.equal(retry.status, 200, retryText);
    assert.equal(retry.headers.get('idempotent-replayed'), null);
    assert.deepEqual(await counts(), { ...c0, n: c0.n + 1, e: c0.e + 1 });
    const replay = await send(raw, { key });
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
    assert.equal(await replay.text(), retryText);
  });

  test('a request rejected by validation does not consume the key', async () => {
    const key = newKey();
    const bad = JSON.stringify({ type: 'note.created', ctx: { userId: 'nope', text: 'x' } });
    const res = await send(bad, { key });
    assert.equal(res.status, 400);
    const { rows } = await h.db.query(`SELECT 1 FROM herald_idempotency_keys WHERE key = $1`, [`key:${key}`]);
    assert.equal(rows.length, 0);
    const good = await send(note(), { key });
    assert.equal(good.status, 200);
    assert.equal(good.headers.get('idempotent-replayed'), null);
  });

  test('an invalid Idempotency-Key is 400 and stores nothing', async () => {
    const c0 = await counts();
    const bad = [
      ['300 characters', 'k'.repeat(300)],
      ['256 characters', 'k'.repeat(256)],
      ['inner space', 'a b'],
      ['tab', 'a\tb'],
      ['DEL', 'a\x7fb'],
      ['latin-1', 'cl\u00e9'],
    ] as const;
    for (const [name, key] of bad) {
      const res = await send(note(), { key });
      assert.equal(res.status, 400, name);
      const body = (await res.json()) as { ok: boolean; error: string };
      assert.equal(body.ok, false, name);
      assert.match(body.error, /Idempotency-Key/, name);
    }
    assert.deepEqual(await counts(), c0);
  });

  test('an Idempotency-Key of 1 to 255 printable ASCII characters is accepted (as documented)', async () => {
    for (const key of ['k', '!~"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}', `${'k'.repeat(250)}-251`.slice(0, 251)]) {
      const res = await send(note(), { key });
      assert.equal(res.status, 200, `length ${key.length}`);
    }
  });

  test(
    'an Idempotency-Key of 252-255 characters is accepted (the error message promises 1-255)',
    async () => {
      for (const len of [252, 255]) {
        const res = await send(note(), { key: 'k'.repeat(len) });
        assert.equal(res.status, 200, `length ${len}: ${await res.clone().text()}`);
      }
    },
  );

  test(
    'an empty Idempotency-Key header is 400, not a shared key',
    async () => {
      const res = await send(note(), { key: '' });
      assert.equal(res.status, 400, await res.clone().text());
    },
  );

  test('REQUEST_SIGNING_DISABLED=1: the Idempotency-Key is still honoured', async () => {
    const settings = resolveSettings({ REQUEST_SIGNING_DISABLED: '1', WORKFLOWS_DISABLED: '1', JWT_SECRET });
    const app = createApp(createEngine({ settings, db: h.db, rules: h.engine.rules, log: silentLogger }));
    const key = newKey();
    const raw = note();
    const first = await send(raw, { key, scheme: 'none' }, app);
    const text = await first.text();
    assert.equal(first.status, 200, text);
    const again = await send(raw, { key, scheme: 'none' }, app);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.equal(await again.text(), text);
    assert.equal((await send(note(), { key, scheme: 'none' }, app)).status, 422);
  });
});

describe('webhook-id (Standard Webhooks)', () => {
  test('a redelivery with the same webhook-id (re-signed, new timestamp) replays the first response', async () => {
    const id = `msg_${randomUUID().replace(/-/g, '')}`;
    const raw = note();
    const now = Math.floor(Date.now() / 1000);
    const first = await send(raw, { scheme: 'standard-webhooks', id, timestamp: now - 100 });
    const firstText = await first.text();
    assert.equal(first.status, 200, firstText);
    const c1 = await counts();
    const again = await send(raw, { scheme: 'standard-webhooks', id, timestamp: now });
    assert.equal(again.status, 200);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.equal(await again.text(), firstText);
    assert.deepEqual(await counts(), c1);
  });

  test('the same webhook-id with a different body is 422', async () => {
    const id = `msg_${randomUUID().replace(/-/g, '')}`;
    assert.equal((await send(note(), { scheme: 'standard-webhooks', id })).status, 200);
    const c1 = await counts();
    const res = await send(note(), { scheme: 'standard-webhooks', id });
    assert.equal(res.status, 422);
    assert.deepEqual(await counts(), c1);
  });

  test('an Idempotency-Key header takes precedence over the webhook-id', async () => {
    const key = newKey();
    const raw = note();
    const first = await send(raw, { scheme: 'standard-webhooks', key });
    const text = await first.text();
    assert.equal(first.status, 200);
    // A different webhook-id but the same Idempotency-Key: the same request.
    const again = await send(raw, { scheme: 'standard-webhooks', key });
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.equal(await again.text(), text);
  });

  test('key namespaces do not collide: an Idempotency-Key equal to an earlier webhook-id is a new key', async () => {
    const id = `msg_${randomUUID().replace(/-/g, '')}`;
    assert.equal((await send(note(), { scheme: 'standard-webhooks', id })).status, 200);
    const res = await send(note(), { key: id });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('idempotent-replayed'), null);
  });

  test('x-signature requests are deduplicated by their body: a different body is a new request', async () => {
    const raw = note();
    const first = await send(raw);
    const text = await first.text();
    const again = await send(raw);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.equal(await again.text(), text);
    const other = await send(note());
    assert.equal(other.status, 200);
    assert.equal(other.headers.get('idempotent-replayed'), null);
  });
});
