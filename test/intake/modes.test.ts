import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createTestHerald, eventually, type TestHerald } from '../helpers/herald.ts';
import { obraCompleted, seedTenant } from '../helpers/fixtures.ts';

type Row = { user_id: string; tenant_id: string | null; title: string; body: string | null; type: string; action_url: string | null; data: unknown };

async function inboxRows(h: TestHerald, eventId: string): Promise<Row[]> {
  const { rows } = await h.db.query<Row>(
    `SELECT user_id, tenant_id, title, body, type, action_url, data FROM notifications WHERE event_id = $1 ORDER BY user_id`,
    [eventId],
  );
  return rows;
}

describe('direct and workflow mode produce the same notifications', () => {
  let direct: TestHerald;
  let workflow: TestHerald;
  before(async () => {
    direct = await createTestHerald({ env: { WORKFLOWS_DISABLED: '1' } });
    workflow = await createTestHerald();
  });
  after(async () => {
    await direct?.close();
    await workflow?.close();
  });

  test('direct mode answers {ok, delivered, inserted} with the rows already committed', async () => {
    const { tenantId, users } = await seedTenant(direct);
    const res = await direct.post('/api/notifications/emit', obraCompleted(tenantId, users.actor!));
    assert.equal(res.status, 200);
    const body = (await res.json()) as { ok: boolean; delivered: boolean; inserted: number; eventId: string };
    assert.equal(body.ok, true);
    assert.equal(body.delivered, true);
    assert.equal(body.inserted, 2, 'everyone in the tenant but the actor');
    const rows = await inboxRows(direct, body.eventId);
    assert.deepEqual(rows.map((r) => r.user_id).sort(), [users.b, users.c].sort());
    assert.equal(rows[0]!.title, 'Obra completada: Escuela N° 42');
    assert.equal(rows[0]!.tenant_id, tenantId);
  });

  test('workflow mode answers {ok, workflow:"queued"} and a worker inserts the same rows', async () => {
    const d = await seedTenant(direct);
    const w = await seedTenant(workflow);
    // Same users and tenant in both databases, so the rendered rows must be identical.
    for (const [name, id] of Object.entries(d.users)) {
      await workflow.post(`/api/users/${id}`, { tenantId: d.tenantId, name, locale: 'es' }, { method: 'PUT' });
    }
    void w;
    const evt = obraCompleted(d.tenantId, d.users.actor!);
    const dr = (await (await direct.post('/api/notifications/emit', evt)).json()) as { eventId: string };

    const res = await workflow.post('/api/notifications/emit', evt);
    assert.equal(res.status, 200);
    const body = (await res.json()) as { ok: boolean; workflow: string; eventId: string };
    assert.deepEqual({ ok: body.ok, workflow: body.workflow }, { ok: true, workflow: 'queued' });
    assert.equal((await inboxRows(workflow, body.eventId)).length, 0, 'nothing is expanded before a worker runs');

    const worker = workflow.engine.createWorker();
    await worker.start();
    try {
      const rows = await eventually(async () => {
        const r = await inboxRows(workflow, body.eventId);
        return r.length === 2 ? r : undefined;
      });
      assert.deepEqual(rows, await inboxRows(direct, dr.eventId));
    } finally {
      await worker.stop();
    }
  });
});
