import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { defineConfig, rule, workflow, z } from '../../src/index.ts';
import { eventually, createTestHerald, type TestHerald } from '../helpers/herald.ts';

/**
 * Emits whose type starts workflows ride in the event writer's group commit (intake/emit.ts,
 * storage/queries/events.ts): the event, its runs, their first execution jobs and the key's
 * answer in one statement with the concurrent emits, where each such emit used to take a
 * transaction of its own (~1,000/s at 16 callers on a 2-core box, ~8,000/s grouped).
 */
const config = defineConfig({
  events: {
    'order.placed': rule({
      schema: z.object({ orderId: z.string(), userId: z.string().uuid(), tenantId: z.string().uuid() }),
      recipients: (ctx, to) => to.users([ctx.userId]),
      inApp: { title: 'Order {{ ctx.orderId }} placed' },
    }),
    'order.viewed': rule({
      schema: z.object({ orderId: z.string(), userId: z.string().uuid() }),
      recipients: (ctx, to) => to.users([ctx.userId]),
      inApp: { title: 'Order {{ ctx.orderId }} viewed' },
    }),
  },
  workflows: {
    'order.follow-up': workflow<{ orderId: string }>({
      on: 'order.placed',
      async run(input, step) {
        return step.run('note', async () => `followed up ${input.orderId}`);
      },
    }),
    'order.audit': workflow<{ orderId: string }>({
      on: 'order.placed',
      retries: 5,
      async run(input) {
        return `audited ${input.orderId}`;
      },
    }),
  },
});

describe('emits that start workflows', () => {
  let h: TestHerald;
  before(async () => {
    // No worker yet: the first test looks at the rows as the emits left them.
    h = await createTestHerald({ config });
  });
  after(() => h?.close());

  test('concurrent emits are stored in a few transactions, each event with its runs, their jobs and its answer', async () => {
    const tenantId = randomUUID().toUpperCase();
    const placed = Array.from({ length: 30 }, (_, i) => ({
      type: 'order.placed',
      ctx: { orderId: `p-${i}`, userId: randomUUID(), tenantId },
    }));
    const viewed = Array.from({ length: 10 }, (_, i) => ({ type: 'order.viewed', ctx: { orderId: `v-${i}`, userId: randomUUID() } }));
    // Interleaved, so flushes mix events that start runs with events that start none.
    const bodies = placed.flatMap((p, i) => (i < viewed.length ? [p, viewed[i]!] : [p]));
    const answers = await Promise.all(
      bodies.map(async (body) => {
        const res = await h.post('/api/notifications/emit', body);
        assert.equal(res.status, 200, await res.clone().text());
        return { body, answer: (await res.json()) as { eventId: string; workflowRuns?: string[] } };
      }),
    );

    for (const { body, answer } of answers) {
      if (body.type === 'order.viewed') assert.equal(answer.workflowRuns, undefined);
      else assert.equal(answer.workflowRuns?.length, 2, JSON.stringify(answer));
    }
    const runIds = answers.flatMap((a) => a.answer.workflowRuns ?? []);
    const eventIds = answers.map((a) => a.answer.eventId);
    const { rows: runs } = await h.db.query<{
      id: string;
      workflow: string;
      state: string;
      input: { orderId: string };
      event_id: string;
      tenant_id: string;
      max_attempts: number;
      job_key: string | null;
      job_attempts: number | null;
    }>(
      `SELECT r.id, r.workflow, r.state, r.input, r.event_id, r.tenant_id, r.max_attempts,
              j.key AS job_key, j.max_attempts AS job_attempts
       FROM herald_runs r LEFT JOIN herald_jobs j ON j.payload->>'runId' = r.id
       WHERE r.id = ANY($1::text[])`,
      [runIds],
    );
    assert.equal(runs.length, 60, 'every run the answers name exists');
    const byEvent = new Map(answers.map((a) => [a.answer.eventId, a]));
    for (const run of runs) {
      const emitted = byEvent.get(run.event_id);
      assert.ok(emitted, `run ${run.id} has an emitted event`);
      assert.ok(emitted.answer.workflowRuns?.includes(run.id), `run ${run.id} belongs to the event whose answer names it`);
      assert.deepEqual(run.input, emitted.body.ctx, 'the run input is the event ctx');
      assert.equal(run.tenant_id, tenantId.toLowerCase());
      assert.equal(run.state, 'running');
      assert.equal(run.max_attempts, run.workflow === 'order.audit' ? 6 : 4);
      assert.equal(run.job_key, `run:${run.id}`, 'each run has its first execution queued');
      assert.equal(run.job_attempts, run.max_attempts);
    }
    const workflows = runs.map((r) => r.workflow);
    assert.equal(workflows.filter((w) => w === 'order.follow-up').length, 30);
    assert.equal(workflows.filter((w) => w === 'order.audit').length, 30);

    // Rows written by one transaction share its xmin: the 40 emits (and their 60 runs) took a few.
    const { rows } = await h.db.query<{ events: number; runs: number }>(
      `SELECT (SELECT count(DISTINCT xmin::text) FROM herald_events WHERE id = ANY($1::uuid[]))::int AS events,
              (SELECT count(DISTINCT xmin::text) FROM herald_runs WHERE id = ANY($2::text[]))::int AS runs`,
      [eventIds, runIds],
    );
    assert.ok(rows[0]!.events <= 4, `40 concurrent emits were stored in ${rows[0]!.events} transactions`);
    assert.ok(rows[0]!.runs <= rows[0]!.events, `their runs in ${rows[0]!.runs}`);

    // The worker then runs both kinds of job: every run completes and every event is expanded.
    const worker = h.engine.createWorker();
    await worker.start();
    try {
      await eventually(async () => {
        const { rows: left } = await h.db.query<{ running: number; unexpanded: number }>(
          `SELECT (SELECT count(*) FROM herald_runs WHERE id = ANY($1::text[]) AND state <> 'completed')::int AS running,
                  (SELECT count(*) FROM herald_events WHERE id = ANY($2::uuid[]) AND processed_at IS NULL)::int AS unexpanded`,
          [runIds, eventIds],
        );
        return left[0]!.running === 0 && left[0]!.unexpanded === 0;
      }, 15_000);
    } finally {
      await worker.stop();
    }
    const { rows: results } = await h.db.query<{ workflow: string; result: string; order_id: string }>(
      `SELECT workflow, result #>> '{}' AS result, input->>'orderId' AS order_id FROM herald_runs WHERE id = ANY($1::text[])`,
      [runIds],
    );
    for (const r of results) {
      assert.equal(r.result, `${r.workflow === 'order.audit' ? 'audited' : 'followed up'} ${r.order_id}`);
    }
    const { rows: inbox } = await h.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM notifications WHERE event_id = ANY($1::uuid[])`,
      [eventIds],
    );
    assert.equal(inbox[0]!.n, 40, 'one in-app row per event');
  });

  test('a duplicate of an emit that started runs starts none: it replays the answer that names them', async () => {
    const body = { type: 'order.placed', ctx: { orderId: 'dup', userId: randomUUID(), tenantId: randomUUID() } };
    const key = { headers: { 'idempotency-key': `dup-${randomUUID()}` } };
    const [a, b] = await Promise.all([h.post('/api/notifications/emit', body, key), h.post('/api/notifications/emit', body, key)]);
    const [ta, tb] = [await a.text(), await b.text()];
    assert.equal(a.status, 200);
    assert.equal(b.status, 200);
    assert.equal(ta, tb, 'one answer');
    assert.equal([a, b].filter((r) => r.headers.get('idempotent-replayed') === 'true').length, 1);
    const { rows } = await h.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM herald_runs WHERE input->>'orderId' = 'dup'`);
    assert.equal(rows[0]!.n, 2, 'the two workflows started once');
  });
});
