import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { defineConfig, z } from '../../src/index.ts';
import { createTestHerald, type TestHerald } from '../helpers/herald.ts';

/**
 * Direct mode under concurrency: emits that arrive together are delivered together (one
 * transaction per flush, see intake/direct-writer.ts), yet each request gets its own answer, its
 * own rows and its own error.
 */
const config = defineConfig({
  events: {
    'item.ready': {
      schema: z.object({ userIds: z.array(z.string().uuid()), n: z.number().int(), explode: z.boolean().optional() }),
      recipients: (ctx: { userIds: string[]; n: number; explode?: boolean }, to) => {
        if (ctx.explode) throw new Error(`recipients of item ${ctx.n} exploded`);
        return to.users(ctx.userIds);
      },
      inApp: { title: 'Item {{ ctx.n }} is ready', type: 'info' },
    },
  },
});

describe('direct mode, concurrent emits', () => {
  let h: TestHerald;
  before(async () => {
    h = await createTestHerald({ config, env: { WORKFLOWS_DISABLED: '1' } });
  });
  after(() => h?.close());

  const emit = (ctx: Record<string, unknown>, headers: Record<string, string> = {}) =>
    h.post('/api/notifications/emit', { type: 'item.ready', ctx }, { headers });
  const rowsOf = async (eventId: string) =>
    (await h.db.query<{ user_id: string; title: string }>(`SELECT user_id, title FROM notifications WHERE event_id = $1`, [eventId])).rows;

  test('each of 60 concurrent emits is answered with its own event and its own rows, committed', async () => {
    const users = Array.from({ length: 3 }, () => randomUUID());
    // Emit i is for the first 1 + i % 3 users, so the inserted counts differ between neighbours.
    const answers = await Promise.all(
      Array.from({ length: 60 }, async (_, i) => {
        const res = await emit({ userIds: users.slice(0, 1 + (i % 3)), n: i });
        assert.equal(res.status, 200);
        return { i, body: (await res.json()) as { ok: boolean; delivered: boolean; inserted: number; eventId: string } };
      }),
    );
    assert.equal(new Set(answers.map((a) => a.body.eventId)).size, 60, 'one event per request');
    for (const { i, body } of answers) {
      assert.deepEqual({ ok: body.ok, delivered: body.delivered, inserted: body.inserted }, { ok: true, delivered: true, inserted: 1 + (i % 3) });
      const rows = await rowsOf(body.eventId);
      assert.equal(rows.length, 1 + (i % 3));
      assert.ok(rows.every((r) => r.title === `Item ${i} is ready`));
    }
    const { rows } = await h.db.query<{ n: number; processed: number }>(
      `SELECT count(*)::int AS n, count(processed_at)::int AS processed FROM herald_events WHERE id = ANY($1::uuid[]) AND mode = 'direct'`,
      [answers.map((a) => a.body.eventId)],
    );
    assert.deepEqual(rows[0], { n: 60, processed: 60 });
    // Rows written by one transaction share its xmin: the 60 events were delivered in fewer.
    const tx = await h.db.query<{ n: number }>(`SELECT count(DISTINCT xmin::text)::int AS n FROM herald_events WHERE id = ANY($1::uuid[])`, [
      answers.map((a) => a.body.eventId),
    ]);
    assert.ok(tx.rows[0]!.n < 60, `60 events in ${tx.rows[0]!.n} transactions`);
  });

  test('one event that fails among concurrent ones fails alone, with its error; its neighbours are delivered', async () => {
    const user = randomUUID();
    const results = await Promise.all(
      Array.from({ length: 30 }, async (_, i) => {
        const res = await emit({ userIds: [user], n: 1000 + i, explode: i === 17 });
        return { i, status: res.status, body: (await res.json()) as { inserted?: number; eventId?: string; error?: string } };
      }),
    );
    for (const r of results.filter((r) => r.i !== 17)) {
      assert.equal(r.status, 200, `emit ${r.i}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.inserted, 1);
      assert.equal((await rowsOf(r.body.eventId!)).length, 1);
    }
    const bad = results.find((r) => r.i === 17)!;
    assert.ok(bad.status >= 400, `the exploding emit answered ${bad.status}`);
    const { rows } = await h.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM herald_events WHERE (ctx->>'n')::int = 1017`,
    );
    assert.equal(rows[0]!.n, 0, 'the failed event was not stored: it was not acknowledged');
    const all = await h.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM notifications WHERE user_id = $1`, [user]);
    assert.equal(all.rows[0]!.n, 29);
  });

  test('an idempotency key in a concurrent flush is kept with its answer: the retry replays it', async () => {
    const user = randomUUID();
    const key = `k-${randomUUID()}`;
    const [keyed] = await Promise.all([
      emit({ userIds: [user], n: 2000 }, { 'idempotency-key': key }),
      ...Array.from({ length: 10 }, (_, i) => emit({ userIds: [user], n: 2001 + i })),
    ]);
    assert.equal(keyed!.status, 200);
    const first = (await keyed!.json()) as { eventId: string; inserted: number };
    const again = await emit({ userIds: [user], n: 2000 }, { 'idempotency-key': key });
    assert.equal(again.status, 200);
    assert.deepEqual(await again.json(), first, 'the stored answer, not a second delivery');
    assert.equal((await rowsOf(first.eventId)).length, 1);
    const { rows } = await h.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM herald_events WHERE (ctx->>'n')::int = 2000`);
    assert.equal(rows[0]!.n, 1);
  });
});
