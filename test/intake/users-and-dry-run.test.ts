import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { obraCompleted, seedTenant } from '../helpers/fixtures.ts';
import { createTestHerald, signedHeaders, type TestHerald } from '../helpers/herald.ts';

let h: TestHerald;
before(async () => {
  h = await createTestHerald({ env: { WORKFLOWS_DISABLED: '1' } });
});
after(async () => h?.close());

/** GET and DELETE carry no body: x-signature signs "<timestamp>\n<METHOD> <path>\n" (an empty body). */
const bodyless = (method: string, path: string) => h.app.request(path, { method, headers: signedHeaders('', { method, path }) });

describe('recipient directory API', () => {
  test('PUT creates (201) then updates (200); GET reads it back; DELETE removes it', async () => {
    const id = randomUUID();
    const tenantId = randomUUID();
    const created = await h.post(`/api/users/${id}`, { tenantId, email: 'a@example.com', phone: '+5491155551234', locale: 'es-AR', timezone: 'America/Argentina/Buenos_Aires', name: 'Ana' }, { method: 'PUT' });
    assert.equal(created.status, 201);
    const updated = await h.post(`/api/users/${id}`, { tenantId, name: 'Ana María' }, { method: 'PUT' });
    assert.equal(updated.status, 200);
    const got = await bodyless('GET', `/api/users/${id}`);
    assert.equal(got.status, 200);
    const { user } = (await got.json()) as { user: Record<string, unknown> };
    assert.equal(user.name, 'Ana María');
    assert.equal(user.email, null, 'a PUT replaces the entry: omitted fields are cleared');
    assert.equal(user.tenantId, tenantId);
    assert.equal((await bodyless('DELETE', `/api/users/${id}`)).status, 200);
    assert.equal((await bodyless('GET', `/api/users/${id}`)).status, 404);
    assert.equal((await bodyless('DELETE', `/api/users/${id}`)).status, 404);
  });

  test('validation errors name the field', async () => {
    const id = randomUUID();
    const cases: [unknown, string][] = [
      [{}, 'tenantId'],
      [{ tenantId: 'x' }, 'tenantId'],
      [{ tenantId: randomUUID(), email: 'not-an-email' }, 'email'],
      [{ tenantId: randomUUID(), timezone: 'Mars/Olympus' }, 'timezone'],
      [{ tenantId: randomUUID(), locale: 'español!' }, 'locale'],
      [{ tenantId: randomUUID(), phone: 'call me' }, 'phone'],
    ];
    for (const [body, field] of cases) {
      const res = await h.post(`/api/users/${id}`, body, { method: 'PUT' });
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(((await res.json()) as { field: string }).field, field);
    }
    const badId = await h.post(`/api/users/not-a-uuid`, { tenantId: randomUUID() }, { method: 'PUT' });
    assert.equal(badId.status, 400);
  });

  test('the directory API requires a signature, and a GET signature cannot be replayed on another path', async () => {
    const id = randomUUID();
    const unsigned = await h.app.request(`/api/users/${id}`, { method: 'PUT', body: JSON.stringify({ tenantId: randomUUID() }), headers: signedHeaders('', { scheme: 'none' }) });
    assert.equal(unsigned.status, 401);
    const captured = signedHeaders('', { method: 'GET', path: `/api/users/${id}` });
    const replayed = await h.app.request(`/api/users/${randomUUID()}`, { method: 'DELETE', headers: captured });
    assert.equal(replayed.status, 401);
  });
});

describe('dry run', () => {
  test('shows every effect and why each recipient was included or skipped, and stores nothing', async () => {
    const { tenantId, users } = await seedTenant(h);
    const before = await h.db.query<{ n: number }>(`SELECT (SELECT count(*) FROM notifications)::int + (SELECT count(*) FROM herald_events)::int AS n`);
    const res = await h.post('/api/notifications/dry-run', obraCompleted(tenantId, users.actor!));
    assert.equal(res.status, 200);
    const plan = (await res.json()) as {
      dryRun: boolean;
      recipients: { userId: string; included: boolean; reason: string }[];
      inApp: { userId: string; title: string }[];
    };
    assert.equal(plan.dryRun, true);
    const byUser = new Map(plan.recipients.map((r) => [r.userId, r]));
    assert.equal(byUser.get(users.actor!)?.included, false);
    assert.match(byUser.get(users.actor!)!.reason, /excluded/);
    assert.equal(byUser.get(users.b!)?.included, true);
    assert.match(byUser.get(users.b!)!.reason, /member of tenant/);
    assert.deepEqual(plan.inApp.map((n) => n.userId).sort(), [users.b, users.c].sort());
    const afterCount = await h.db.query<{ n: number }>(`SELECT (SELECT count(*) FROM notifications)::int + (SELECT count(*) FROM herald_events)::int AS n`);
    assert.equal(afterCount.rows[0]!.n, before.rows[0]!.n);
  });

  test('explains skipped ids: invalid, duplicate, not in the directory; renders per-locale text', async () => {
    const { tenantId, users } = await seedTenant(h, ['actor', 'es']);
    const en = randomUUID();
    await h.post(`/api/users/${en}`, { tenantId, locale: 'en' }, { method: 'PUT' });
    const outsider = randomUUID();
    const res = await h.post('/api/notifications/dry-run', {
      type: 'flujo.action.triggered',
      ctx: { tenantId, actorId: users.actor, flujo: { id: 'f1', name: 'Compras' }, action: { name: 'Aprobar' }, recipientIds: [users.es, users.es, en, outsider, users.actor] },
    });
    assert.equal(res.status, 200);
    const plan = (await res.json()) as { recipients: { userId: string; included: boolean; reason: string }[]; inApp: { userId: string; title: string }[] };
    const reasons = plan.recipients.map((r) => `${r.userId === users.es ? 'es' : r.userId === en ? 'en' : r.userId === outsider ? 'outsider' : 'actor'}:${r.included}:${r.reason}`);
    assert.ok(reasons.some((r) => /^es:false:duplicate/.test(r)), reasons.join('\n'));
    assert.ok(reasons.some((r) => /^outsider:true:.*not in the directory/.test(r)), reasons.join('\n'));
    assert.ok(reasons.some((r) => /^actor:false:excluded/.test(r)), reasons.join('\n'));
    const titles = new Map(plan.inApp.map((n) => [n.userId, n.title]));
    assert.equal(titles.get(users.es!), 'Aprobar en Compras');
    assert.equal(titles.get(en), 'Aprobar in Compras');
  });
});
