import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { defineConfig, workflow } from '../../src/index.ts';
import { fireDueTimeouts } from '../../src/workflow/notify.ts';
import { createWorkflowHerald, type WorkflowHerald } from '../helpers/workflow.ts';

/** How many times the code after each run's wait executed (it must be once per run). */
const afterWait = new Map<string, number>();

const config = defineConfig({
  events: {},
  workflows: {
    'wait-then-record': workflow<{ key: string; timeout: string }>({
      async run(input, step, run) {
        const got = await step.waitForEvent('decision', `decision-${input.key}`, { timeout: input.timeout });
        await step.run('record', () => {
          afterWait.set(run.id, (afterWait.get(run.id) ?? 0) + 1);
        });
        return { timeout: got.timeout, eventData: got.eventData ?? null };
      },
    }),
  },
});

describe('wait timeouts', () => {
  let h: WorkflowHerald;
  before(async () => {
    h = await createWorkflowHerald(config);
  });
  after(() => h?.close());

  test('an unanswered wait times out once: the step resumes with timeout true, and a later notify reaches nobody', async () => {
    const runId = await h.start('wait-then-record', { key: 'quiet', timeout: '300ms' });
    const done = await h.settled(runId, 'completed');
    assert.deepEqual(done.result, { timeout: true, eventData: null });
    assert.equal(afterWait.get(runId), 1);
    const wait = (await h.steps(runId)).find((s) => s.step_id === 'decision')!;
    assert.equal(wait.state, 'completed');
    assert.equal((wait.output as { timeout: boolean }).timeout, true);
    assert.ok(wait.finished_at!.getTime() - wait.started_at.getTime() >= 300, 'not before its deadline (database clock)');

    const late = await h.notify('/v2/notify/decision-quiet', 'too late', 'text/plain');
    assert.deepEqual(await late.json(), []);
    // A second sweep finds nothing: the timeout fired once.
    assert.deepEqual(await h.db.transaction((tx) => fireDueTimeouts(tx)), []);
  });

  test('notify racing the timeout at the deadline: exactly one winner, and the notify response tells which, many times over', async () => {
    const iterations = 25;
    const wins = { notify: 0, timeout: 0 };
    for (let i = 0; i < iterations; i++) {
      const key = `race-${i}`;
      const runId = await h.start('wait-then-record', { key, timeout: '1h' });
      await h.waiting(runId, `decision-${key}`);
      // Bring the deadline to now: the maintenance sweep (every 50 ms here) and an explicit sweep
      // race the notify for the same waiter.
      await h.db.query(`UPDATE herald_waiters SET deadline_at = now() WHERE run_id = $1`, [runId]);
      // Who starts first alternates, so that a backend that serializes transactions (PGlite) sees
      // both orders too.
      const sweep = async () => {
        if (i % 2 === 1) await new Promise((r) => setTimeout(r, i % 4));
        return h.db.transaction((tx) => fireDueTimeouts(tx));
      };
      const notify = () => h.notify(`/v2/notify/decision-${key}`, JSON.stringify({ i }), 'application/json');
      const [swept, res] = i % 2 === 0 ? await Promise.all([sweep(), notify()]) : (await Promise.all([notify(), sweep()])).reverse() as [Awaited<ReturnType<typeof sweep>>, Response];
      assert.equal(res.status, 201);
      const reached = ((await res.json()) as { workflowRunId: string }[]).filter((r) => r.workflowRunId === runId);
      assert.ok(reached.length <= 1);
      const done = await h.settled(runId, 'completed');
      const result = done.result as { timeout: boolean; eventData: unknown };
      if (reached.length === 1) {
        wins.notify++;
        assert.deepEqual(result, { timeout: false, eventData: { i } }, 'the notify said it reached the waiter, so the run got the data');
        assert.ok(!swept.some((w) => w.run_id === runId));
      } else {
        wins.timeout++;
        assert.deepEqual(result, { timeout: true, eventData: null }, 'the notify said it reached nobody, so the run timed out');
      }
      assert.equal(afterWait.get(runId), 1, 'the run continued once');
      const { rows } = await h.db.query(`SELECT 1 FROM herald_steps WHERE run_id = $1 AND step_id = 'decision'`, [runId]);
      assert.equal(rows.length, 1);
    }
    console.log(`# timeout race: notify won ${wins.notify}, timeout won ${wins.timeout} of ${iterations}`);
    assert.equal(wins.notify + wins.timeout, iterations);
  });

  test('two notifies racing for one waiter: exactly one reaches it', async () => {
    for (let i = 0; i < 15; i++) {
      const key = `double-${i}`;
      const runId = await h.start('wait-then-record', { key, timeout: '1h' });
      await h.waiting(runId, `decision-${key}`);
      const answers = await Promise.all(
        ['a', 'b'].map(async (who) => {
          const res = await h.notify(`/v2/notify/decision-${key}`, JSON.stringify(who), 'application/json');
          return { who, reached: ((await res.json()) as unknown[]).length };
        }),
      );
      assert.equal(answers.reduce((n, a) => n + a.reached, 0), 1, JSON.stringify(answers));
      const winner = answers.find((a) => a.reached === 1)!.who;
      assert.deepEqual((await h.settled(runId, 'completed')).result, { timeout: false, eventData: winner });
    }
  });
});
