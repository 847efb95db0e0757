import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { defineConfig, rule, workflow, z } from '../../src/index.ts';
import { createWorkflowHerald, type WorkflowHerald } from '../helpers/workflow.ts';

/**
 * Idempotency of emits whose type starts workflows: the event, its runs and its key's answer
 * commit in one statement of the event writer's group commit, which also claims the key
 * (intake/emit.ts, emitGrouped; storage/queries/events.ts).
 */
const config = defineConfig({
  events: {
    'order.placed': rule({
      schema: z.object({ orderId: z.string(), userId: z.string().uuid() }),
      recipients: (ctx, to) => to.users([ctx.userId]),
      inApp: { title: 'Order {{ ctx.orderId }} placed' },
    }),
  },
  workflows: {
    // Parks at once: the test counts runs, it does not need them to finish.
    'order.follow-up': workflow<{ orderId: string }>({
      on: 'order.placed',
      async run(_input, step) {
        await step.sleep('later', '1h');
      },
    }),
  },
});

describe('idempotency of emits that start workflows', () => {
  let h: WorkflowHerald;
  before(async () => {
    h = await createWorkflowHerald(config);
  });
  after(() => h?.close());

  const emit = (body: unknown, key: string) => h.post('/api/notifications/emit', body, { headers: { 'idempotency-key': key } });
  const counts = async (orderId: string) =>
    (
      await h.db.query<{ events: number; runs: number }>(
        `SELECT (SELECT count(*) FROM herald_events WHERE ctx->>'orderId' = $1)::int AS events,
                (SELECT count(*) FROM herald_runs WHERE input->>'orderId' = $1)::int AS runs`,
        [orderId],
      )
    ).rows[0]!;

  test('a retry replays the first answer, with its run, and starts no second run', async () => {
    const key = `k-${randomUUID()}`;
    const body = { type: 'order.placed', ctx: { orderId: 'o-replay', userId: randomUUID() } };
    const first = await emit(body, key);
    assert.equal(first.status, 200);
    const text = await first.text();
    const answer = JSON.parse(text) as { workflowRuns: string[] };
    assert.equal(answer.workflowRuns.length, 1);
    const again = await emit(body, key);
    assert.equal(again.status, 200);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.equal(await again.text(), text);
    assert.deepEqual(await counts('o-replay'), { events: 1, runs: 1 });
  });

  test('the same request sent 6 times at once starts one run: one answer, five replays of it, no 409', async () => {
    const key = `k-${randomUUID()}`;
    const body = { type: 'order.placed', ctx: { orderId: 'o-burst', userId: randomUUID() } };
    const results = await Promise.all(
      Array.from({ length: 6 }, async () => {
        const res = await emit(body, key);
        return { status: res.status, replayed: res.headers.get('idempotent-replayed'), text: await res.text() };
      }),
    );
    assert.deepEqual(results.map((r) => r.status), [200, 200, 200, 200, 200, 200], JSON.stringify(results));
    const fresh = results.filter((r) => r.replayed === null);
    assert.equal(fresh.length, 1);
    for (const r of results) assert.equal(r.text, fresh[0]!.text);
    assert.deepEqual(await counts('o-burst'), { events: 1, runs: 1 });
  });

  test('a request that fails after claiming its key leaves no key behind: the retry starts the run (once)', async () => {
    const key = `k-${randomUUID()}`;
    const body = { type: 'order.placed', ctx: { orderId: 'o-boom', userId: randomUUID() } };
    // Fails the run's insert, i.e. after the key was claimed and the event stored, in the same transaction.
    await h.db.exec(`
      CREATE FUNCTION test_fail_boom() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.input->>'orderId' = 'o-boom' THEN RAISE EXCEPTION 'no runs for o-boom today'; END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER test_fail_boom BEFORE INSERT ON herald_runs FOR EACH ROW EXECUTE FUNCTION test_fail_boom();`);
    try {
      const failed = await emit(body, key);
      assert.equal(failed.status, 500);
      assert.deepEqual(await counts('o-boom'), { events: 0, runs: 0 }, 'the failed request rolled back');
      const { rows } = await h.db.query(`SELECT 1 FROM herald_idempotency_keys WHERE key = $1`, [`key:${key}`]);
      assert.equal(rows.length, 0, 'no key left behind');
    } finally {
      await h.db.exec(`DROP TRIGGER test_fail_boom ON herald_runs; DROP FUNCTION test_fail_boom();`);
    }
    const retry = await emit(body, key);
    assert.equal(retry.status, 200);
    assert.equal(retry.headers.get('idempotent-replayed'), null);
    assert.deepEqual(await counts('o-boom'), { events: 1, runs: 1 });
  });
});
