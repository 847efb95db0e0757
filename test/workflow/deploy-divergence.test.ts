import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createEngine } from '../../src/engine.ts';
import { defineConfig, workflow } from '../../src/index.ts';
import type { Worker } from '../../src/jobs/worker.ts';
import { silentLogger } from '../../src/log.ts';
import { compileRules } from '../../src/rules/compile.ts';
import type { WorkflowStep } from '../../src/workflow/types.ts';
import { createWorkflowHerald, type WorkflowHerald } from '../helpers/workflow.ts';

/**
 * A deploy while runs wait. Runs record steps under one definition of their workflow (v1), wait
 * for an event, and are resumed by a worker running a changed definition (v2) of the same name.
 * Where v2 no longer matches the recorded history — a step renamed, its kind changed, a step
 * inserted before recorded ones, a recorded step dropped — the run stops with an error that says so, and v2's new
 * code never runs against the old history. Where v2 only changed a step's body or added steps
 * after the recorded ones, the run carries on.
 */

/** Bodies of steps that run, per `<runId>:<stepId>`, and under which version. */
const ran = new Map<string, string[]>();
const body = (version: string, runId: string, stepId: string, value: unknown = stepId) => async () => {
  ran.set(`${runId}:${stepId}`, [...(ran.get(`${runId}:${stepId}`) ?? []), version]);
  return value;
};
type Flow = (step: WorkflowStep, runId: string, ev: string) => Promise<unknown>;

/** Each workflow's v1 and v2: every v1 runs `a`, then waits, and v2 is resumed by the notify. */
const flows: Record<string, { v1: Flow; v2: Flow }> = {
  renamed: {
    v1: async (step, id, ev) => [await step.run('a', body('v1', id, 'a')), await step.waitForEvent('w', ev), await step.run('b', body('v1', id, 'b'))],
    v2: async (step, id, ev) => [await step.run('a-renamed', body('v2', id, 'a-renamed')), await step.waitForEvent('w', ev), await step.run('b', body('v2', id, 'b'))],
  },
  rekinded: {
    v1: async (step, id, ev) => [await step.run('a', body('v1', id, 'a')), await step.waitForEvent('w', ev)],
    v2: async (step, id, ev) => [await step.sleep('a', '1ms'), await step.waitForEvent('w', ev), await step.run('c', body('v2', id, 'c'))],
  },
  inserted: {
    v1: async (step, id, ev) => [await step.run('a', body('v1', id, 'a')), await step.run('b', body('v1', id, 'b')), await step.waitForEvent('w', ev)],
    v2: async (step, id, ev) => [await step.run('a', body('v2', id, 'a')), await step.run('x', body('v2', id, 'x')), await step.run('b', body('v2', id, 'b')), await step.waitForEvent('w', ev)],
  },
  'wait-dropped': {
    v1: async (step, id, ev) => [await step.run('a', body('v1', id, 'a')), await step.waitForEvent('w', ev), await step.run('b', body('v1', id, 'b'))],
    v2: async (step, id) => [await step.run('a', body('v2', id, 'a')), await step.run('b', body('v2', id, 'b'))],
  },
  'tail-dropped': {
    // v2 returns without reaching the recorded wait at all.
    v1: async (step, id, ev) => [await step.run('a', body('v1', id, 'a')), await step.waitForEvent('w', ev)],
    v2: async (step, id) => [await step.run('a', body('v2', id, 'a'))],
  },
  // Compatible changes: a body changed, a step added after the recorded ones, parallel steps.
  compatible: {
    v1: async (step, id, ev) => [
      await Promise.all([step.run('p1', body('v1', id, 'p1')), step.run('p2', body('v1', id, 'p2'))]),
      await step.waitForEvent('w', ev),
      await step.run('b', body('v1', id, 'b')),
    ],
    v2: async (step, id, ev) => [
      await Promise.all([step.run('p1', body('v2', id, 'p1', 'changed')), step.run('p2', body('v2', id, 'p2', 'changed'))]),
      (await step.waitForEvent('w', ev)).eventData,
      await step.run('b', body('v2', id, 'b', 'new body')),
      await step.run('added', body('v2', id, 'added')),
    ],
  },
};

const configOf = (version: 'v1' | 'v2') =>
  defineConfig({
    events: {},
    workflows: Object.fromEntries(
      Object.entries(flows).map(([name, f]) => [
        name,
        workflow<{ ev: string }>({ retries: 0, run: (input, step, run) => f[version](step, run.id, input.ev) }),
      ]),
    ),
  });

describe('a workflow changed while its runs wait (a deploy)', () => {
  let h: WorkflowHerald;
  let v2: Worker;
  const runs = new Map<string, string>();

  before(async () => {
    // v1 records every run up to its wait.
    h = await createWorkflowHerald(configOf('v1'));
    for (const name of Object.keys(flows)) {
      const runId = await h.start(name, { ev: `ev-${name}` });
      runs.set(name, runId);
      await h.waiting(runId, `ev-${name}`);
    }
    await h.worker.stop();
    // The deploy: v2 takes over the same database; the runs are resumed under it.
    const engine = createEngine({ settings: h.engine.settings, db: h.db, rules: compileRules(configOf('v2')), log: silentLogger });
    v2 = engine.createWorker();
    await v2.start();
    for (const name of Object.keys(flows)) {
      const res = await h.notify(`/v2/notify/ev-${name}`, JSON.stringify({ name }), 'application/json');
      assert.equal(res.status, 201);
    }
  });
  after(async () => {
    await v2?.stop();
    await h?.close();
  });

  const failsWith = async (name: string, pattern: RegExp) => {
    const run = await h.settled(runs.get(name)!);
    assert.equal(run.state, 'failed', `${name}: ${run.state} ${JSON.stringify(run.result)}`);
    assert.match(run.error ?? '', pattern);
    assert.match(run.error ?? '', /changed while this run was in flight/);
    console.log(`# ${name}: ${run.error}`);
    return run;
  };
  const v2Ran = (name: string) =>
    [...ran].filter(([key, versions]) => key.startsWith(`${runs.get(name)}:`) && versions.includes('v2')).map(([key]) => key.split(':').at(-1));

  test('a renamed step: the run stops before the new step runs', async () => {
    await failsWith('renamed', /"a-renamed".*"a"|"a".*"a-renamed"/s);
    assert.deepEqual(v2Ran('renamed'), [], 'no v2 step body ran against the v1 history');
  });

  test('a step whose kind changed', async () => {
    await failsWith('rekinded', /"a" was recorded as a run step but is now called as sleep/);
    assert.deepEqual(v2Ran('rekinded'), []);
  });

  test('a step inserted before recorded ones', async () => {
    await failsWith('inserted', /new step "x" \(run\).*"b" \(run\), "w" \(wait\)/s);
    assert.deepEqual(v2Ran('inserted'), []);
  });

  test('a recorded wait the code no longer reaches, with a step after it', async () => {
    await failsWith('wait-dropped', /"w"/);
    assert.deepEqual(v2Ran('wait-dropped'), [], 'b did not run in place of the wait');
  });

  test('a recorded step the code no longer reaches before it returns', async () => {
    const run = await failsWith('tail-dropped', /"w"/);
    assert.equal(run.result, null, 'the run did not complete with v2 result');
  });

  test('compatible changes carry on: a new body, a step added after the history, parallel steps', async () => {
    const run = await h.settled(runs.get('compatible')!, 'completed');
    // Recorded results stand (v1's), new steps run under v2.
    assert.deepEqual(run.result, [['p1', 'p2'], { name: 'compatible' }, 'new body', 'added']);
    assert.deepEqual(v2Ran('compatible').sort(), ['added', 'b']);
  });

  test('every stopped run is in the failed list with its error (the dead letters of code workflows)', async () => {
    const res = await h.app.request('/api/workflows/runs?state=failed', { headers: { authorization: 'Bearer test-admin-token-0123456789' } });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { runs: { workflowRunId?: string; id?: string; error?: string }[] };
    const listed = new Set(body.runs.map((r) => r.workflowRunId ?? r.id));
    for (const name of ['renamed', 'rekinded', 'inserted', 'wait-dropped', 'tail-dropped']) {
      assert.ok(listed.has(runs.get(name)!), `${name} is listed as failed`);
    }
  });
});
