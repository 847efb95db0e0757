import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { defineConfig, workflow } from '../../src/index.ts';
import { rescueExpiredJobs } from '../../src/storage/queries/jobs.ts';
import { startCodeRun } from '../../src/workflow/start.ts';
import attemptConfig from '../fixtures/attempt-workflow.config.ts';
import { BACKEND } from '../helpers/db.ts';
import { createTestHerald, eventually, type TestHerald } from '../helpers/herald.ts';
import { startHerald, type Proc } from '../helpers/processes.ts';
import { createWorkflowHerald, type WorkflowHerald } from '../helpers/workflow.ts';

/**
 * `step.run` hands its body `attempt`: 1 on the first execution, and more on every later one —
 * including an execution that follows a crash between the body and the recording of its result
 * (a lost lease, a killed process), which leaves no failure behind to count. The body must see
 * that it is a retry (to check on the side effect its first try may have done), so an execution
 * is counted when it starts, before the body runs.
 */

/** The attempts each run's step body was given, in order. */
const seen = new Map<string, number[]>();
/** What the body does on each call (by the call's index), per run: throw, or lose the lease. */
const script = new Map<string, ('fail' | 'lose-lease' | 'ok')[]>();
let h: WorkflowHerald;

/** Makes this run's worker lose its job's lease while the body is running (another takes it). */
async function loseLease(runId: string): Promise<void> {
  await h.db.query(
    `UPDATE herald_jobs SET locked_until = now() - interval '1 second' WHERE key = $1 AND state = 'running'`,
    [`run:${runId}`],
  );
  await rescueExpiredJobs(h.db);
  // The job is claimed again and the step starts over while this body is still running.
  await eventually(async () => (seen.get(runId)?.length ?? 0) >= 2 || undefined, 5_000).catch(() => {});
}

const config = defineConfig({
  events: {},
  workflows: {
    scripted: workflow<Record<string, never>>({
      retries: 5,
      async run(_input, step, run) {
        const before = await step.run('before', () => 'recorded once');
        const value = await step.run('effect', async ({ attempt }) => {
          const calls = seen.get(run.id) ?? [];
          calls.push(attempt);
          seen.set(run.id, calls);
          const action = script.get(run.id)?.[calls.length - 1] ?? 'ok';
          if (action === 'fail') throw new Error(`attempt ${attempt} fails`);
          if (action === 'lose-lease') await loseLease(run.id);
          return attempt;
        });
        return { before, value };
      },
    }),
  },
});

describe('step.run attempt', () => {
  before(async () => {
    h = await createWorkflowHerald(config, { HERALD_JOB_LEASE_MS: '30000' });
  });
  after(() => h?.close());

  const runScripted = async (actions: ('fail' | 'lose-lease' | 'ok')[]) => {
    const runId = await h.start('scripted', {});
    script.set(runId, actions);
    // Set right after the run is queued; the body reads it only after the 'before' step's commit.
    const done = await h.settled(runId, 'completed', 20_000);
    return { runId, done, steps: await h.steps(runId) };
  };

  test('an execution after a lost lease (no failure recorded) sees the next attempt', async () => {
    const { runId, done, steps } = await runScripted(['lose-lease', 'ok']);
    assert.deepEqual(seen.get(runId), [1, 2], 'the retry after the lost lease is attempt 2');
    assert.deepEqual(done.result, { before: 'recorded once', value: 2 });
    const effect = steps.find((s) => s.step_id === 'effect')!;
    assert.equal(effect.state, 'completed');
    assert.equal(effect.attempts, 2, 'the timeline counts both executions');
    assert.equal(steps.find((s) => s.step_id === 'before')!.attempts, 1, 'a replayed step is not executed again');
  });

  test('a failure, then a lost lease, then success: attempts 1, 2, 3', async () => {
    const { runId, steps } = await runScripted(['fail', 'lose-lease', 'ok']);
    assert.deepEqual(seen.get(runId), [1, 2, 3]);
    assert.equal(steps.find((s) => s.step_id === 'effect')!.attempts, 3);
  });

  test('a plain success is attempt 1, a retry after a failure attempt 2', async () => {
    const a = await runScripted(['ok']);
    assert.deepEqual(seen.get(a.runId), [1]);
    assert.equal(a.steps.find((s) => s.step_id === 'effect')!.attempts, 1);
    const b = await runScripted(['fail', 'ok']);
    assert.deepEqual(seen.get(b.runId), [1, 2]);
    const effect = b.steps.find((s) => s.step_id === 'effect')!;
    assert.equal(effect.attempts, 2);
    assert.equal(effect.error, null, 'the error of the failed attempt is cleared by the success');
  });
});

describe('step.run attempt after the worker process is killed mid-step', () => {
  const skip = BACKEND !== 'postgres' && 'worker processes share one database: Postgres only';
  const CONFIG = fileURLToPath(new URL('../fixtures/attempt-workflow.config.ts', import.meta.url));
  let t: TestHerald;
  const procs: Proc[] = [];
  before(async () => {
    if (skip) return;
    t = await createTestHerald({ config: attemptConfig });
    await t.db.query(`CREATE TABLE attempt_effects (idem_key text NOT NULL, attempt int NOT NULL, pid int NOT NULL)`);
  });
  after(async () => {
    await Promise.all(procs.map((p) => p.kill('SIGKILL')));
    await t?.close();
  });

  test('the execution after a SIGKILL between the body and its commit is attempt 2', { skip, timeout: 60_000 }, async () => {
    const env = { DATABASE_URL: t.url!, HERALD_CONFIG: CONFIG, HERALD_JOB_LEASE_MS: '1000', HERALD_JOB_POLL_MS: '100', HERALD_MAINTENANCE_MS: '100' };
    const spawn = async () => {
      const p = startHerald(['worker'], env);
      procs.push(p);
      await p.waitFor(/worker started/);
      return p;
    };
    const first = await spawn();
    const wf = t.engine.rules.workflows.byName.get('attempt-seen')!;
    const { workflowRunId } = await t.db.transaction((tx) => startCodeRun(tx, wf, {}));
    // The body has done its effect and is still running: its result is not recorded.
    await eventually(async () => (await t.db.query(`SELECT 1 FROM attempt_effects`)).rows.length > 0, 20_000);
    await first.kill('SIGKILL');
    await spawn();
    await eventually(async () => {
      const { rows } = await t.db.query<{ state: string }>(`SELECT state FROM herald_runs WHERE id = $1`, [workflowRunId]);
      return rows[0]?.state === 'completed';
    }, 30_000);
    const { rows } = await t.db.query<{ idem_key: string; attempt: number }>(`SELECT idem_key, attempt FROM attempt_effects ORDER BY attempt`);
    assert.deepEqual(rows, [
      { idem_key: `${workflowRunId}:effect`, attempt: 1 },
      { idem_key: `${workflowRunId}:effect`, attempt: 2 },
    ]);
    const run = await t.db.query<{ result: number }>(`SELECT result FROM herald_runs WHERE id = $1`, [workflowRunId]);
    assert.equal(run.rows[0]!.result, 2);
  });
});
