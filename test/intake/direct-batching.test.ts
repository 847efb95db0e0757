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
  test('keys are claimed inside the shared flush: while 40 keyed emits are in flight, no other session sees one pending', async () => {
    // Every x-signature request has a key (the hash of its body). Each was claimed in a transaction
    // (and a WAL flush) of its own before the flush, visible as 'pending' until the flush
    // committed; now the claim rides in the flush's transaction and commits already answered.
    const user = randomUUID();
    let settled = false;
    const emits = Promise.all(Array.from({ length: 40 }, (_, i) => emit({ userIds: [user], n: 3000 + i }))).finally(() => {
      settled = true;
    });
    let polls = 0;
    let pendingSeen = 0;
    while (!settled) {
      const { rows } = await h.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM herald_idempotency_keys WHERE state = 'pending'`);
      pendingSeen = Math.max(pendingSeen, rows[0]!.n);
      polls++;
      // Embedded PGlite answers within microtasks: let the writer's scheduled flush run.
      await new Promise((resolve) => setImmediate(resolve));
    }
    const answers = await emits;
    assert.ok(answers.every((r) => r.status === 200));
    assert.ok(polls > 0);
    assert.equal(pendingSeen, 0, `a pending key was visible during ${polls} polls`);
    const { rows } = await h.db.query<{ n: number; done: number }>(
      `SELECT count(*)::int AS n, count(*) FILTER (WHERE state = 'done' AND (response->>'inserted')::int = 1)::int AS done
       FROM herald_idempotency_keys WHERE response->>'eventId' IN (SELECT id::text FROM herald_events WHERE (ctx->>'n')::int BETWEEN 3000 AND 3039)`,
    );
    assert.deepEqual(rows[0], { n: 40, done: 40 }, 'each key stored done, with its own answer');
  });

  test('the same request sent 6 times at once is delivered once: one answer, five replays of it, no 409', async () => {
    const user = randomUUID();
    const results = await Promise.all(
      Array.from({ length: 6 }, async () => {
        const res = await emit({ userIds: [user], n: 4000 }, { 'idempotency-key': 'same-request' });
        return { status: res.status, replayed: res.headers.get('idempotent-replayed'), text: await res.text() };
      }),
    );
    assert.deepEqual(results.map((r) => r.status), [200, 200, 200, 200, 200, 200], JSON.stringify(results));
    const fresh = results.filter((r) => r.replayed === null);
    assert.equal(fresh.length, 1, 'one request delivered');
    for (const r of results) assert.equal(r.text, fresh[0]!.text, 'the others replay its answer byte for byte');
    const { rows } = await h.db.query<{ e: number; n: number }>(
      `SELECT (SELECT count(*) FROM herald_events WHERE (ctx->>'n')::int = 4000)::int AS e,
              (SELECT count(*) FROM notifications WHERE user_id = $1)::int AS n`,
      [user],
    );
    assert.deepEqual(rows[0], { e: 1, n: 1 });
  });
});
