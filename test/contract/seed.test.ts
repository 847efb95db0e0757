/**
 * The seed's contract (seeds/004): path, request and response fields, status codes, environment
 * variable names and the notifications table's columns. These are binding; nothing here may drift.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { ENV, resolveSettings } from '../../src/config/settings.ts';
import { createEngine } from '../../src/engine.ts';
import { createApp, type HeraldApp } from '../../src/http/app.ts';
import { silentLogger } from '../../src/log.ts';
import { obraCompleted, seedTenant } from '../helpers/fixtures.ts';
import { createTestHerald, JWT_SECRET, SECRET, signedHeaders, type TestHerald } from '../helpers/herald.ts';

const EMIT = '/api/notifications/emit';

let h: TestHerald;
before(async () => {
  h = await createTestHerald({ env: { WORKFLOWS_DISABLED: '1', HERALD_MAX_BODY_BYTES: '2048' } });
});
after(async () => h?.close());

/** An app on the same database and rules with its own environment. */
function appWith(env: Record<string, string>): HeraldApp {
  const settings = resolveSettings({ REQUEST_SIGNING_SECRET: SECRET, JWT_SECRET, ...env });
  return createApp(createEngine({ settings, db: h.db, rules: h.engine.rules, log: silentLogger }));
}
const emitTo = (app: HeraldApp, body: unknown) => {
  const raw = typeof body === 'string' ? body : JSON.stringify(body);
  return app.request(EMIT, { method: 'POST', body: raw, headers: signedHeaders(raw) });
};

describe('emit: path and responses in both modes', () => {
  test('direct mode: {ok:true, delivered:true, inserted:N} and N rows are in notifications', async () => {
    const { tenantId, users } = await seedTenant(h, ['actor', 'a', 'b', 'c']);
    const res = await h.post(EMIT, obraCompleted(tenantId, users.actor!));
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    const body = (await res.json()) as Record<string, unknown>;
    assert.equal(body.ok, true);
    assert.equal(body.delivered, true);
    assert.equal(body.inserted, 3);
    assert.equal(typeof body.inserted, 'number');
    assert.equal('workflow' in body, false);
    const { rows } = await h.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM notifications WHERE tenant_id = $1`, [tenantId]);
    assert.equal(rows[0]!.n, body.inserted);
  });

  test('direct mode: inserted is 0 when the rule selects nobody', async () => {
    const res = await h.post(EMIT, obraCompleted(randomUUID(), randomUUID()));
    assert.equal(res.status, 200);
    const body = (await res.json()) as Record<string, unknown>;
    assert.deepEqual([body.ok, body.delivered, body.inserted], [true, true, 0]);
  });

  test('workflow mode: {ok:true, workflow:"queued"} and the event is queued, not yet delivered', async () => {
    const app = appWith({});
    const { tenantId, users } = await seedTenant(h);
    const res = await emitTo(app, obraCompleted(tenantId, users.actor!));
    assert.equal(res.status, 200);
    const body = (await res.json()) as Record<string, unknown>;
    assert.equal(body.ok, true);
    assert.equal(body.workflow, 'queued');
    assert.equal('delivered' in body, false);
    assert.equal('inserted' in body, false);
    const { rows } = await h.db.query<{ n: number; j: number }>(
      `SELECT (SELECT count(*) FROM notifications WHERE tenant_id = $1)::int AS n,
              (SELECT count(*) FROM herald_jobs WHERE payload->'eventIds' ? $2)::int AS j`,
      [tenantId, body.eventId],
    );
    assert.deepEqual(rows[0], { n: 0, j: 1 }, 'the event and its job are committed, nothing delivered yet');
  });

  test('the seed\'s example request (obra.completed with tenantId, actorId, obra{id,name,percentage}) produces its notification', async () => {
    const { tenantId, users } = await seedTenant(h, ['actor', 'b']);
    const raw = JSON.stringify({
      type: 'obra.completed',
      ctx: { tenantId, actorId: users.actor, obra: { id: 'obra-uuid-1', name: 'Escuela N° 42', percentage: 100 } },
    });
    const res = await h.app.request(EMIT, {
      method: 'POST',
      body: raw,
      headers: { 'Content-Type': 'application/json', 'x-signature': signedHeaders(raw)['x-signature']! },
    });
    assert.equal(res.status, 200);
    const { rows } = await h.db.query<Record<string, unknown>>(
      `SELECT user_id, tenant_id, title, body, type, action_url, data, read_at, created_at FROM notifications WHERE user_id = $1`,
      [users.b],
    );
    assert.equal(rows.length, 1);
    const n = rows[0]!;
    assert.equal(n.tenant_id, tenantId);
    assert.equal(n.title, 'Obra completada: Escuela N° 42');
    assert.equal(typeof n.body, 'string');
    assert.equal(n.type, 'success');
    assert.equal(n.action_url, '/obras/obra-uuid-1');
    assert.deepEqual(n.data, { obraId: 'obra-uuid-1', percentage: 100 });
    assert.equal(n.read_at, null, 'unread');
    assert.ok(n.created_at instanceof Date);
  });

  test('the seed\'s event types are registered: obra.completed, flujo.action.triggered, pendiente.due', async () => {
    const tenantId = randomUUID();
    const user = randomUUID();
    const events = [
      obraCompleted(tenantId, randomUUID()),
      { type: 'flujo.action.triggered', ctx: { tenantId, flujo: { id: 'f', name: 'Compras' }, action: { name: 'Aprobar' }, recipientIds: [user] } },
      { type: 'pendiente.due', ctx: { tenantId, assigneeId: user, pendiente: { id: 'p', title: 'Firmar', dueAt: '2024-05-01T00:00:00Z' } } },
    ];
    for (const e of events) {
      const res = await h.post(EMIT, e);
      assert.equal(res.status, 200, `${e.type}: ${await res.clone().text()}`);
    }
  });
});

describe('emit: status codes', () => {
  async function expect400(body: string, pattern: RegExp, field?: string) {
    const res = await h.app.request(EMIT, { method: 'POST', body, headers: signedHeaders(body) });
    const text = await res.text();
    assert.equal(res.status, 400, `${body.slice(0, 80)} -> ${res.status} ${text}`);
    const err = JSON.parse(text) as { ok: boolean; error: string; field?: string };
    assert.equal(err.ok, false);
    assert.match(err.error, pattern, body);
    if (field !== undefined) assert.equal(err.field, field, body);
  }

  test('400 when type is missing, empty, null or not a string', async () => {
    await expect400('{}', /type/, 'type');
    await expect400(JSON.stringify({ ctx: {} }), /type is required/, 'type');
    await expect400(JSON.stringify({ type: '', ctx: {} }), /type/, 'type');
    await expect400(JSON.stringify({ type: null }), /type/, 'type');
    await expect400(JSON.stringify({ type: 42 }), /type must be a string/, 'type');
  });

  test('400 when the body is malformed (not JSON, empty, not an object)', async () => {
    await expect400('{', /not valid JSON/);
    await expect400('{"type": "obra.completed",', /not valid JSON/);
    await expect400("{'type': 'obra.completed'}", /not valid JSON/);
    await expect400('', /empty/);
    await expect400('[]', /JSON object/);
    await expect400('"obra.completed"', /JSON object/);
    await expect400('null', /JSON object/);
  });

  test('400 for text Postgres cannot store (U+0000, a lone surrogate), naming where it is', async () => {
    // Written as JSON escapes, the only way such text can arrive; before this check, the store
    // failed and the client got a 500.
    const ctx = (inner: string) => `{"type":"obra.completed","ctx":{"tenantId":"${randomUUID()}","obra":{"id":"o","percentage":100,"name":${inner}}}}`;
    await expect400(ctx('"a\\u0000b"'), /NUL character/, 'ctx.obra.name');
    await expect400(ctx('"\\ud800"'), /unpaired UTF-16 surrogate/, 'ctx.obra.name');
    await expect400(ctx('["ok", "\\udfff x"]'), /unpaired/, 'ctx.obra.name[1]');
    await expect400('{"type":"obra.completed","ctx":{"k\\u0000":1}}', /NUL/, 'a key in ctx');
    // A well-formed pair and an escaped backslash are ordinary text.
    const fine = ctx('"\\ud83d\\ude00 \\\\u0000"');
    const res = await h.app.request(EMIT, { method: 'POST', body: fine, headers: signedHeaders(fine) });
    assert.equal(res.status, 200, await res.text());
  });

  test('400 for a body nested deeper than 32 levels; brackets inside strings do not count', async () => {
    const nest = (n: number) => '{"a":'.repeat(n) + '1' + '}'.repeat(n);
    await expect400(`{"type":"obra.completed","ctx":${nest(40)}}`, /nests deeper than 32 levels/);
    // 40 brackets, but in a string: not nesting (the rule's schema is what rejects this ctx).
    const res = await h.app.request(EMIT, { method: 'POST', body: `{"type":"obra.completed","ctx":{"x":"${'{['.repeat(20)}"}}`, headers: signedHeaders(`{"type":"obra.completed","ctx":{"x":"${'{['.repeat(20)}"}}`) });
    assert.equal(res.status, 400);
    assert.doesNotMatch(await res.text(), /nests deeper/);
  });

  test('400 for an unknown event type, naming it', async () => {
    await expect400(JSON.stringify({ type: 'obra.deleted', ctx: {} }), /unknown event type "obra\.deleted"/, 'type');
  });

  test('400 when ctx fails the rule\'s schema, with a message that names the field', async () => {
    const tenantId = randomUUID();
    const obra = { id: 'o', name: 'Escuela', percentage: 100 };
    await expect400(JSON.stringify({ type: 'obra.completed', ctx: { obra } }), /^ctx\.tenantId\b/, 'ctx.tenantId');
    await expect400(JSON.stringify({ type: 'obra.completed', ctx: { tenantId: 'tenant-uuid-...', obra } }), /ctx\.tenantId/, 'ctx.tenantId');
    await expect400(JSON.stringify({ type: 'obra.completed', ctx: { tenantId, obra: { ...obra, percentage: 150 } } }), /ctx\.obra\.percentage/, 'ctx.obra.percentage');
    await expect400(JSON.stringify({ type: 'obra.completed', ctx: { tenantId, obra: { ...obra, name: 7 } } }), /ctx\.obra\.name/, 'ctx.obra.name');
    await expect400(JSON.stringify({ type: 'obra.completed', ctx: { tenantId, actorId: 'me', obra } }), /ctx\.actorId/, 'ctx.actorId');
    await expect400(JSON.stringify({ type: 'obra.completed' }), /^ctx\./);
    await expect400(JSON.stringify({ type: 'obra.completed', ctx: 'x' }), /ctx must be an object/, 'ctx');
    await expect400(JSON.stringify({ type: 'obra.completed', ctx: [1] }), /ctx must be an object/, 'ctx');
    await expect400(
      JSON.stringify({ type: 'flujo.action.triggered', ctx: { tenantId, flujo: { id: 'f', name: 'F' }, action: { name: 'A' }, recipientIds: [] } }),
      /ctx\.recipientIds/,
      'ctx.recipientIds',
    );
    await expect400(
      JSON.stringify({ type: 'flujo.action.triggered', ctx: { tenantId, flujo: { id: 'f', name: 'F' }, action: { name: 'A' }, recipientIds: [randomUUID(), 'x'] } }),
      /ctx\.recipientIds\.1/,
      'ctx.recipientIds.1',
    );
  });

  test('400s store nothing', async () => {
    const count = async () => (await h.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM herald_events`)).rows[0]!.n;
    const before = await count();
    await h.post(EMIT, { type: 'obra.completed', ctx: {} });
    await h.post(EMIT, '{');
    assert.equal(await count(), before);
  });

  test('401 when the signature is missing or invalid', async () => {
    const raw = JSON.stringify(obraCompleted(randomUUID(), randomUUID()));
    const variants: Record<string, string>[] = [{ 'content-type': 'application/json' }, { 'content-type': 'application/json', 'x-signature': 'deadbeef' }];
    for (const headers of variants) {
      const res = await h.app.request(EMIT, { method: 'POST', body: raw, headers });
      assert.equal(res.status, 401);
      assert.deepEqual(await res.json(), { ok: false, error: 'unauthorized' });
    }
  });

  test('413 when the body exceeds HERALD_MAX_BODY_BYTES (signed or not, with or without Content-Length)', async () => {
    assert.equal(h.engine.settings.maxBodyBytes, 2048);
    const tenantId = randomUUID();
    const big = JSON.stringify(obraCompleted(tenantId, randomUUID(), 'x'.repeat(3000)));
    const variants: Record<string, string>[] = [
      signedHeaders(big),
      { ...signedHeaders(big), 'content-length': String(Buffer.byteLength(big)) },
      { 'content-type': 'application/json' },
    ];
    for (const headers of variants) {
      const res = await h.app.request(EMIT, { method: 'POST', body: big, headers });
      assert.equal(res.status, 413, JSON.stringify(Object.keys(headers)));
      const err = (await res.json()) as { ok: boolean; error: string };
      assert.equal(err.ok, false);
      assert.equal(typeof err.error, 'string');
    }
    // A stream without a length is cut off at the limit too.
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < 4; i++) c.enqueue(new Uint8Array(1024).fill(0x20));
        c.close();
      },
    });
    const streamed = await h.app.request(EMIT, { method: 'POST', body: stream, headers: { 'content-type': 'application/json', 'x-signature': '00'.repeat(32) }, duplex: 'half' } as RequestInit);
    assert.equal(streamed.status, 413);
    // Just under the limit is not a 413.
    const name = 'y'.repeat(2048 - JSON.stringify(obraCompleted(tenantId, randomUUID(), '')).length);
    const fits = JSON.stringify(obraCompleted(tenantId, randomUUID(), name));
    assert.equal(Buffer.byteLength(fits), 2048);
    const ok = await h.app.request(EMIT, { method: 'POST', body: fits, headers: signedHeaders(fits) });
    assert.equal(ok.status, 200, await ok.clone().text());
  });
});

describe('environment variables', () => {
  test('the seed\'s names are the ones read', () => {
    assert.equal(ENV.signingSecret, 'REQUEST_SIGNING_SECRET');
    assert.equal(ENV.signingDisabled, 'REQUEST_SIGNING_DISABLED');
    assert.equal(ENV.workflowsDisabled, 'WORKFLOWS_DISABLED');
    assert.equal(ENV.workflowsEnabled, 'WORKFLOWS_ENABLED');
    assert.deepEqual(resolveSettings({ REQUEST_SIGNING_SECRET: SECRET }).signingSecrets, [Buffer.from(SECRET)]);
    assert.equal(resolveSettings({ REQUEST_SIGNING_DISABLED: '1' }).signingDisabled, true);
  });

  test('workflow mode when WORKFLOWS_DISABLED is not 1, or WORKFLOWS_ENABLED=1', () => {
    // `true` is another spelling of 1, `false` of 0; any other value is refused at start
    // (test/config/settings.test.ts), so none is read as "not 1" by mistake.
    const cases: [Record<string, string>, boolean][] = [
      [{}, true],
      [{ WORKFLOWS_DISABLED: '1' }, false],
      [{ WORKFLOWS_DISABLED: '0' }, true],
      [{ WORKFLOWS_DISABLED: 'true' }, false],
      [{ WORKFLOWS_DISABLED: 'false' }, true],
      [{ WORKFLOWS_DISABLED: '' }, true],
      [{ WORKFLOWS_ENABLED: '1' }, true],
      [{ WORKFLOWS_ENABLED: '0' }, true],
      [{ WORKFLOWS_DISABLED: '1', WORKFLOWS_ENABLED: '1' }, true],
      [{ WORKFLOWS_DISABLED: '1', WORKFLOWS_ENABLED: '0' }, false],
      [{ WORKFLOWS_DISABLED: '1', WORKFLOWS_ENABLED: 'true' }, true],
      [{ WORKFLOWS_DISABLED: '1', WORKFLOWS_ENABLED: 'false' }, false],
    ];
    for (const [env, workflow] of cases) {
      assert.equal(resolveSettings({ REQUEST_SIGNING_SECRET: SECRET, ...env }).workflowMode, workflow, JSON.stringify(env));
    }
  });

  test('over HTTP: WORKFLOWS_DISABLED=1 with WORKFLOWS_ENABLED=1 queues; WORKFLOWS_DISABLED=1 alone delivers', async () => {
    const both = (await (await emitTo(appWith({ WORKFLOWS_DISABLED: '1', WORKFLOWS_ENABLED: '1' }), obraCompleted(randomUUID(), randomUUID()))).json()) as Record<string, unknown>;
    assert.equal(both.workflow, 'queued');
    const direct = (await (await emitTo(appWith({ WORKFLOWS_DISABLED: '1' }), obraCompleted(randomUUID(), randomUUID()))).json()) as Record<string, unknown>;
    assert.equal(direct.delivered, true);
  });
});

describe('the notifications table', () => {
  test('has exactly the seed\'s columns, types and nullability', async () => {
    const { rows } = await h.db.query<{ column_name: string; data_type: string; is_nullable: string }>(
      `SELECT column_name, data_type, is_nullable FROM information_schema.columns
       WHERE table_schema = current_schema() AND table_name = 'notifications'`,
    );
    const cols = new Map(rows.map((r) => [r.column_name, r]));
    const seed: [string, string, boolean][] = [
      ['id', 'uuid', false],
      ['user_id', 'uuid', false],
      ['tenant_id', 'uuid', true],
      ['title', 'text', false],
      ['body', 'text', true],
      ['type', 'text', false],
      ['action_url', 'text', true],
      ['data', 'jsonb', false],
      ['read_at', 'timestamp with time zone', true],
      ['created_at', 'timestamp with time zone', false],
    ];
    for (const [name, type, nullable] of seed) {
      const c = cols.get(name);
      assert.ok(c, `column ${name} exists`);
      assert.equal(c.data_type, type, `${name} type`);
      assert.equal(c.is_nullable, nullable ? 'YES' : 'NO', `${name} nullability`);
    }
  });

  test('id is the primary key; data defaults to {} and created_at to now()', async () => {
    const { rows: pk } = await h.db.query<{ column_name: string }>(
      `SELECT kcu.column_name FROM information_schema.table_constraints tc
       JOIN information_schema.key_column_usage kcu ON kcu.constraint_name = tc.constraint_name AND kcu.table_schema = tc.table_schema
       WHERE tc.table_schema = current_schema() AND tc.table_name = 'notifications' AND tc.constraint_type = 'PRIMARY KEY'`,
    );
    assert.deepEqual(pk.map((r) => r.column_name), ['id']);
    const { rows } = await h.db.query<{ column_name: string; column_default: string | null }>(
      `SELECT column_name, column_default FROM information_schema.columns
       WHERE table_schema = current_schema() AND table_name = 'notifications' AND column_name IN ('data', 'created_at')`,
    );
    const d = new Map(rows.map((r) => [r.column_name, r.column_default ?? '']));
    assert.match(d.get('data')!, /'\{\}'::jsonb/);
    assert.match(d.get('created_at')!, /now\(\)|CURRENT_TIMESTAMP/i);
  });

  test('row level security is enabled and forced', async () => {
    const { rows } = await h.db.query<{ relrowsecurity: boolean; relforcerowsecurity: boolean }>(
      `SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'notifications'::regclass`,
    );
    assert.deepEqual(rows[0], { relrowsecurity: true, relforcerowsecurity: true });
  });
});
