import assert from 'node:assert/strict';
import { createHmac, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { resolveSettings } from '../../src/config/settings.ts';
import { createEngine } from '../../src/engine.ts';
import { createApp } from '../../src/http/app.ts';
import { signRequest, verifyRequestSignature } from '../../src/signing.ts';
import { silentLogger, type Logger } from '../../src/log.ts';
import { obraCompleted, seedTenant } from '../helpers/fixtures.ts';
import { capturingLogger, createTestHerald, JWT_SECRET, SECRET, signedHeaders, type TestHerald } from '../helpers/herald.ts';

/**
 * Issue 24 item 10: every x-signature route but the seed's emit signs
 * "<timestamp>\n<METHOD> <path>\n<body>", so a captured signature is useless on another method,
 * path or body, and after five minutes. Signatures here are computed by hand with node:crypto, so
 * the tests check the documented formula, not herald's own signer.
 */

const KEY = Buffer.from(SECRET);
const nowS = () => Math.floor(Date.now() / 1000);
const hmacHex = (secret: Buffer | string, s: string) => createHmac('sha256', secret).update(s).digest('hex');

/** The documented headers for a request bound to its method and path. */
function bound(method: string, path: string, body = '', opts: { ts?: number; secret?: Buffer | string } = {}) {
  const ts = opts.ts ?? nowS();
  return { 'x-signature-timestamp': String(ts), 'x-signature': hmacHex(opts.secret ?? KEY, `${ts}\n${method} ${path}\n${body}`) };
}

describe('the signed string (unit)', () => {
  const VECTOR = {
    secret: Buffer.from('test-secret-0123456789'),
    ts: 1_700_000_000,
    method: 'PUT',
    path: '/api/users/8c1f0e1a-3f52-4b8e-9a0d-2b7c4d9e6f10',
    body: '{"tenantId":"t"}',
    signature: '5c41f8bdbf943850641f1a154133e9d41854baa8af938a20c6f6a807db977e11',
  };
  const verifyVector = (headers: Record<string, string>, over: Partial<typeof VECTOR> = {}, nowSeconds = VECTOR.ts) => {
    const v = { ...VECTOR, ...over };
    return verifyRequestSignature({
      headers: (n) => headers[n],
      method: v.method,
      path: v.path,
      body: Buffer.from(v.body),
      secrets: [VECTOR.secret],
      nowSeconds,
    });
  };

  test('the issue\'s test vector: herald verifies it (and the formula yields it)', () => {
    const signed = `${VECTOR.ts}\n${VECTOR.method} ${VECTOR.path}\n${VECTOR.body}`;
    assert.equal(hmacHex(VECTOR.secret, signed), VECTOR.signature);
    const headers = { 'x-signature-timestamp': String(VECTOR.ts), 'x-signature': VECTOR.signature };
    assert.deepEqual(verifyVector(headers), { ok: true, scheme: 'x-signature' });
    // herald's own signer (the CLI's and the tests') produces the same headers.
    assert.deepEqual(signRequest(VECTOR.secret, VECTOR.ts, VECTOR.method, VECTOR.path, VECTOR.body), headers);
    // The same signature on anything else fails.
    assert.equal(verifyVector(headers, { method: 'DELETE' }).ok, false, 'method');
    assert.equal(verifyVector(headers, { path: '/api/users/00000000-0000-4000-8000-000000000000' }).ok, false, 'path');
    assert.equal(verifyVector(headers, { path: `${VECTOR.path}?x=1` }).ok, false, 'query');
    assert.equal(verifyVector(headers, { body: '{"tenantId":"u"}' }).ok, false, 'body');
    assert.equal(verifyVector({ ...headers, 'x-signature-timestamp': String(VECTOR.ts + 1) }).ok, false, 'timestamp');
    assert.equal(verifyVector(headers, {}, VECTOR.ts + 300).ok, true, '+300 s');
    assert.equal(verifyVector(headers, {}, VECTOR.ts + 301).ok, false, 'after five minutes');
    assert.equal(verifyVector(headers, {}, VECTOR.ts - 301).ok, false, 'from the future');
  });

  test('malformed or missing x-signature-timestamp fails with a reason, never throws', () => {
    const sig = VECTOR.signature;
    for (const ts of [undefined, '', ' ', 'now', '-1700000000', '1700000000.5', '1.7e9', '0x6553f100', '1700000000000', '9'.repeat(30), ' 1700000000']) {
      const headers: Record<string, string> = { 'x-signature': sig };
      if (ts !== undefined) headers['x-signature-timestamp'] = ts;
      const r = verifyVector(headers);
      assert.equal(r.ok, false, String(ts));
      assert.ok(!r.ok && /x-signature-timestamp/.test(r.reason), `${String(ts)}: ${!r.ok && r.reason}`);
    }
  });
});

describe('signed routes other than emit are bound to method, path, body and time', () => {
  let h: TestHerald;
  before(async () => {
    h = await createTestHerald({ env: { WORKFLOWS_DISABLED: '1' } });
  });
  after(async () => h?.close());

  /** An app on the same database and rules, with its own environment and log. */
  const appWith = (env: Record<string, string>, log: Logger = silentLogger) =>
    createApp(createEngine({ settings: resolveSettings({ JWT_SECRET, WORKFLOWS_DISABLED: '1', ...env }), db: h.db, rules: h.engine.rules, log }));
  const send = (method: string, path: string, body: string | undefined, headers: Record<string, string>, app = h.app) =>
    app.request(path, { method, body, headers: { 'content-type': 'application/json', ...headers } });
  const userRow = async (id: string) =>
    (await h.db.query<{ tenant_id: string; email: string | null }>('SELECT tenant_id, email FROM herald_users WHERE id = $1', [id])).rows[0];
  const putUser = async (id: string, fields: Record<string, unknown>) => {
    const body = JSON.stringify(fields);
    const res = await send('PUT', `/api/users/${id}`, body, bound('PUT', `/api/users/${id}`, body));
    assert.equal(res.status, 201, await res.text());
    return body;
  };

  test('PUT, GET and DELETE /api/users/{id} signed as documented are accepted; bodyless requests sign an empty body', async () => {
    const id = randomUUID();
    await putUser(id, { tenantId: randomUUID(), email: 'a@example.com' });
    const path = `/api/users/${id}`;
    const got = await send('GET', path, undefined, bound('GET', path));
    assert.equal(got.status, 200, await got.clone().text());
    // The string of a bodyless request ends with the second newline.
    assert.equal(bound('GET', path)['x-signature'], hmacHex(KEY, `${bound('GET', path)['x-signature-timestamp']}\nGET ${path}\n`));
    // The query string is part of the path as sent.
    assert.equal((await send('GET', `${path}?fields=all`, undefined, bound('GET', path))).status, 401, 'signed without its query');
    assert.equal((await send('GET', `${path}?fields=all`, undefined, bound('GET', `${path}?fields=all`))).status, 200, 'signed with its query');
    assert.equal((await send('DELETE', path, undefined, bound('DELETE', path))).status, 200);
    assert.equal(await userRow(id), undefined);
  });

  test('a captured signed request is useless on another method, another path, another body, and after five minutes', async () => {
    const a = randomUUID();
    const b = randomUUID();
    const tenantId = randomUUID();
    const body = JSON.stringify({ tenantId, email: 'a@example.com' });
    const captured = bound('PUT', `/api/users/${a}`, body);
    assert.equal((await send('PUT', `/api/users/${a}`, body, captured)).status, 201);

    assert.equal((await send('DELETE', `/api/users/${a}`, body, captured)).status, 401, 'another method');
    assert.ok(await userRow(a), 'A still exists');
    assert.equal((await send('PUT', `/api/users/${b}`, body, captured)).status, 401, 'another path');
    assert.equal(await userRow(b), undefined, 'B was not created');
    const other = JSON.stringify({ tenantId: randomUUID(), email: 'mallory@example.com' });
    assert.equal((await send('PUT', `/api/users/${a}`, other, captured)).status, 401, 'another body');
    assert.equal((await userRow(a))?.tenant_id, tenantId);

    // Five minutes later (signed 301 s ago; the margin of one second absorbs a clock tick).
    const old = bound('PUT', `/api/users/${a}`, body, { ts: nowS() - 301 });
    assert.equal((await send('PUT', `/api/users/${a}`, body, old)).status, 401, 'expired');
    const future = bound('PUT', `/api/users/${a}`, body, { ts: nowS() + 302 });
    assert.equal((await send('PUT', `/api/users/${a}`, body, future)).status, 401, 'from the future');
    const recent = bound('PUT', `/api/users/${a}`, body, { ts: nowS() - 299 });
    assert.equal((await send('PUT', `/api/users/${a}`, body, recent)).status, 200, 'within the window');
  });

  test('the old attacks fail: DELETE with an emit body, PUT replayed to another id, preferences to another user, emit to /dry-run', async () => {
    const { tenantId, users } = await seedTenant(h, ['victim', 'other']);
    const victim = users.victim!;
    const other = users.other!;

    // 1. A captured emit (body-only x-signature, the seed's scheme) sent as DELETE /api/users/{victim}.
    const emitBody = JSON.stringify(obraCompleted(tenantId, other));
    const emitHeaders = signedHeaders(emitBody);
    assert.equal((await send('POST', '/api/notifications/emit', emitBody, emitHeaders)).status, 200, 'the emit itself is fine');
    assert.equal((await send('DELETE', `/api/users/${victim}`, emitBody, emitHeaders)).status, 401, 'DELETE with an emit body');
    assert.ok(await userRow(victim), 'the victim is still in the directory');

    // 2. A captured PUT /api/users/A replayed to another id, signed either way (old or new scheme).
    const a = randomUUID();
    const fresh = randomUUID();
    const aBody = JSON.stringify({ tenantId, email: 'a@example.com' });
    for (const captured of [{ 'x-signature': hmacHex(KEY, aBody) }, bound('PUT', `/api/users/${a}`, aBody)]) {
      assert.equal((await send('PUT', `/api/users/${fresh}`, aBody, captured)).status, 401, 'PUT replayed to another id');
    }
    assert.equal(await userRow(fresh), undefined, 'no user created with A\'s tenant and email');

    // 3. A captured preferences PUT replayed to another user.
    const prefs = JSON.stringify({ preferences: [{ channel: '*', scope: '*', enabled: false }] });
    const prefPath = `/api/users/${other}/preferences`;
    const prefCaptured = bound('PUT', prefPath, prefs);
    assert.equal((await send('PUT', prefPath, prefs, prefCaptured)).status, 200);
    for (const captured of [prefCaptured, { 'x-signature': hmacHex(KEY, prefs) }]) {
      assert.equal((await send('PUT', `/api/users/${victim}/preferences`, prefs, captured)).status, 401, 'preferences replayed');
    }
    const victimPrefs = await send('GET', `/api/users/${victim}/preferences`, undefined, bound('GET', `/api/users/${victim}/preferences`));
    assert.equal(victimPrefs.status, 200);
    assert.deepEqual(((await victimPrefs.json()) as { preferences: unknown[] }).preferences, [], 'the victim\'s preferences are untouched');

    // 4. An emit body and its signature replayed to /dry-run.
    assert.equal((await send('POST', '/api/notifications/dry-run', emitBody, emitHeaders)).status, 401, 'emit replayed to dry-run');
    const dry = await send('POST', '/api/notifications/dry-run', emitBody, bound('POST', '/api/notifications/dry-run', emitBody));
    assert.equal(dry.status, 200, 'the dry run signed for itself is fine');
  });

  test('Standard Webhooks is refused on these routes, with the reason in the log; emit still accepts it', async () => {
    const { log, lines } = capturingLogger();
    const app = appWith({ REQUEST_SIGNING_SECRET: SECRET }, log);
    const id = randomUUID();
    const body = JSON.stringify({ tenantId: randomUUID() });
    const sw = signedHeaders(body, { scheme: 'standard-webhooks' });
    assert.equal((await send('PUT', `/api/users/${id}`, body, sw, app)).status, 401);
    assert.equal(await userRow(id), undefined);
    // Even alongside a valid bound x-signature: one request, one scheme.
    assert.equal((await send('PUT', `/api/users/${id}`, body, { ...sw, ...bound('PUT', `/api/users/${id}`, body) }, app)).status, 401);
    const reasons = lines.map((l) => (JSON.parse(l) as { reason?: string }).reason ?? '');
    assert.ok(reasons.some((r) => /Standard Webhooks/.test(r) && /emit/.test(r) && /method and path/.test(r)), reasons.join('\n'));

    const emitBody = JSON.stringify(obraCompleted(randomUUID(), randomUUID(), `obra ${randomUUID()}`));
    assert.equal((await send('POST', '/api/notifications/emit', emitBody, signedHeaders(emitBody, { scheme: 'standard-webhooks' }), app)).status, 200);
  });

  test('an old-style body-only x-signature on a directory route is refused with a reason that names the new header', async () => {
    const { log, lines } = capturingLogger();
    const app = appWith({ REQUEST_SIGNING_SECRET: SECRET }, log);
    const id = randomUUID();
    const body = JSON.stringify({ tenantId: randomUUID() });
    assert.equal((await send('PUT', `/api/users/${id}`, body, { 'x-signature': hmacHex(KEY, body) }, app)).status, 401);
    const reasons = lines.map((l) => (JSON.parse(l) as { reason?: string }).reason ?? '');
    assert.ok(reasons.some((r) => /x-signature-timestamp/.test(r)), reasons.join('\n'));
  });

  test('secret rotation: each active secret signs these routes, a retired one does not', async () => {
    const first = 'rotation-secret-a-0123456789';
    const second = 'rotation-secret-b-0123456789';
    const envs: Record<string, string>[] = [{ REQUEST_SIGNING_SECRET: `${first} ${second}` }, { REQUEST_SIGNING_SECRET: first, REQUEST_SIGNING_SECRET_NEXT: second }];
    for (const env of envs) {
      const app = appWith(env);
      for (const secret of [first, second]) {
        const id = randomUUID();
        const body = JSON.stringify({ tenantId: randomUUID() });
        assert.equal((await send('PUT', `/api/users/${id}`, body, bound('PUT', `/api/users/${id}`, body, { secret }), app)).status, 201, secret);
      }
      const id = randomUUID();
      const body = JSON.stringify({ tenantId: randomUUID() });
      assert.equal((await send('PUT', `/api/users/${id}`, body, bound('PUT', `/api/users/${id}`, body), app)).status, 401, 'retired secret');
    }
  });

  test('malformed timestamps and signatures are a bare 401, never a 5xx', async () => {
    const id = randomUUID();
    const path = `/api/users/${id}`;
    const good = bound('GET', path);
    const cases: Record<string, string>[] = [
      { 'x-signature': good['x-signature'] },
      { ...good, 'x-signature-timestamp': 'yesterday' },
      { ...good, 'x-signature-timestamp': String(nowS() * 1000) },
      { ...good, 'x-signature-timestamp': '9'.repeat(40) },
      { ...good, 'x-signature': 'nothex' },
      { ...good, 'x-signature': 'a'.repeat(100_000) },
      { 'x-signature-timestamp': good['x-signature-timestamp'] },
    ];
    for (const headers of cases) {
      const res = await send('GET', path, undefined, headers);
      assert.equal(res.status, 401, JSON.stringify(headers).slice(0, 120));
      assert.deepEqual(await res.json(), { ok: false, error: 'unauthorized' });
    }
  });
});
