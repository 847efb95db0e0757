import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { NonRetriableError, RetryAfterError, defineConfig, rule, workflow, z, type WaitResult } from '../../src/index.ts';
import { eventually } from '../helpers/herald.ts';
import { createWorkflowHerald, type WorkflowHerald } from '../helpers/workflow.ts';

/** What the steps' side effects did, per run: how often each ran (a replay must not repeat them). */
const effects = new Map<string, string[]>();
const effect = (runId: string, what: string) => effects.set(runId, [...(effects.get(runId) ?? []), what]);
const flaky = new Map<string, number>();

const config = defineConfig({
  events: {
    'order.placed': rule({
      schema: z.object({ orderId: z.string(), userId: z.string().uuid() }),
      recipients: (ctx, to) => to.users([ctx.userId]),
      inApp: { title: 'Order {{ ctx.orderId }} placed' },
    }),
    'order.reminder': rule({
      schema: z.object({ orderId: z.string(), userId: z.string().uuid() }),
      recipients: (ctx, to) => to.users([ctx.userId]),
      inApp: { title: 'Order {{ ctx.orderId }} still waits for payment' },
    }),
  },
  workflows: {
    // run → sleep → wait → send: the whole life of a typical reminder flow.
    'order.lifecycle': workflow<{ orderId: string; userId: string }>({
      on: 'order.placed',
      async run(input, step, run) {
        const reserved = await step.run('reserve', ({ idempotencyKey }) => {
          effect(run.id, `reserve ${idempotencyKey}`);
          return { reservation: `r-${input.orderId}` };
        });
        await step.sleep('cool-off', '300ms');
        const paid = await step.waitForEvent<{ amount: number }>('payment', `paid-${input.orderId}`, { timeout: '1h' });
        await step.send('receipt', 'order.reminder', { orderId: input.orderId, userId: input.userId });
        effect(run.id, 'reached the end');
        return { reserved, paid: paid.eventData, timeout: paid.timeout };
      },
    }),
    // Waits for whatever bytes come and returns how they arrived.
    'echo': workflow<{ key: string }>({
      async run(input, step) {
        const got: WaitResult = await step.waitForEvent('body', `echo-${input.key}`, { timeout: 600 });
        return {
          raw: got.raw.toString('base64'),
          contentType: got.contentType,
          kind: Buffer.isBuffer(got.eventData) ? 'bytes' : typeof got.eventData,
          eventData: Buffer.isBuffer(got.eventData) ? null : got.eventData,
        };
      },
    }),
    'pinger': workflow<{ key: string }>({
      async run(input, step) {
        return step.notify('ping', `echo-${input.key}`, { from: 'pinger' });
      },
    }),
    'duplicate-ids': workflow({
      async run(_input, step) {
        await step.run('same', () => 1);
        await step.run('same', () => 2);
      },
    }),
    'flaky': workflow<{ key: string }>({
      retries: 5,
      async run(input, step) {
        return step.run('sometimes', ({ attempt }) => {
          const n = (flaky.get(input.key) ?? 0) + 1;
          flaky.set(input.key, n);
          if (n < 3) throw new Error(`transient failure ${n}`);
          return { attempt };
        });
      },
    }),
    'hopeless': workflow({
      retries: 2,
      async run(_input, step) {
        await step.run('always-fails', () => {
          throw new Error('the payment provider is down');
        });
      },
    }),
    'refuses': workflow({
      async run(_input, step) {
        await step.run('refuse', () => {
          throw new NonRetriableError('card declined');
        });
      },
    }),
    'later': workflow<{ key: string }>({
      async run(input, step) {
        return step.run('rate-limited', () => {
          const n = (flaky.get(input.key) ?? 0) + 1;
          flaky.set(input.key, n);
          if (n === 1) throw new RetryAfterError('provider said 429', 200);
          return 'ok';
        });
      },
    }),
    'bad-duration': workflow({
      async run(_input, step) {
        await step.sleep('nap', 'forever');
      },
    }),
  },
});

describe('code-first workflows: steps', () => {
  let h: WorkflowHerald;
  before(async () => {
    h = await createWorkflowHerald(config);
  });
  after(() => h?.close());

  test('run → sleep → wait → notify → send: the run completes with what each step returned, side effects once', async () => {
    const userId = '0190a0a0-0000-7000-8000-000000000001';
    const res = await h.post('/api/notifications/emit', { type: 'order.placed', ctx: { orderId: 'o-1', userId } });
    assert.equal(res.status, 200);
    const emitted = (await res.json()) as { ok: boolean; workflow: string; workflowRuns: string[]; eventId: string };
    assert.equal(emitted.workflow, 'queued');
    assert.equal(emitted.workflowRuns.length, 1, 'emit in workflow mode starts the subscribed workflow');
    const runId = emitted.workflowRuns[0]!;
    assert.equal((await h.run(runId)).event_id, emitted.eventId);

    await h.waiting(runId, 'paid-o-1');
    const sleep = (await h.steps(runId)).find((s) => s.step_id === 'cool-off')!;
    assert.equal(sleep.state, 'completed');
    assert.ok(sleep.wake_at!.getTime() - sleep.started_at.getTime() >= 300, 'the sleep lasted its duration on the database clock');

    const notified = await h.notify(`/v2/notify/paid-o-1`, JSON.stringify({ amount: 42 }), 'application/json');
    assert.equal(notified.status, 201);
    const results = (await notified.json()) as { workflowRunId: string; workflowCreatedAt: number; messageId: string; waiter: { url: string } }[];
    assert.equal(results.length, 1);
    assert.equal(results[0]!.workflowRunId, runId);
    assert.equal(results[0]!.workflowCreatedAt, (await h.run(runId)).created_at.getTime(), 'the run\'s creation in whole milliseconds');
    assert.match(results[0]!.messageId, /^msg_[0-9a-f]{32}$/);
    assert.equal(results[0]!.waiter.url, `${h.engine.baseUrl}/api/workflows/runs/${runId}`);

    const done = await h.settled(runId, 'completed');
    assert.deepEqual(done.result, { reserved: { reservation: 'r-o-1' }, paid: { amount: 42 }, timeout: false });
    // The function was replayed after the sleep and after the wait, but the step ran once.
    assert.deepEqual(effects.get(runId), [`reserve ${runId}:reserve`, 'reached the end']);

    const steps = await h.steps(runId);
    assert.deepEqual(steps.map((s) => [s.step_id, s.type, s.state]), [
      ['reserve', 'run', 'completed'],
      ['cool-off', 'sleep', 'completed'],
      ['payment', 'wait', 'completed'],
      ['receipt', 'send', 'completed'],
    ]);
    // step.send went through the rules: the reminder is in the user's inbox, exactly once. The step
    // commits the event; its in-app rows are written by the job that expands it, a moment later.
    const titles = async () =>
      (await h.db.query<{ title: string }>(`SELECT title FROM notifications WHERE user_id = $1 ORDER BY created_at`, [userId])).rows.map((r) => r.title);
    await eventually(async () => (await titles()).length >= 2);
    assert.deepEqual(await titles(), ['Order o-1 placed', 'Order o-1 still waits for payment']);
  });

  for (const [label, body, contentType, expect] of [
    ['JSON', Buffer.from('{"approved":true,"by":"ana"}'), 'application/json', { kind: 'object', eventData: { approved: true, by: 'ana' } }],
    ['text', Buffer.from('approved by Ana — ✓'), 'text/plain; charset=utf-8', { kind: 'string', eventData: 'approved by Ana — ✓' }],
    ['binary', Buffer.from([0x00, 0xff, 0xfe, 0x80, 0x0a, 0x7b]), 'application/octet-stream', { kind: 'bytes', eventData: null }],
  ] as const) {
    test(`the waiting step receives a ${label} body byte for byte, with its content type`, async () => {
      const key = `k-${label}`;
      const runId = await h.start('echo', { key });
      await h.waiting(runId, `echo-${key}`);
      const res = await h.notify(`/v2/notify/${runId}/echo-${key}`, new Uint8Array(body), contentType);
      assert.equal(res.status, 201);
      const done = await h.settled(runId, 'completed');
      assert.deepEqual(done.result, { raw: body.toString('base64'), contentType, ...expect });
      const wait = (await h.steps(runId)).find((s) => s.step_id === 'body')!;
      assert.ok(wait.output_bytes!.equals(body), 'the stored body is the exact bytes');
    });
  }

  test('step.notify from one workflow wakes another, and records whom it reached', async () => {
    const waiter = await h.start('echo', { key: 'from-step' });
    await h.waiting(waiter, 'echo-from-step');
    const pinger = await h.start('pinger', { key: 'from-step' });
    const sent = await h.settled(pinger, 'completed');
    const results = sent.result as { workflowRunId: string }[];
    assert.deepEqual(results.map((r) => r.workflowRunId), [waiter]);
    const woken = await h.settled(waiter, 'completed');
    assert.deepEqual((woken.result as { eventData: unknown }).eventData, { from: 'pinger' });
  });

  test('a duplicate step id fails the run at once with a message that names it', async () => {
    const runId = await h.start('duplicate-ids');
    const failed = await h.settled(runId, 'failed');
    assert.match(failed.error!, /duplicate step id "same"/);
    const { rows } = await h.db.query<{ attempts: number }>(`SELECT attempts FROM herald_jobs WHERE payload->>'runId' = $1`, [runId]);
    assert.deepEqual(rows.map((r) => r.attempts), [1], 'not retried: the code will not change by itself');
    // The first "same" ran and was recorded once; the second never ran.
    const steps = await h.steps(runId);
    assert.deepEqual(steps.map((s) => [s.step_id, s.output]), [['same', 1]]);
  });

  test('a failing step is retried with backoff and its attempts are recorded; the run then completes', async () => {
    const runId = await h.start('flaky', { key: 'flaky-1' });
    const done = await h.settled(runId, 'completed');
    assert.deepEqual(done.result, { attempt: 3 });
    const [s] = await h.steps(runId);
    assert.equal(s!.state, 'completed');
    assert.equal(s!.attempts, 3);
    assert.equal(flaky.get('flaky-1'), 3);
  });

  test('a run that exhausts its retries is failed with the error', async () => {
    const runId = await h.start('hopeless');
    const failed = await h.settled(runId, 'failed', 30_000);
    assert.match(failed.error!, /the payment provider is down/);
    const [s] = await h.steps(runId);
    assert.equal(s!.state, 'failed');
    assert.equal(s!.attempts, 3, 'retries: 2 means three attempts');
  });

  test('a NonRetriableError fails the run on the first attempt', async () => {
    const runId = await h.start('refuses');
    const failed = await h.settled(runId, 'failed');
    assert.match(failed.error!, /card declined/);
    assert.equal((await h.steps(runId))[0]!.attempts, 1);
  });

  test('a RetryAfterError retries after the delay it asks for', async () => {
    const runId = await h.start('later', { key: 'later-1' });
    const done = await h.settled(runId, 'completed');
    assert.equal(done.result, 'ok');
    assert.equal((await h.steps(runId))[0]!.attempts, 2);
  });

  test('an invalid duration fails the run with a clear message instead of retrying', async () => {
    const runId = await h.start('bad-duration');
    const failed = await h.settled(runId, 'failed');
    assert.match(failed.error!, /step\.sleep\("nap"\) duration/);
  });

  test('a run holds no job while it waits; the wait is a row with the seed\'s waiter fields', async () => {
    const runId = await h.start('echo', { key: 'idle' });
    await h.waiting(runId, 'echo-idle');
    await eventually(async () => {
      const { rows } = await h.db.query(`SELECT 1 FROM herald_jobs WHERE payload->>'runId' = $1 AND state IN ('queued', 'running')`, [runId]);
      return rows.length === 0;
    });
    const res = await h.app.request('/v2/waiters/echo-idle', { headers: { authorization: `Bearer ${'test-qstash-token-0123456789'}` } });
    const [w] = (await res.json()) as Record<string, unknown>[];
    assert.equal(w!.url, `${h.engine.baseUrl}/api/workflows/runs/${runId}`);
    assert.deepEqual(w!.headers, { 'Upstash-Workflow-RunId': [runId], 'Herald-Workflow-Step': ['body'] });
    assert.equal(typeof w!.deadline, 'number');
    const inTenMinutes = Date.now() / 1000 + 600;
    assert.ok(Math.abs((w!.deadline as number) - inTenMinutes) < 60, 'deadline is unix seconds, 600 s ahead');
    // A code run continues at url whether notified or timed out: no separate timeout target.
    assert.equal(w!.timeoutUrl, undefined);
    assert.equal(w!.timeoutHeaders, undefined);
    await h.notify(`/v2/notify/echo-idle`, 'bye', 'text/plain');
    await h.settled(runId, 'completed');
  });
});

describe('workflow metrics', () => {
  let h: WorkflowHerald;
  before(async () => {
    h = await createWorkflowHerald(config);
  });
  after(() => h?.close());

  test('GET /metrics shows runs by state, active waiters and step latency', async () => {
    const done = await h.start('flaky', { key: 'metrics' });
    await h.settled(done, 'completed');
    const waiting = await h.start('echo', { key: 'metrics' });
    await h.waiting(waiting, 'echo-metrics');
    const res = await h.app.request('/metrics');
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.match(text, /^herald_workflow_runs\{state="completed"\} 1$/m);
    assert.match(text, /^herald_workflow_runs\{state="running"\} 1$/m);
    assert.match(text, /^herald_waiters_active 1$/m);
    assert.match(text, /^herald_workflow_step_duration_seconds_count\{type="run",outcome="ok"\} 1$/m);
    assert.match(text, /^herald_workflow_step_duration_seconds_count\{type="run",outcome="error"\} 2$/m);
    assert.match(text, /^herald_workflow_runs_finished_total\{state="completed"\} 1$/m);
  });
});
