import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { defineConfig, workflow, z } from '../../src/index.ts';
import { ADMIN_TOKEN, createWorkflowHerald, QSTASH_TOKEN, type WorkflowHerald } from '../helpers/workflow.ts';

/** The admin API: workflows, starting runs, listing and paging, a run's timeline, cancel, waiters. */
const config = defineConfig({
  events: {},
  workflows: {
    approval: workflow<{ order: string }>({
      description: 'Waits for an approval',
      schema: z.object({ order: z.string().min(1) }),
      retries: 2,
      async run(input, step) {
        const n = await step.run('reserve', () => input.order.length);
        const got = await step.waitForEvent('approve', `approve-${input.order}`, { timeout: '1h' });
        return { n, got: got.eventData };
      },
    }),
    failing: workflow({
      retries: 1,
      async run(_input, step) {
        await step.run('boom', () => {
          throw new Error('exploded');
        });
      },
    }),
  },
});

describe('admin API', () => {
  let h: WorkflowHerald;
  before(async () => {
    h = await createWorkflowHerald(config);
  });
  after(() => h?.close());

  const admin = (path: string, init: RequestInit = {}) =>
    h.app.request(path, { ...init, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json', ...(init.headers as Record<string, string>) } });
  const start = async (name: string, input: unknown) => {
    const res = await admin(`/api/workflows/${name}/runs`, { method: 'POST', body: JSON.stringify(input) });
    assert.equal(res.status, 201);
    return (await res.json()) as { workflowRunId: string; workflowCreatedAt: number };
  };

  test('lists the configured workflows', async () => {
    const body = (await (await admin('/api/workflows')).json()) as { workflows: unknown[] };
    assert.deepEqual(body.workflows, [
      { name: 'approval', description: 'Waits for an approval', on: [], retries: 2 },
      { name: 'failing', on: [], retries: 1 },
    ]);
  });

  test('starting a run validates its input against the schema, naming the field', async () => {
    const res = await admin('/api/workflows/approval/runs', { method: 'POST', body: JSON.stringify({ order: 42 }) });
    assert.equal(res.status, 400);
    assert.match(((await res.json()) as { error: string }).error, /input\.order/);
  });

  test("a run's timeline: steps with outputs and attempts, and the waiter it waits on; cancel removes it", async () => {
    const { workflowRunId, workflowCreatedAt } = await start('approval', { order: 'po-1' });
    assert.match(workflowRunId, /^wfr_/);
    assert.equal(typeof workflowCreatedAt, 'number');
    await h.waiting(workflowRunId, 'approve-po-1');
    const detail = (await (await admin(`/api/workflows/runs/${workflowRunId}`)).json()) as {
      run: { workflowRunId: string; workflow: string; state: string; input: unknown };
      steps: { stepId: string; type: string; state: string; output?: unknown; attempts: number }[];
      waiters: { eventId: string; stepId: string; deadline: number; url: string }[];
    };
    assert.deepEqual(
      { id: detail.run.workflowRunId, wf: detail.run.workflow, state: detail.run.state, input: detail.run.input },
      { id: workflowRunId, wf: 'approval', state: 'running', input: { order: 'po-1' } },
    );
    assert.deepEqual(detail.steps.map((s) => [s.stepId, s.type, s.state, s.attempts]), [
      ['reserve', 'run', 'completed', 1],
      ['approve', 'wait', 'waiting', 0],
    ]);
    assert.equal(detail.steps[0]!.output, 4);
    assert.deepEqual(detail.waiters.map((w) => [w.eventId, w.stepId]), [['approve-po-1', 'approve']]);

    const waitersBefore = (await (await admin('/api/workflows/waiters?eventId=approve-po-1')).json()) as { waiters: unknown[] };
    assert.equal(waitersBefore.waiters.length, 1);
    const cancel = await admin(`/api/workflows/runs/${workflowRunId}/cancel`, { method: 'POST' });
    assert.deepEqual(await cancel.json(), { ok: true, workflowRunId, state: 'cancelled' });
    const waitersAfter = (await (await admin('/api/workflows/waiters?eventId=approve-po-1')).json()) as { waiters: unknown[] };
    assert.equal(waitersAfter.waiters.length, 0, 'its waiter is gone');
    const notify = await h.app.request('/v2/notify/approve-po-1', { method: 'POST', headers: { authorization: `Bearer ${QSTASH_TOKEN}` }, body: 'late' });
    assert.deepEqual(await notify.json(), [], 'a later notify reaches nobody');
    const again = await admin(`/api/workflows/runs/${workflowRunId}/cancel`, { method: 'POST' });
    assert.equal(again.status, 409);
  });

  test('a failing step shows its attempts and error; the run fails once its retries are spent', async () => {
    const { workflowRunId } = await start('failing', {});
    const run = await h.settled(workflowRunId, 'failed', 30_000);
    assert.match(run.error!, /exploded/);
    const detail = (await (await admin(`/api/workflows/runs/${workflowRunId}`)).json()) as { run: { state: string; error: string }; steps: { stepId: string; state: string; attempts: number; error?: string }[] };
    assert.equal(detail.run.state, 'failed');
    assert.deepEqual(detail.steps.map((s) => [s.stepId, s.state, s.attempts, s.error]), [['boom', 'failed', 2, 'exploded']]);
  });

  test('listing filters by state and workflow and pages with a cursor without skipping or repeating', async () => {
    const started: string[] = [];
    for (let i = 0; i < 7; i++) started.push((await start('approval', { order: `page-${i}` })).workflowRunId);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page = (await (await admin(`/api/workflows/runs?workflow=approval&state=running&limit=3${cursor ? `&cursor=${cursor}` : ''}`)).json()) as {
        runs: { workflowRunId: string; workflow: string; state: string }[];
        nextCursor: string | null;
      };
      assert.ok(page.runs.length <= 3);
      assert.ok(page.runs.every((r) => r.workflow === 'approval' && r.state === 'running'));
      seen.push(...page.runs.map((r) => r.workflowRunId));
      cursor = page.nextCursor;
    } while (cursor);
    assert.deepEqual(seen, [...started].reverse(), 'newest first, each exactly once');
    const failed = (await (await admin('/api/workflows/runs?state=failed')).json()) as { runs: { workflow: string }[] };
    assert.ok(failed.runs.length >= 1 && failed.runs.every((r) => r.workflow === 'failing'));
  });
});
