import assert from 'node:assert/strict';
import { createHmac, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { insertDlq } from '../../src/storage/queries/dlq.ts';
import { insertHttpRun, newMessageId } from '../../src/storage/queries/http-workflows.ts';
import { obraCompleted, seedTenant } from '../helpers/fixtures.ts';
import { createTestHerald, signedHeaders, type TestHerald } from '../helpers/herald.ts';

/**
 * Issue 24, item 11: no 5xx from bad input, anywhere. Every route of the app (read from
 * `app.routes`, so a new route is fuzzed without touching this file) gets malformed path
 * parameters, query parameters (the names the routes read, scanned from src/http), headers and
 * bodies, sent with the credential that gets it past authentication, so the input reaches the
 * handler. Any 5xx fails the test, with the request that caused it. Seeded and bounded:
 * HERALD_FUZZ_SEED and HERALD_FUZZ_PER_ROUTE change the run; the failure message repeats them.
 */
const SEED = Number(process.env.HERALD_FUZZ_SEED ?? 24);
const PER_ROUTE = Number(process.env.HERALD_FUZZ_PER_ROUTE ?? 16);

const ADMIN_TOKEN = 'fuzz-admin-token-0123456789';
const QSTASH_TOKEN = 'fuzz-qstash-token-0123456789';
const WHATSAPP_APP_SECRET = 'fuzz-whatsapp-app-secret-0123';
const WHATSAPP_VERIFY_TOKEN = 'fuzz-whatsapp-verify-token';

/** mulberry32: a small, fast, seedable PRNG (the run must be reproducible from its seed). */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return { next, int, pick: <T>(xs: readonly T[]): T => xs[int(xs.length)]!, chance: (p: number) => next() < p };
}
type Rng = ReturnType<typeof prng>;

// ---------------------------------------------------------------------------------------------
// What the routes read, scanned from the sources: a parameter added to a route is fuzzed too.

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [readFileSync(p, 'utf8')] : [];
  });
}
const httpFiles = sources('src/http');
const httpSources = httpFiles.join('\n');
const queryNamesIn = (text: string) => [...new Set([...text.matchAll(/\.quer(?:y|ies)\(\s*'([^']+)'/g)].map((m) => m[1]!))].sort();
const QUERY_NAMES = queryNamesIn(httpSources);
/** The parameters of the file that declares the route (its helpers live beside it), else all. */
function queryNamesOf(path: string): string[] {
  const file = httpFiles.find((text) => text.includes(`'${path}'`));
  return file ? queryNamesIn(file) : [];
}
/** Credentials are not fuzzed (a wrong one is a 401 before any handler runs). */
const AUTH_HEADERS = new Set(['authorization', 'x-signature', 'x-signature-timestamp', 'webhook-id', 'webhook-timestamp', 'webhook-signature', 'x-hub-signature-256', 'content-length', 'transfer-encoding']);
const HEADER_NAMES = [
  ...new Set([
    ...[...httpSources.matchAll(/\.header\(\s*'([^']+)'/g)].map((m) => m[1]!.toLowerCase()),
    ...[...sources('src/workflow/http').join('\n').matchAll(/'(upstash-[a-z-]*[a-z])'/g)].map((m) => m[1]!),
  ]),
].filter((n) => !AUTH_HEADERS.has(n)).sort();

// ---------------------------------------------------------------------------------------------
// Malformed values

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
const TEXT: string[] = [
  '', ' ', '\u0000', 'a\u0000b', 'x'.repeat(5000), '-1', '0', '-0', '1.5', '1e3', '0x10', 'NaN', 'Infinity', '-Infinity',
  '99999999999999999999', '9007199254740993', '-99999999999999999999', '1e309', 'null', 'undefined', 'true', '[]', '{}',
  '💥', '\u202eevil', '\ufeffbom', 'e\u0301', 'ﬀ', '\u00a0', '\u2028', '../../etc/passwd', '..', '.', '%', '"\'', '<script>x</script>',
  "'; DROP TABLE herald_runs; --", 'not-a-uuid', '00000000-0000-0000-0000-000000000000', 'ZZZZZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZZZZZZZZZ',
  '2020', '12/31', '+275760-09-13T00:00:00.000Z', '-000001-01-01T00:00:00Z', '2024-02-30T00:00:00Z', '294277-01-01',
  b64(['1', randomUUID()]), b64(['2020', 'x']), b64(['12/31', randomUUID()]), b64(['+275760-09-13T00:00:00.000Z', 'x']),
  b64(['2024-05-01T10:00:00.123456Z', randomUUID()]), b64(['2024-05-01T10:00:00Z', 'a\u0000b']), b64({ a: 1 }), b64([]), '!!',
  'wfr_x', 'dlq_x', 'msg_x', 'https://example.com/wf', 'http://[::1]/', 'javascript:alert(1)', 'email', 'whatsapp', '*', 'category:x',
];
/** Sent as is: percent sequences that do not decode, or decode to something odd. */
const RAW_ENCODED = ['%00', 'a%00b', '%ED%A0%80', '%C0%80', '%FF', '%', '%zz', '%2F', '%2e%2e', '%E2%80%AE', '%F0%9F%92%A5', '%0d%0a'];
const HEADER_VALUES = ['', ' ', '-1', '0', '1', '99999999999999999999', 'NaN', '1.5', 'x'.repeat(4000), 'caf\u00e9', '../x', 'wfr_x', 'a b', '*', 'null', '{"a":1}', 'https://example.com/x', '10s', '-5m', '1e9'];

/**
 * The kinds of value that broke herald before (issue 24), one list per kind: a NUL, numbers past
 * any range, cursors and dates JavaScript accepts and Postgres does not, overlong text.
 */
const DANGEROUS: string[][] = [
  ['a%00b', '%00', '%ED%A0%80'],
  ['99999999999999999999', '-1', '9007199254740993', '1e309'],
  [['1', randomUUID()], ['2020', 'x'], ['12/31', randomUUID()], ['+275760-09-13T00:00:00.000Z', randomUUID()], ['2024-01-01T00:00:00Z', 'a\u0000b']].map(b64),
  ['x'.repeat(3000), encodeURIComponent('💥'.repeat(700))],
];
/** One of each kind, tried on every parameter of a route in the systematic pass. */
const SYSTEMATIC = ['a%00b', '99999999999999999999', b64(['1', randomUUID()]), b64(['12/31', randomUUID()]), 'x'.repeat(3000)];
/** Values that pass a parameter's own check, so that another one's is reached. */
const PLAUSIBLE: Record<string, string> = { channel: 'email', limit: '5', count: '5' };

function encodedValue(rng: Rng, pool: string[]): string {
  const r = rng.next();
  return r < 0.3 ? rng.pick(rng.pick(DANGEROUS)) : r < 0.45 ? rng.pick(RAW_ENCODED) : encodeURIComponent(rng.pick(pool));
}

function badValue(rng: Rng, ids: string[], depth = 0): unknown {
  switch (rng.int(depth > 2 ? 5 : 8)) {
    case 0: return rng.pick(TEXT);
    case 1: return rng.pick([0, -1, 1.5, -0, 1e308, -1e308, 2 ** 53 + 1, 2 ** 31, -(2 ** 31) - 1, 99999999999999999999, 1e-320]);
    case 2: return rng.pick([true, false, null]);
    case 3: return rng.pick(ids);
    case 4: return rng.pick(['\u0000', 'a\u0000b', '\ud800', 'x\udfffy', 'x'.repeat(100_000).slice(0, rng.pick([201, 321, 4001, 65_537]))]);
    case 5: return Array.from({ length: rng.int(4) }, () => badValue(rng, ids, depth + 1));
    case 6: return Object.fromEntries(Array.from({ length: 1 + rng.int(4) }, () => [rng.pick(FIELDS), badValue(rng, ids, depth + 1)]));
    default: return rng.pick(ids);
  }
}

/** Field names herald's bodies use; a random object of them reaches past "must be an object". */
const FIELDS = [
  'type', 'ctx', 'tenantId', 'actorId', 'obra', 'email', 'phone', 'locale', 'timezone', 'name', 'preferences', 'channel', 'scope',
  'enabled', 'quietHours', 'starts', 'ends', 'url', 'eventTypes', 'description', 'secret', 'disabled', 'ids', 'all', 'destination',
  'headers', 'body', 'timeout', 'timeoutUrl', 'timeoutBody', 'timeoutHeaders', 'url', 'eventId', 'flujo', 'action', 'id', 'recipients',
];

/** Valid bodies of the routes, one field of which is then broken: reaches the deeper checks. */
const templates = (tenantId: string, userId: string): unknown[] => [
  obraCompleted(tenantId, userId),
  { type: 'flujo.action.triggered', ctx: { tenantId, flujo: { id: 'f1', name: 'F' }, action: { id: 'a1', name: 'A' }, recipients: [userId] } },
  { tenantId, name: 'Ana', locale: 'es', timezone: 'UTC', email: 'a@example.com', phone: '+5491155551234' },
  { preferences: [{ channel: 'email', scope: '*', enabled: false }], quietHours: { starts: '22:00', ends: '07:00', timezone: 'UTC' } },
  { url: 'https://example.com/hook', tenantId, eventTypes: ['obra.completed'], description: 'd' },
  { disabled: true },
  { ids: [randomUUID()] },
  { all: true },
  [{ destination: 'https://example.com/wf', headers: { 'Upstash-Workflow-Init': 'true' }, body: '{}' }],
  { url: 'https://example.com/wf', timeout: 60, timeoutUrl: 'https://example.com/wf', timeoutBody: '', timeoutHeaders: {}, step: { stepId: 1 } },
];

function breakOne(rng: Rng, v: unknown, ids: string[]): unknown {
  if (Array.isArray(v)) return v.length && rng.chance(0.7) ? v.map((x, i) => (i === 0 ? breakOne(rng, x, ids) : x)) : badValue(rng, ids);
  if (v === null || typeof v !== 'object') return badValue(rng, ids);
  const keys = Object.keys(v);
  const out: Record<string, unknown> = { ...(v as Record<string, unknown>) };
  if (rng.chance(0.15)) out[rng.pick(FIELDS)] = badValue(rng, ids);
  else {
    const k = rng.pick(keys);
    out[k] = rng.chance(0.5) ? breakOne(rng, out[k], ids) : badValue(rng, ids);
  }
  return out;
}

function badBody(rng: Rng, ids: string[], bases: unknown[]): string {
  switch (rng.int(6)) {
    case 0:
      return rng.pick(['', 'not json', '{', '{"a":1', '[]', 'null', '"s"', '123', '{"a":1}{"b":2}', '\u0000', '{"type":"\\u0000"}',
        '{"type":"\\ud800"}', '{"a":1e999}', '{"__proto__":{"x":1}}', '[' .repeat(5000) + ']'.repeat(5000), '{"a":'.repeat(100) + '1' + '}'.repeat(100)]);
    case 1:
      return JSON.stringify(badValue(rng, ids));
    case 2:
      return Buffer.from(Array.from({ length: 1 + rng.int(64) }, () => rng.int(256))).toString('latin1');
    default:
      return JSON.stringify(breakOne(rng, rng.pick(bases), ids));
  }
}

// ---------------------------------------------------------------------------------------------
// Credentials

type Auth = 'none' | 'user' | 'admin' | 'qstash' | 'signed' | 'whatsapp' | 'whatsapp-verify';
const AUTHS: Auth[] = ['none', 'user', 'admin', 'qstash', 'signed', 'whatsapp', 'whatsapp-verify'];
const BODYLESS = new Set(['GET', 'HEAD']);

interface Req {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string | undefined;
}

let h: TestHerald;
let userToken = '';
let ids: string[] = [];
let bases: unknown[] = [];

/**
 * Sends `req` with credential `auth`. Signed requests are signed by the test helpers (`h.post`,
 * `signedHeaders`), so they follow the signature scheme wherever it goes.
 */
async function send(req: Req, auth: Auth): Promise<Response> {
  const headers: Record<string, string> = { ...req.headers };
  let path = req.path;
  switch (auth) {
    case 'user': headers.authorization = `Bearer ${userToken}`; break;
    case 'admin': headers.authorization = `Bearer ${ADMIN_TOKEN}`; break;
    case 'qstash': headers.authorization = `Bearer ${QSTASH_TOKEN}`; break;
    case 'whatsapp': headers['x-hub-signature-256'] = `sha256=${createHmac('sha256', WHATSAPP_APP_SECRET).update(req.body ?? '').digest('hex')}`; break;
    case 'whatsapp-verify':
      path += `${path.includes('?') ? '&' : '?'}hub.mode=subscribe&hub.verify_token=${WHATSAPP_VERIFY_TOKEN}`;
      break;
    case 'signed':
      if (req.body !== undefined) return h.post(path, req.body, { method: req.method, headers });
      Object.assign(headers, signedHeaders('', { method: req.method, path }));
      break;
  }
  return h.app.request(path, { method: req.method, headers, body: req.body });
}

// ---------------------------------------------------------------------------------------------

const routes = () => {
  const seen = new Set<string>();
  return h.app.routes
    .filter((r) => r.method !== 'ALL')
    .filter((r) => !seen.has(`${r.method} ${r.path}`) && seen.add(`${r.method} ${r.path}`))
    .map((r) => ({ method: r.method, path: r.path }));
};

/** The route's path with its parameters filled: a constrained one (`:a{x|y}`) with one of its values. */
function fillPath(rng: Rng, path: string, value: () => string): string {
  return path
    .replace(/:\w+\{([^}]+)\}/g, (_m, alts: string) => (/^[\w|-]+$/.test(alts) ? rng.pick(alts.split('|')) : value()))
    .replace(/:\w+/g, value)
    .replace(/\*/g, () => (rng.chance(0.5) ? `https://example.com/${value()}` : value()));
}

before(async () => {
  h = await createTestHerald({
    env: {
      ADMIN_TOKEN,
      QSTASH_TOKEN,
      WHATSAPP_APP_SECRET,
      WHATSAPP_VERIFY_TOKEN,
      HERALD_UNSUBSCRIBE_SECRET: 'fuzz-unsubscribe-secret-0123456789',
      QSTASH_CURRENT_SIGNING_KEY: 'sig_fuzz_current_0123456789',
      QSTASH_NEXT_SIGNING_KEY: 'sig_fuzz_next_0123456789',
    },
  });
  // Real rows, so that some fuzzed ids find something and the handlers go past "not found".
  const { tenantId, users } = await seedTenant(h);
  const userId = users.actor!;
  userToken = await h.token(userId);
  await h.post('/api/notifications/emit', obraCompleted(tenantId, userId));
  const runId = `wfr_${randomUUID()}`;
  const messageId = newMessageId();
  const dlqId = await h.db.transaction(async (tx) => {
    await insertHttpRun(tx, { id: runId, url: 'https://example.com/wf', body: Buffer.from('{}'), contentType: 'application/json', config: { retries: 0 } as never, messageId, runAtMs: null });
    return insertDlq(tx, { runId, messageId, url: 'https://example.com/wf', status: 500, headers: {}, body: Buffer.from('no'), error: 'failed', failureCallback: 'https://example.com/failed' });
  });
  const endpoint = await h.app.request('/api/webhook-endpoints', { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, body: JSON.stringify({ url: 'https://example.com/hook' }) });
  const endpointId = ((await endpoint.json()) as { endpoint: { id: string } }).endpoint.id;
  ids = [...Object.values(users), tenantId, runId, dlqId, messageId, endpointId, randomUUID(), 'flujo.reminder', 'flujo.f1.resolved'];
  bases = templates(tenantId, userId);
});
after(() => h?.close());

test(`fuzz: no route answers 5xx to malformed input (seed ${SEED}, ${PER_ROUTE} requests per route)`, async () => {
  const failures: string[] = [];
  const started = performance.now();
  const all = routes();
  assert.ok(all.length > 40, `the app's routes were enumerated (${all.length})`);
  const idValue = (rng: Rng) => () => (rng.chance(0.3) ? encodeURIComponent(rng.pick(ids)) : encodedValue(rng, TEXT));
  let sent = 0;

  const verbose = process.env.HERALD_FUZZ_VERBOSE === '1';
  for (const [index, route] of all.entries()) {
    const routeStarted = performance.now();
    const statuses: Record<number, number> = {};
    // One stream per route: a route added or removed does not change the others' inputs.
    const rng = prng(SEED * 1000 + index);
    const bodied = !BODYLESS.has(route.method);

    // Which credential gets this route past authentication, judged on a plausible request.
    const plain: Req = { method: route.method, path: fillPath(rng, route.path, () => encodeURIComponent(ids[0]!)), headers: {}, body: bodied ? '{}' : undefined };
    let auth: Auth | undefined;
    for (const a of AUTHS) {
      const res = await send(plain, a);
      sent++;
      if (res.status >= 500) failures.push(`${route.method} ${plain.path} [${a}] -> ${res.status} ${await res.text()}`);
      if (res.status !== 401 && res.status !== 403) {
        auth = a;
        break;
      }
    }
    if (!auth) {
      failures.push(`${route.method} ${route.path}: no credential the fuzz knows reaches its handler (add it to AUTHS)`);
      continue;
    }

    // First a systematic pass: each parameter the route's file reads gets each SYSTEMATIC value
    // (the others plausible), each path parameter a NUL; then PER_ROUTE random combinations.
    const names = queryNamesOf(route.path);
    const paramCount = (route.path.match(/:\w+|\*/g) ?? []).length;
    const plausible = () => encodeURIComponent(rng.pick(ids));
    const others = (name: string) => names.filter((n) => n !== name && PLAUSIBLE[n]).map((n) => `&${n}=${PLAUSIBLE[n]}`).join('');
    const systematic: Req[] = [
      ...names.flatMap((name) => SYSTEMATIC.map((v) => ({ ...plain, path: `${plain.path}?${name}=${v}${others(name)}` }))),
      ...Array.from({ length: paramCount }, (_, at) => {
        let n = 0;
        return { ...plain, path: fillPath(rng, route.path, () => (n++ === at ? 'a%00b' : plausible())) };
      }),
    ];
    const requests = [...systematic, ...Array.from({ length: PER_ROUTE }, (): Req => {
      const pool = names.length && rng.chance(0.8) ? names : QUERY_NAMES;
      const query = Array.from({ length: rng.int(4) }, () => `${rng.pick(pool)}=${encodedValue(rng, TEXT)}`);
      const headers: Record<string, string> = {};
      if (rng.chance(0.3)) headers[rng.pick(HEADER_NAMES)] = rng.pick(HEADER_VALUES);
      if (rng.chance(0.1)) headers['content-type'] = rng.pick(['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/json; charset=utf-16']);
      return {
        method: route.method,
        path: fillPath(rng, route.path, idValue(rng)) + (query.length ? `?${query.join('&')}` : ''),
        headers,
        body: bodied ? (rng.chance(0.1) ? '' : badBody(rng, ids, bases)) : undefined,
      };
    })];
    for (const req of requests) {
      let res: Response;
      try {
        res = await send(req, auth);
      } catch (err) {
        failures.push(`${req.method} ${req.path} [${auth}] threw ${(err as Error).message}`);
        continue;
      }
      sent++;
      if (res.status >= 500) {
        failures.push(`${req.method} ${req.path} [${auth}] headers=${JSON.stringify(req.headers).slice(0, 200)} body=${JSON.stringify(req.body?.slice(0, 200))} -> ${res.status} ${(await res.text()).slice(0, 200)}`);
      } else await res.arrayBuffer();
      statuses[res.status] = (statuses[res.status] ?? 0) + 1;
    }
    if (verbose) console.log(`${route.method} ${route.path} [${auth}] ${(performance.now() - routeStarted).toFixed(0)} ms ${JSON.stringify(statuses)}`);
  }
  if (verbose) console.log(`${sent} requests in ${(performance.now() - started).toFixed(0)} ms`);
  assert.ok(sent > all.length * PER_ROUTE, `the fuzz sent its requests (${sent})`);
  assert.deepEqual(failures, [], `5xx answers (HERALD_FUZZ_SEED=${SEED}):\n${failures.join('\n')}`);
});
