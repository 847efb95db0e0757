import assert from 'node:assert/strict';
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { resolveSettings, SettingsError } from '../../src/config/settings.ts';
import { createEngine } from '../../src/engine.ts';
import { createApp } from '../../src/http/app.ts';
import { signStandardWebhooks, signXSignature, verifySignature, type VerifyInput } from '../../src/signing.ts';
import { silentLogger, type Logger } from '../../src/log.ts';
import { obraCompleted, seedTenant } from '../helpers/fixtures.ts';
import { capturingLogger, createTestHerald, JWT_SECRET, SECRET, signedHeaders, type TestHerald } from '../helpers/herald.ts';

const EMIT = '/api/notifications/emit';
const KEY = Buffer.from(SECRET);
const nowS = () => Math.floor(Date.now() / 1000);
const hexSig = (secret: Buffer, body: string | Buffer) => createHmac('sha256', secret).update(body).digest('hex');
const b64Sig = (secret: Buffer, id: string, ts: number | string, body: string | Buffer) =>
  createHmac('sha256', secret).update(`${id}.${ts}.`).update(body).digest('base64');

/** A valid emit body, unique each time (x-signature requests with the same body are deduplicated). */
const uniqueEvent = () => JSON.stringify(obraCompleted(randomUUID(), randomUUID(), `obra ${randomUUID()}`));

/** verifySignature over a header map (names are looked up lower-case, as Hono does). */
function verify(headers: Record<string, string>, body: string | Buffer, opts: Partial<VerifyInput> = {}) {
  const lower = new Map(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  return verifySignature({
    headers: (n) => lower.get(n.toLowerCase()),
    body: Buffer.isBuffer(body) ? body : Buffer.from(body),
    secrets: [KEY],
    nowSeconds: nowS(),
    ...opts,
  });
}

describe('verifySignature (unit)', () => {
  const body = '{"type":"obra.completed","ctx":{}}';

  test('x-signature: lower-case hex, upper-case hex, sha256= prefix and surrounding spaces verify', () => {
    const sig = hexSig(KEY, body);
    for (const v of [sig, sig.toUpperCase(), `sha256=${sig}`, `sha256=${sig.toUpperCase()}`, `  ${sig}  `]) {
      assert.deepEqual(verify({ 'x-signature': v }, body), { ok: true, scheme: 'x-signature' }, v);
    }
  });

  test('x-signature: a tampered body, a wrong secret, or no secret configured fail', () => {
    const sig = hexSig(KEY, body);
    assert.equal(verify({ 'x-signature': sig }, body + ' ').ok, false);
    assert.equal(verify({ 'x-signature': sig }, body.replace('obra', 'obrb')).ok, false);
    assert.equal(verify({ 'x-signature': hexSig(Buffer.from('another-secret-0123456789'), body) }, body).ok, false);
    assert.equal(verify({ 'x-signature': sig }, body, { secrets: [] }).ok, false);
    // A signature over the empty body does not verify a non-empty one (and vice versa).
    assert.equal(verify({ 'x-signature': hexSig(KEY, '') }, body).ok, false);
  });

  test('missing signature headers fail with a reason', () => {
    const r = verify({}, body);
    assert.equal(r.ok, false);
    assert.ok(!r.ok && r.reason.length > 0);
  });

  test('malformed x-signature values fail (never throw)', () => {
    const sig = hexSig(KEY, body);
    const bad = [
      '',
      ' ',
      sig.slice(0, 63), // odd length
      sig.slice(0, 62), // even but short
      sig + '0', // 65
      sig + sig, // 128
      'z' + sig.slice(1), // non-hex
      sig.slice(0, 63) + 'g',
      `sha256=`,
      `sha256:${sig}`,
      `sha1=${sig}`,
      `sha256=sha256=${sig}`,
      `${sig.slice(0, 32)} ${sig.slice(32)}`,
      Buffer.from(hexSig(KEY, body), 'hex').toString('base64'),
      'a'.repeat(1_000_000),
      '\u00e9'.repeat(64),
    ];
    for (const v of bad) {
      const r = verify({ 'x-signature': v }, body);
      assert.equal(r.ok, false, `accepted ${JSON.stringify(v.slice(0, 80))}`);
    }
  });

  test('Standard Webhooks v1 verifies; the id, timestamp and body are all covered by the MAC', () => {
    const ts = nowS();
    const id = 'msg_2KWPBgLlAfxdpx2AI54pPJ85f4W';
    const h = signStandardWebhooks(KEY, id, ts, body);
    assert.deepEqual(verify(h, body), { ok: true, scheme: 'standard-webhooks', webhookId: id });
    assert.equal(verify({ ...h, 'webhook-id': 'msg_other' }, body).ok, false);
    assert.equal(verify({ ...h, 'webhook-timestamp': String(ts - 1) }, body).ok, false);
    assert.equal(verify(h, body + ' ').ok, false);
    assert.equal(verify(h, body, { secrets: [Buffer.from('another-secret-0123456789')] }).ok, false);
  });

  test('Standard Webhooks: the signature is checked even when an x-signature would verify', () => {
    const h = signStandardWebhooks(Buffer.from('another-secret-0123456789'), 'msg_1', nowS(), body);
    assert.equal(verify({ ...h, 'x-signature': hexSig(KEY, body) }, body).ok, false);
  });

  test('Standard Webhooks: several space-separated signatures, one of which matches', () => {
    const ts = nowS();
    const good = `v1,${b64Sig(KEY, 'msg_1', ts, body)}`;
    const wrong = `v1,${b64Sig(Buffer.from('another-secret-0123456789'), 'msg_1', ts, body)}`;
    const base = { 'webhook-id': 'msg_1', 'webhook-timestamp': String(ts) };
    for (const sig of [`${wrong} ${good}`, `${good} ${wrong}`, `v2,abc ${good}`, `garbage ${wrong} ${good}`, `${wrong}  ${good}`]) {
      assert.equal(verify({ ...base, 'webhook-signature': sig }, body).ok, true, sig);
    }
    assert.equal(verify({ ...base, 'webhook-signature': `${wrong} ${wrong}` }, body).ok, false);
    // The same MAC under another version tag is not a v1 signature.
    assert.equal(verify({ ...base, 'webhook-signature': good.replace('v1,', 'v2,') }, body).ok, false);
  });

  test('Standard Webhooks: timestamp tolerance is ±300 s in both directions, edges included', () => {
    const now = 1_700_000_000;
    const at = (ts: number) => verify(signStandardWebhooks(KEY, 'msg_t', ts, body), body, { nowSeconds: now });
    assert.equal(at(now).ok, true);
    assert.equal(at(now - 299).ok, true);
    assert.equal(at(now + 299).ok, true);
    assert.equal(at(now - 300).ok, true);
    assert.equal(at(now + 300).ok, true);
    assert.equal(at(now - 301).ok, false, 'expired');
    assert.equal(at(now + 301).ok, false, 'future');
    assert.equal(at(0).ok, false);
    assert.equal(at(now - 86_400).ok, false);
    assert.equal(at(now + 86_400).ok, false);
    const tooOld = at(now - 301);
    assert.ok(!tooOld.ok && /old/.test(tooOld.reason));
    const future = at(now + 301);
    assert.ok(!future.ok && /future/.test(future.reason));
    // A custom tolerance is honoured.
    const strict = verify(signStandardWebhooks(KEY, 'msg_t', now - 10, body), body, { nowSeconds: now, toleranceSeconds: 5 });
    assert.equal(strict.ok, false);
  });

  test('Standard Webhooks: every kind of malformed header fails (never throws)', () => {
    const ts = nowS();
    const id = 'msg_1';
    const good = b64Sig(KEY, id, ts, body);
    const base = { 'webhook-id': id, 'webhook-timestamp': String(ts), 'webhook-signature': `v1,${good}` };
    const cases: [string, Record<string, string>][] = [
      ['empty signature', { ...base, 'webhook-signature': '' }],
      ['v1, alone', { ...base, 'webhook-signature': 'v1,' }],
      ['v1, short', { ...base, 'webhook-signature': `v1,${good.slice(0, 40)}` }],
      ['v1, long', { ...base, 'webhook-signature': `v1,${good}AAAA` }],
      ['v1, no padding', { ...base, 'webhook-signature': `v1,${good.replace(/=$/, '')}` }],
      ['bad base64 chars', { ...base, 'webhook-signature': `v1,${'!'.repeat(43)}=` }],
      ['base64url alphabet', { ...base, 'webhook-signature': `v1,${'-'.repeat(43)}=` }],
      ['hex instead of base64', { ...base, 'webhook-signature': `v1,${Buffer.from(good, 'base64').toString('hex')}` }],
      ['no version', { ...base, 'webhook-signature': good }],
      ['v1 without comma', { ...base, 'webhook-signature': `v1${good}` }],
      ['huge', { ...base, 'webhook-signature': `v1,${'A'.repeat(200_000)}` }],
      ['many entries', { ...base, 'webhook-signature': `v1,${'A'.repeat(43)}= `.repeat(5_000) }],
      ['missing id', { 'webhook-timestamp': base['webhook-timestamp'], 'webhook-signature': base['webhook-signature'] }],
      ['empty id', { ...base, 'webhook-id': '' }],
      ['id with a dot', { ...base, 'webhook-id': 'msg.1' }],
      ['id with a space', { ...base, 'webhook-id': 'msg 1' }],
      ['id too long', { ...base, 'webhook-id': 'm'.repeat(129) }],
      ['missing timestamp', { 'webhook-id': id, 'webhook-signature': base['webhook-signature'] }],
      ['empty timestamp', { ...base, 'webhook-timestamp': '' }],
      ['non-numeric timestamp', { ...base, 'webhook-timestamp': 'yesterday' }],
      ['hex timestamp', { ...base, 'webhook-timestamp': `0x${ts.toString(16)}` }],
      ['negative timestamp', { ...base, 'webhook-timestamp': `-${ts}` }],
      ['fractional timestamp', { ...base, 'webhook-timestamp': `${ts}.5` }],
      ['exponent timestamp', { ...base, 'webhook-timestamp': '1.7e9' }],
      ['13-digit timestamp (ms)', { ...base, 'webhook-timestamp': String(ts * 1000) }],
      ['20-digit timestamp', { ...base, 'webhook-timestamp': '9'.repeat(20) }],
      ['timestamp with spaces', { ...base, 'webhook-timestamp': ` ${ts} ` }],
    ];
    for (const [name, headers] of cases) {
      let r;
      assert.doesNotThrow(() => (r = verify(headers, body)), name);
      assert.equal(r!.ok, false, name);
    }
    // The id may be up to 128 characters of [A-Za-z0-9_-].
    const longId = 'm'.repeat(128);
    assert.equal(verify(signStandardWebhooks(KEY, longId, ts, body), body).ok, true);
    assert.equal(verify(signStandardWebhooks(KEY, 'Ab-_9', ts, body), body).ok, true);
  });

  test('rotation: every active secret is tried, for both schemes', () => {
    const a = Buffer.from('first-secret-0123456789');
    const b = Buffer.from('second-secret-0123456789');
    const c = Buffer.from('third-secret-0123456789');
    for (const s of [a, b]) {
      assert.equal(verify({ 'x-signature': hexSig(s, body) }, body, { secrets: [a, b] }).ok, true);
      assert.equal(verify(signStandardWebhooks(s, 'msg_r', nowS(), body), body, { secrets: [a, b] }).ok, true);
    }
    assert.equal(verify({ 'x-signature': hexSig(c, body) }, body, { secrets: [a, b] }).ok, false);
    assert.equal(verify(signStandardWebhooks(c, 'msg_r', nowS(), body), body, { secrets: [a, b] }).ok, false);
  });
});

describe('resolveSettings: signing configuration fails closed', () => {
  test('REQUEST_SIGNING_DISABLED=1 is refused with NODE_ENV=production', () => {
    assert.throws(
      () => resolveSettings({ NODE_ENV: 'production', REQUEST_SIGNING_DISABLED: '1', REQUEST_SIGNING_SECRET: SECRET }),
      (e: Error) => e instanceof SettingsError && /REQUEST_SIGNING_DISABLED/.test(e.message) && /production/.test(e.message),
    );
    assert.throws(() => resolveSettings({ NODE_ENV: 'production', REQUEST_SIGNING_DISABLED: '1' }, { requireSecrets: true }), SettingsError);
    // Outside production it is allowed (development only).
    assert.equal(resolveSettings({ REQUEST_SIGNING_DISABLED: '1' }).signingDisabled, true);
    assert.equal(resolveSettings({ NODE_ENV: 'development', REQUEST_SIGNING_DISABLED: '1' }, { requireSecrets: true }).signingDisabled, true);
  });

  test('only 1 or true disables signing; 0, false and unset leave it on; anything else stops start', () => {
    for (const v of ['0', 'false', '']) {
      assert.equal(resolveSettings({ REQUEST_SIGNING_DISABLED: v, REQUEST_SIGNING_SECRET: SECRET }).signingDisabled, false, v);
    }
    for (const v of ['1', 'true']) {
      assert.equal(resolveSettings({ REQUEST_SIGNING_DISABLED: v, REQUEST_SIGNING_SECRET: SECRET }).signingDisabled, true, v);
    }
    for (const v of ['yes', ' 1', '01', 'TRUE']) {
      assert.throws(() => resolveSettings({ REQUEST_SIGNING_DISABLED: v, REQUEST_SIGNING_SECRET: SECRET }), (e: Error) => e instanceof SettingsError && /REQUEST_SIGNING_DISABLED must be 1, 0, true or false/.test(e.message), v);
    }
  });

  test('requireSecrets refuses a missing, empty or blank secret', () => {
    for (const env of [{}, { REQUEST_SIGNING_SECRET: '' }, { REQUEST_SIGNING_SECRET: '   ' }, { REQUEST_SIGNING_SECRET_NEXT: '' }]) {
      assert.throws(
        () => resolveSettings(env, { requireSecrets: true }),
        (e: Error) => e instanceof SettingsError && /REQUEST_SIGNING_SECRET/.test(e.message),
        JSON.stringify(env),
      );
    }
    assert.equal(resolveSettings({ REQUEST_SIGNING_SECRET: SECRET }, { requireSecrets: true }).signingSecrets.length, 1);
    // Only the NEXT secret set is still a configured secret.
    assert.equal(resolveSettings({ REQUEST_SIGNING_SECRET_NEXT: SECRET }, { requireSecrets: true }).signingSecrets.length, 1);
  });

  test('short and invalid secrets are refused', () => {
    assert.throws(() => resolveSettings({ REQUEST_SIGNING_SECRET: 'short' }), SettingsError);
    assert.throws(() => resolveSettings({ REQUEST_SIGNING_SECRET: `${SECRET} short` }), SettingsError);
    assert.throws(() => resolveSettings({ REQUEST_SIGNING_SECRET: 'whsec_not*base64!!' }), SettingsError);
    assert.throws(() => resolveSettings({ REQUEST_SIGNING_SECRET: `whsec_${randomBytes(8).toString('base64')}` }), SettingsError, '< 16 bytes');
  });

  test('rotation: "a b" and REQUEST_SIGNING_SECRET_NEXT both yield several secrets; whsec_ is base64-decoded', () => {
    const a = 'first-secret-0123456789';
    const b = 'second-secret-0123456789';
    assert.deepEqual(resolveSettings({ REQUEST_SIGNING_SECRET: `${a} ${b}` }).signingSecrets, [Buffer.from(a), Buffer.from(b)]);
    assert.deepEqual(resolveSettings({ REQUEST_SIGNING_SECRET: a, REQUEST_SIGNING_SECRET_NEXT: b }).signingSecrets, [Buffer.from(a), Buffer.from(b)]);
    const raw = randomBytes(24);
    assert.deepEqual(resolveSettings({ REQUEST_SIGNING_SECRET: `whsec_${raw.toString('base64')}` }).signingSecrets, [raw]);
  });
});

describe('POST /api/notifications/emit authentication', () => {
  let h: TestHerald;
  before(async () => {
    h = await createTestHerald({ env: { WORKFLOWS_DISABLED: '1' } });
  });
  after(async () => h?.close());

  /** An app on the same database and rules, with its own environment (direct mode). */
  function appWith(env: Record<string, string>, log: Logger = silentLogger) {
    const settings = resolveSettings({ JWT_SECRET, WORKFLOWS_DISABLED: '1', ...env });
    return createApp(createEngine({ settings, db: h.db, rules: h.engine.rules, log }));
  }
  const send = (raw: string | Buffer, headers: Record<string, string>, app = h.app, path = EMIT) =>
    app.request(path, { method: 'POST', body: typeof raw === 'string' ? raw : new Uint8Array(raw), headers: { 'content-type': 'application/json', ...headers } });

  async function assertUnauthorized(res: Response, what: string) {
    assert.equal(res.status, 401, `${what}: expected 401, got ${res.status}`);
    assert.match(res.headers.get('content-type') ?? '', /application\/json/, what);
    assert.deepEqual(await res.json(), { ok: false, error: 'unauthorized' }, what);
  }
  async function assertAccepted(res: Response, what: string) {
    const text = await res.text();
    assert.equal(res.status, 200, `${what}: ${res.status} ${text}`);
    const body = JSON.parse(text) as { ok: boolean; delivered: boolean };
    assert.equal(body.ok, true, what);
    assert.equal(body.delivered, true, what);
  }

  test('x-signature: hex, upper-case hex and sha256= prefix are accepted', async () => {
    for (const form of [(s: string) => s, (s: string) => s.toUpperCase(), (s: string) => `sha256=${s}`]) {
      const raw = uniqueEvent();
      await assertAccepted(await send(raw, { 'x-signature': form(signXSignature(KEY, raw)) }), form('sig'));
    }
  });

  test('a tampered body, a wrong secret and a missing signature are 401 with a bare body', async () => {
    const raw = uniqueEvent();
    const sig = signXSignature(KEY, raw);
    await assertUnauthorized(await send(raw.replace('obra', 'obrb'), { 'x-signature': sig }), 'tampered');
    await assertUnauthorized(await send(`${raw} `, { 'x-signature': sig }), 'trailing space');
    await assertUnauthorized(await send(raw, { 'x-signature': signXSignature(Buffer.from('wrong-secret-0123456789'), raw) }), 'wrong secret');
    await assertUnauthorized(await send(raw, {}), 'missing');
    await assertUnauthorized(await send('', {}), 'missing, empty body');
    const sw = signedHeaders(raw, { scheme: 'standard-webhooks', secret: 'wrong-secret-0123456789' });
    await assertUnauthorized(await send(raw, sw), 'standard webhooks, wrong secret');
  });

  test('malformed signature headers of every kind: always 401 {ok:false,error:"unauthorized"}, never a 500', async () => {
    const raw = uniqueEvent();
    const sig = signXSignature(KEY, raw);
    const ts = nowS();
    const id = `msg_${randomUUID().replace(/-/g, '')}`;
    const sw = { 'webhook-id': id, 'webhook-timestamp': String(ts), 'webhook-signature': `v1,${b64Sig(KEY, id, ts, raw)}` };
    const cases: [string, Record<string, string>][] = [
      ['odd-length hex', { 'x-signature': sig.slice(0, 63) }],
      ['short hex', { 'x-signature': sig.slice(0, 32) }],
      ['long hex', { 'x-signature': `${sig}00` }],
      ['non-hex', { 'x-signature': `zz${sig.slice(2)}` }],
      ['empty x-signature', { 'x-signature': '' }],
      ['blank x-signature', { 'x-signature': '   ' }],
      ['huge x-signature', { 'x-signature': 'a'.repeat(100_000) }],
      ['latin-1 x-signature', { 'x-signature': '\u00ff'.repeat(64) }],
      ['sha256= alone', { 'x-signature': 'sha256=' }],
      ['base64 in x-signature', { 'x-signature': Buffer.from(sig, 'hex').toString('base64') }],
      ['empty webhook-signature', { ...sw, 'webhook-signature': '' }],
      ['v1, alone', { ...sw, 'webhook-signature': 'v1,' }],
      ['v1, wrong length', { ...sw, 'webhook-signature': `v1,${sw['webhook-signature'].slice(3, 30)}` }],
      ['v1, bad base64', { ...sw, 'webhook-signature': `v1,${'*'.repeat(43)}=` }],
      ['v1, huge', { ...sw, 'webhook-signature': `v1,${'A'.repeat(100_000)}` }],
      ['timestamp non-numeric', { ...sw, 'webhook-timestamp': 'now' }],
      ['timestamp 13 digits', { ...sw, 'webhook-timestamp': String(ts * 1000) }],
      ['timestamp 30 digits', { ...sw, 'webhook-timestamp': '1'.repeat(30) }],
      ['timestamp negative', { ...sw, 'webhook-timestamp': '-1' }],
      ['timestamp missing', { 'webhook-id': id, 'webhook-signature': sw['webhook-signature'] }],
      ['webhook-id with a dot', { ...sw, 'webhook-id': 'msg.1' }],
      ['webhook-id too long', { ...sw, 'webhook-id': 'x'.repeat(129) }],
      ['webhook-id huge', { ...sw, 'webhook-id': 'x'.repeat(100_000) }],
      ['webhook-id missing', { 'webhook-timestamp': String(ts), 'webhook-signature': sw['webhook-signature'] }],
      // A valid x-signature does not rescue an invalid Standard Webhooks signature.
      ['bad webhook-signature + good x-signature', { ...sw, 'webhook-signature': 'v1,', 'x-signature': sig }],
    ];
    for (const [name, headers] of cases) await assertUnauthorized(await send(raw, headers), name);
    // The well-formed version of the same request is accepted (so the cases above fail on the header).
    await assertAccepted(await send(raw, sw), 'well-formed standard webhooks');
  });

  test('Standard Webhooks: valid accepted; expired and future timestamps rejected; ±299 s accepted', async () => {
    const sign = (ts: number, raw = uniqueEvent()) => [raw, signedHeaders(raw, { scheme: 'standard-webhooks', timestamp: ts })] as const;
    await assertAccepted(await send(...sign(nowS())), 'now');
    await assertAccepted(await send(...sign(nowS() - 299)), '-299');
    await assertAccepted(await send(...sign(nowS() + 299)), '+299');
    // Margins of one extra second absorb a clock tick between signing and verifying.
    await assertUnauthorized(await send(...sign(nowS() - 301)), 'expired (301 s)');
    await assertUnauthorized(await send(...sign(nowS() - 3600)), 'expired (1 h)');
    await assertUnauthorized(await send(...sign(nowS() + 302)), 'future (302 s)');
    await assertUnauthorized(await send(...sign(nowS() + 3600)), 'future (1 h)');
  });

  test('Standard Webhooks: several signatures where one matches', async () => {
    const raw = uniqueEvent();
    const id = `msg_${randomUUID().replace(/-/g, '')}`;
    const ts = nowS();
    const wrong = `v1,${b64Sig(Buffer.from('old-secret-0123456789'), id, ts, raw)}`;
    const good = `v1,${b64Sig(KEY, id, ts, raw)}`;
    await assertAccepted(
      await send(raw, { 'webhook-id': id, 'webhook-timestamp': String(ts), 'webhook-signature': `${wrong} ${good}` }),
      'wrong then good',
    );
    const raw2 = uniqueEvent();
    const id2 = `msg_${randomUUID().replace(/-/g, '')}`;
    await assertUnauthorized(
      await send(raw2, { 'webhook-id': id2, 'webhook-timestamp': String(ts), 'webhook-signature': `${wrong} ${wrong}` }),
      'no match',
    );
  });

  test('rotation via REQUEST_SIGNING_SECRET="a b": both accepted, a third rejected', async () => {
    const a = 'rotation-secret-a-0123456789';
    const b = 'rotation-secret-b-0123456789';
    const app = appWith({ REQUEST_SIGNING_SECRET: `${a} ${b}` });
    for (const s of [a, b]) {
      const raw = uniqueEvent();
      await assertAccepted(await send(raw, { 'x-signature': signXSignature(Buffer.from(s), raw) }, app), `x-signature ${s}`);
      const raw2 = uniqueEvent();
      await assertAccepted(await send(raw2, signedHeaders(raw2, { scheme: 'standard-webhooks', secret: s }), app), `sw ${s}`);
    }
    const raw = uniqueEvent();
    await assertUnauthorized(await send(raw, { 'x-signature': signXSignature(KEY, raw) }, app), 'third secret');
    await assertUnauthorized(await send(raw, signedHeaders(raw, { scheme: 'standard-webhooks' }), app), 'third secret, sw');
  });

  test('rotation via REQUEST_SIGNING_SECRET_NEXT: current and next accepted, a third rejected', async () => {
    const a = 'current-secret-0123456789';
    const b = 'next-secret-0123456789';
    const app = appWith({ REQUEST_SIGNING_SECRET: a, REQUEST_SIGNING_SECRET_NEXT: b });
    for (const s of [a, b]) {
      const raw = uniqueEvent();
      await assertAccepted(await send(raw, { 'x-signature': signXSignature(Buffer.from(s), raw) }, app), s);
    }
    const raw = uniqueEvent();
    await assertUnauthorized(await send(raw, { 'x-signature': signXSignature(Buffer.from('third-secret-0123456789'), raw) }, app), 'third');
  });

  test('whsec_ secrets are used as their base64-decoded bytes', async () => {
    const bytes = randomBytes(32);
    const app = appWith({ REQUEST_SIGNING_SECRET: `whsec_${bytes.toString('base64')}` });
    const raw = uniqueEvent();
    await assertAccepted(await send(raw, signStandardWebhooks(bytes, `msg_${randomUUID().slice(0, 8)}`, nowS(), raw), app), 'sw');
    const raw2 = uniqueEvent();
    await assertAccepted(await send(raw2, { 'x-signature': signXSignature(bytes, raw2) }, app), 'x-signature');
    // The literal string is not the key.
    const raw3 = uniqueEvent();
    const literal = Buffer.from(`whsec_${bytes.toString('base64')}`);
    await assertUnauthorized(await send(raw3, { 'x-signature': signXSignature(literal, raw3) }, app), 'literal string as key');
  });

  test('REQUEST_SIGNING_DISABLED=1 accepts unsigned requests, and warns on each one', async () => {
    const { log, lines } = capturingLogger();
    const app = appWith({ REQUEST_SIGNING_DISABLED: '1' }, log);
    for (let i = 0; i < 2; i++) await assertAccepted(await send(uniqueEvent(), {}, app), `unsigned #${i}`);
    const warnings = lines.filter((l) => /REQUEST_SIGNING_DISABLED/.test(l));
    assert.equal(warnings.length, 2, 'one warning per unsigned request');
    // Off values do not disable signing.
    for (const v of ['0', 'false']) {
      await assertUnauthorized(await send(uniqueEvent(), {}, appWith({ REQUEST_SIGNING_DISABLED: v, REQUEST_SIGNING_SECRET: SECRET })), v);
    }
  });

  test('the 401 reason goes to the log only', async () => {
    const { log, lines } = capturingLogger();
    const app = appWith({ REQUEST_SIGNING_SECRET: SECRET }, log);
    const raw = uniqueEvent();
    const res = await send(raw, { 'x-signature': 'nothex' }, app);
    await assertUnauthorized(res, 'malformed');
    const logged = lines.map((l) => JSON.parse(l) as { reason?: string; msg: string });
    assert.ok(logged.some((l) => typeof l.reason === 'string' && /x-signature/.test(l.reason)), lines.join('\n'));
    assert.ok(!lines.join('\n').includes('nothex'), 'the presented signature itself is not logged');
  });

  test('dry-run and the directory API require a signature too', async () => {
    const raw = uniqueEvent();
    await assertUnauthorized(await send(raw, {}, h.app, '/api/notifications/dry-run'), 'dry-run unsigned');
    await assertUnauthorized(await send(raw, { 'x-signature': '00'.repeat(32) }, h.app, '/api/notifications/dry-run'), 'dry-run bad');
    const user = JSON.stringify({ tenantId: randomUUID() });
    const res = await h.app.request(`/api/users/${randomUUID()}`, { method: 'PUT', body: user, headers: { 'x-signature': 'ff'.repeat(32) } });
    await assertUnauthorized(res, 'users bad');
  });

  test('a replayed x-signature request is deduplicated: same response, Idempotent-Replayed, no new rows', async () => {
    const { tenantId, users } = await seedTenant(h);
    const raw = JSON.stringify(obraCompleted(tenantId, users.actor!));
    const headers = signedHeaders(raw);
    const count = async () =>
      (
        await h.db.query<{ n: number; e: number }>(
          `SELECT (SELECT count(*) FROM notifications)::int AS n, (SELECT count(*) FROM herald_events)::int AS e`,
        )
      ).rows[0]!;
    const before = await count();
    const first = await send(raw, headers);
    const firstText = await first.text();
    assert.equal(first.status, 200, firstText);
    assert.equal(first.headers.get('idempotent-replayed'), null);
    const body = JSON.parse(firstText) as { inserted: number; eventId: string };
    assert.equal(body.inserted, 2);
    const mid = await count();
    assert.deepEqual(mid, { n: before.n + 2, e: before.e + 1 });

    for (let i = 0; i < 3; i++) {
      const again = await send(raw, headers);
      assert.equal(again.status, 200);
      assert.equal(again.headers.get('idempotent-replayed'), 'true');
      assert.equal(await again.text(), firstText, 'the first response, byte for byte');
    }
    // The sha256= form of the same signature is the same request.
    const prefixed = await send(raw, { 'x-signature': `sha256=${headers['x-signature']}` });
    assert.equal(prefixed.headers.get('idempotent-replayed'), 'true');
    assert.equal(await prefixed.text(), firstText);
    assert.deepEqual(await count(), mid, 'no new notifications or events');
  });
});
