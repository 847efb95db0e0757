import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { startCodeRun } from '../../src/workflow/start.ts';
import config from '../fixtures/crash-workflow.config.ts';
import { BACKEND } from '../helpers/db.ts';
import { createTestHerald, eventually, type TestHerald } from '../helpers/herald.ts';
import { startHerald, type Proc } from '../helpers/processes.ts';

/**
 * Three `herald worker` processes run workflows on one Postgres; workers are killed with SIGKILL
 * in the middle of a step (one whose side effect is written but whose result is not recorded),
 * repeatedly. Every run completes, every step result is recorded once, and side effects repeat
 * only under the step's idempotency key.
 */
const skip = BACKEND !== 'postgres' && 'several processes share one database: Postgres only';
const CONFIG = fileURLToPath(new URL('../fixtures/crash-workflow.config.ts', import.meta.url));
const RUNS_PER_ROUND = 20;

let h: TestHerald;
const procs: Proc[] = [];
before(async () => {
  if (skip) return;
  h = await createTestHerald({ config });
  await h.db.query(`CREATE TABLE crash_effects (id bigserial PRIMARY KEY, idem_key text NOT NULL, pid integer NOT NULL)`);
});
after(async () => {
  await Promise.all(procs.map((p) => p.kill('SIGKILL')));
  await h?.close();
});

test('workers killed mid-step, repeatedly: every run completes, no step recorded twice, effects keyed runId:stepId', { skip, timeout: 120_000 }, async () => {
  const env = { DATABASE_URL: h.url!, HERALD_CONFIG: CONFIG, HERALD_JOB_LEASE_MS: '1000', HERALD_JOB_POLL_MS: '100', HERALD_MAINTENANCE_MS: '100' };
  const spawnWorker = async () => {
    const p = startHerald(['worker'], env);
    procs.push(p);
    await p.waitFor(/worker started/);
    return p;
  };
  const live = await Promise.all([spawnWorker(), spawnWorker(), spawnWorker()]);

  const wf = h.engine.rules.workflows.byName.get('crashy')!;
  const runIds: string[] = [];
  const startRuns = async (count: number) => {
    const ids = await h.db.transaction(async (tx) => {
      const out: string[] = [];
      for (let i = 0; i < count; i++) out.push((await startCodeRun(tx, wf, { n: runIds.length + i })).workflowRunId);
      return out;
    });
    runIds.push(...ids);
  };

  let kills = 0;
  for (let round = 0; round < 3; round++) {
    await startRuns(RUNS_PER_ROUND);
    // A live worker caught mid-step: its effect is written, the step's result is not recorded yet.
    const victimPid = await eventually(async () => {
      const { rows } = await h.db.query<{ pid: number }>(
        `SELECT e.pid FROM crash_effects e
         WHERE e.pid = ANY($1::int[])
           AND NOT EXISTS (SELECT 1 FROM herald_steps s
                           WHERE s.run_id || ':' || s.step_id = e.idem_key AND s.state = 'completed')
         ORDER BY e.id DESC LIMIT 1`,
        [live.map((p) => p.child.pid)],
      );
      return rows[0]?.pid;
    }, 30_000).catch((err) => {
      throw new Error(`${(err as Error).message}; worker output:\n${procs.map((p) => p.output().slice(-1500)).join('\n---\n')}`);
    });
    const i = live.findIndex((p) => p.child.pid === victimPid);
    const [victim] = live.splice(i, 1);
    await victim!.kill('SIGKILL');
    kills++;
    live.push(await spawnWorker());
  }
  const RUNS = runIds.length;

  await eventually(async () => {
    const { rows } = await h.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM herald_runs WHERE state = 'completed'`);
    return rows[0]!.n === RUNS;
  }, 90_000);

  const runs = await h.db.query<{ id: string; result: { charged: string; shipped: string } }>(`SELECT id, result FROM herald_runs ORDER BY id`);
  assert.equal(runs.rows.length, RUNS);
  const ns = new Map(runIds.map((id, n) => [id, n]));
  for (const r of runs.rows) assert.deepEqual(r.result, { charged: `charged ${ns.get(r.id)}`, shipped: `shipped ${ns.get(r.id)}` });

  const steps = await h.db.query<{ run_id: string; step_id: string; output: unknown }>(`SELECT run_id, step_id, output FROM herald_steps`);
  assert.equal(steps.rows.length, RUNS * 3, 'charge, pause and ship: one row each per run');
  for (const s of steps.rows) {
    if (s.step_id === 'charge') assert.equal(s.output, `charged ${ns.get(s.run_id)}`);
    if (s.step_id === 'ship') assert.equal(s.output, `shipped ${ns.get(s.run_id)}`);
  }

  const effects = await h.db.query<{ idem_key: string; n: number }>(`SELECT idem_key, count(*)::int AS n FROM crash_effects GROUP BY idem_key`);
  const expectedKeys = new Set(runIds.flatMap((id) => [`${id}:charge`, `${id}:ship`]));
  assert.deepEqual(new Set(effects.rows.map((e) => e.idem_key)), expectedKeys, 'every step did its effect, under its own key');
  const repeated = effects.rows.filter((e) => e.n > 1);
  assert.equal(kills, 3);
  assert.ok(repeated.length >= 1, 'a killed step was re-executed (under the same key)');
  console.log(`# ${kills} kills, ${repeated.length} step effects repeated under their idempotency key`);
  const leftover = await h.db.query(`SELECT kind, state, last_error FROM herald_jobs`);
  assert.deepEqual(leftover.rows, [], 'no job left behind');
});
