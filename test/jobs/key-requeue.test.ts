import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createWorker } from '../../src/jobs/worker.ts';
import { fireDueTimeouts } from '../../src/workflow/notify.ts';
import { silentLogger } from '../../src/log.ts';
import {
  claimJobs,
  deferJob,
  enqueueJob,
  failJob,
  rescueExpiredJobs,
  type ClaimedJob,
} from '../../src/storage/queries/jobs.ts';
import pg from 'pg';
import { createJobContext } from '../../src/jobs/job-context.ts';
import { BACKEND, createTestDb, type TestDb } from '../helpers/db.ts';
import { eventually } from '../helpers/herald.ts';

/**
 * Queuing a job's key while that job runs is intended (a run resumed mid-execution runs again
 * right after): the key then has a running job and a queued one. Whatever sends the running one
 * back to the queue (a retry, a defer, the rescue of an expired lease) must not collide with the
 * queued one on the key's unique index (23505): the two merge into the queued job.
 */
describe('a job whose key is queued again while it runs', () => {
  let t: TestDb;
  before(async () => {
    t = await createTestDb();
  });
  after(async () => t?.drop());

  const jobsOf = async (key: string) =>
    (
      await t.db.query<{ id: number; state: string; attempts: number; last_error: string | null; due: boolean }>(
        `SELECT id, state, attempts, last_error, run_at <= now() AS due FROM herald_jobs WHERE key = $1 ORDER BY id`,
        [key],
      )
    ).rows;

  /** Queues `key`, claims it (running, attempts 1), then queues the key again. */
  const runningWithQueuedTwin = async (key: string, leaseMs = 30_000): Promise<ClaimedJob> => {
    await t.db.query(`DELETE FROM herald_jobs`);
    await enqueueJob(t.db, { kind: 'k', payload: { key }, key, maxAttempts: 5 });
    const [job] = await claimJobs(t.db, 'w1', leaseMs, { leaveFreshOf: null, limit: 10 });
    assert.ok(job, 'claimed');
    await enqueueJob(t.db, { kind: 'k', payload: { key }, key, maxAttempts: 5 });
    const rows = await jobsOf(key);
    assert.deepEqual(rows.map((r) => r.state), ['running', 'queued']);
    return job;
  };

  test('failJob (a retry) merges into the queued job: one queued job, the attempt still counted', async () => {
    const job = await runningWithQueuedTwin('run:a');
    const state = await t.db.transaction((tx) => failJob(tx, job, 'w1', { error: 'boom', delayMs: 60_000, permanent: false }));
    assert.equal(state, 'queued');
    const rows = await jobsOf('run:a');
    assert.equal(rows.length, 1, 'one job for the key');
    assert.equal(rows[0]!.state, 'queued');
    assert.equal(rows[0]!.attempts, 1, 'the failed attempt counts against the merged job');
    assert.equal(rows[0]!.last_error, 'boom');
    assert.equal(rows[0]!.due, true, 'due at the earlier of the two times (the queued one asked for now)');
  });

  test('failJob for good leaves the queued job alone', async () => {
    const job = await runningWithQueuedTwin('run:b');
    const state = await t.db.transaction((tx) => failJob(tx, job, 'w1', { error: 'fatal', delayMs: 0, permanent: true }));
    assert.equal(state, 'failed');
    assert.deepEqual((await jobsOf('run:b')).map((r) => r.state), ['failed', 'queued']);
  });

  test('failJob without a twin requeues the job itself, and a lost lease changes nothing', async () => {
    await t.db.query(`DELETE FROM herald_jobs`);
    await enqueueJob(t.db, { kind: 'k', payload: {}, key: 'run:c', maxAttempts: 5 });
    const [job] = await claimJobs(t.db, 'w1', 30_000, { leaveFreshOf: null, limit: 10 });
    assert.equal(await t.db.transaction((tx) => failJob(tx, job!, 'someone-else', { error: 'x', delayMs: 0, permanent: false })), undefined);
    assert.equal(await t.db.transaction((tx) => failJob(tx, job!, 'w1', { error: 'x', delayMs: 0, permanent: false })), 'queued');
    const rows = await jobsOf('run:c');
    assert.deepEqual(rows.map((r) => [r.id, r.state, r.attempts]), [[job!.id, 'queued', 1]]);
  });

  test('deferJob merges into the queued job without counting the attempt', async () => {
    const job = await runningWithQueuedTwin('run:d');
    assert.equal(await deferJob(t.db, job, 'w1', 60_000), true);
    const rows = await jobsOf('run:d');
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.state, 'queued');
    assert.equal(rows[0]!.attempts, 0, 'a deferred attempt did not run');
    assert.equal(await deferJob(t.db, job, 'w1', 0), false, 'the lease is gone with the merged job');
  });

  test(
    'a defer that races a twin committed meanwhile (the key\'s index makes it wait, then refuse) merges on its retry',
    { skip: BACKEND === 'pglite' ? 'one connection: no concurrent transaction on PGlite' : false },
    async () => {
      await t.db.query(`DELETE FROM herald_jobs`);
      await enqueueJob(t.db, { kind: 'k', payload: {}, key: 'run:race', maxAttempts: 5 });
      const [job] = await claimJobs(t.db, 'w1', 30_000, { leaveFreshOf: null, limit: 10 });
      const other = new pg.Client({ connectionString: t.url });
      await other.connect();
      try {
        // The twin is queued by a transaction still open when the defer runs: the defer cannot
        // see it, and its own requeue waits on the key's unique index until that transaction ends.
        await other.query('BEGIN');
        await other.query(
          `INSERT INTO herald_jobs (kind, payload, key, max_attempts) VALUES ('k', '{}'::jsonb, 'run:race', 5)`,
        );
        const ctx = createJobContext(t.db, job!, 'w1', () => {});
        const deferred = ctx.defer(60_000);
        await eventually(async () => {
          const { rows } = await t.db.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
          );
          return rows[0]!.n === 1;
        });
        await other.query('COMMIT');
        await deferred;
        const rows = await jobsOf('run:race');
        assert.deepEqual(rows.map((r) => [r.state, r.attempts]), [['queued', 0]], 'merged into the twin, the attempt not counted');
      } finally {
        await other.end();
      }
    },
  );

  test('rescue of expired leases: a job whose key is queued merges, and the other expired jobs are rescued too', async () => {
    const job = await runningWithQueuedTwin('run:e', 1);
    // Two more expired jobs in the same sweep: one without a key, one keyed with no twin.
    await enqueueJob(t.db, { kind: 'k', payload: {}, maxAttempts: 5 });
    await enqueueJob(t.db, { kind: 'k', payload: {}, key: 'run:f', maxAttempts: 5 });
    const others = await claimJobs(t.db, 'w2', 1, { leaveFreshOf: null, limit: 10 });
    assert.equal(others.length, 2);
    await eventually(async () => {
      const { rows } = await t.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM herald_jobs WHERE state = 'running' AND locked_until < now()`);
      return rows[0]!.n === 3;
    });
    assert.equal(await rescueExpiredJobs(t.db), 3);
    const rows = await t.db.query<{ id: number; key: string | null; state: string; attempts: number }>(
      `SELECT id, key, state, attempts FROM herald_jobs ORDER BY id`,
    );
    assert.deepEqual(
      rows.rows.map((r) => [r.key, r.state, r.attempts]),
      [
        ['run:e', 'queued', 1],
        [null, 'queued', 1],
        ['run:f', 'queued', 1],
      ],
    );
    assert.ok(rows.rows.every((r) => r.id !== job.id), 'the expired job of run:e merged into its queued twin');
    assert.equal(await rescueExpiredJobs(t.db), 0);
  });

  test('the worker retries a job that queued its own key and then failed (it does not stay running)', async () => {
    await t.db.query(`DELETE FROM herald_jobs`);
    let calls = 0;
    const outcomes: string[] = [];
    const worker = createWorker({
      db: t.db,
      log: silentLogger,
      handlers: {
        again: {
          async run(_p, ctx) {
            calls++;
            if (calls === 1) {
              await enqueueJob(t.db, { kind: 'again', payload: {}, key: 'again:1', maxAttempts: 5 });
              throw new Error('first try fails after a resume was requested');
            }
            assert.ok(ctx.job.attempts >= 2, 'the merged job carries the failed attempt');
          },
        },
      },
      leaseMs: 30_000,
      pollMs: 20,
      maintenanceMs: 60_000,
      maintenance: [],
      onSettled: (_j, o) => outcomes.push(o),
    });
    await enqueueJob(t.db, { kind: 'again', payload: {}, key: 'again:1', maxAttempts: 5 });
    // The retry's backoff is up to 1 s (attempt 1); the merged job is due at once.
    await worker.start();
    try {
      await eventually(async () => outcomes.includes('completed'), 10_000);
      assert.deepEqual(outcomes, ['retry', 'completed']);
      assert.deepEqual((await t.db.query(`SELECT * FROM herald_jobs`)).rows, []);
    } finally {
      await worker.stop();
    }
  });
});

describe('maintenance tasks run in their own transactions', () => {
  let t: TestDb;
  before(async () => {
    t = await createTestDb();
  });
  after(async () => t?.drop());

  const dueTimeout = async (runId: string) => {
    await t.db.query(
      `INSERT INTO herald_runs (id, kind, workflow, input) VALUES ($1, 'code', 'wf', '{}'::jsonb)`,
      [runId],
    );
    await t.db.query(
      `INSERT INTO herald_steps (run_id, step_id, type, state) VALUES ($1, 'w', 'wait', 'waiting')`,
      [runId],
    );
    await t.db.query(
      `INSERT INTO herald_waiters (run_id, step_id, event_id, url, deadline_at) VALUES ($1, 'w', 'ev-' || $1, 'http://x', now() - interval '1 second')`,
      [runId],
    );
  };
  const waiterGone = async (runId: string) =>
    (await t.db.query(`SELECT 1 FROM herald_waiters WHERE run_id = $1`, [runId])).rows.length === 0;

  let keyedRuns = 0;
  const startWorker = (extra: { name: string; everyMs: number; run: () => Promise<number> }[]) => {
    const worker = createWorker({
      db: t.db,
      log: silentLogger,
      handlers: { 'keyed.work': { run: async () => void keyedRuns++ } },
      leaseMs: 30_000,
      pollMs: 20,
      maintenanceMs: 20,
      // A failing task first, then the engine's two every-tick tasks (engine.ts: maintenanceTasks).
      maintenance: [
        ...extra,
        { name: 'rescue-expired-leases', everyMs: 0, run: rescueExpiredJobs },
        { name: 'fire-wait-timeouts', everyMs: 0, run: async (tx) => (await fireDueTimeouts(tx)).length },
      ],
    });
    return worker;
  };

  test('a task that throws does not stop the wait timeouts', async () => {
    await dueTimeout('wfr_boom');
    let thrown = 0;
    const worker = startWorker([{ name: 'always-throws', everyMs: 0, run: async () => { thrown++; throw new Error('task bug'); } }]);
    await worker.start();
    try {
      await eventually(() => waiterGone('wfr_boom'), 5_000);
      assert.ok(thrown >= 1);
    } finally {
      await worker.stop();
    }
  });

  test('an expired job whose key is queued again does not stop the rescue or the wait timeouts', async () => {
    await t.db.query(`DELETE FROM herald_jobs`);
    // A job whose worker died (lease expired), and its key queued again meanwhile.
    await enqueueJob(t.db, { kind: 'keyed.work', payload: {}, key: 'run:z' });
    await t.db.query(`UPDATE herald_jobs SET state = 'running', locked_by = 'dead', locked_until = now() - interval '1 second', attempts = 1`);
    await enqueueJob(t.db, { kind: 'keyed.work', payload: {}, key: 'run:z', runAtMs: Date.now() + 3_600_000 });
    await dueTimeout('wfr_rescue');
    const worker = startWorker([]);
    await worker.start();
    try {
      await eventually(() => waiterGone('wfr_rescue'), 5_000);
      // Rescued into the queued job, which is due at once (the expired one was) and runs once.
      await eventually(async () => (await t.db.query(`SELECT 1 FROM herald_jobs WHERE kind = 'keyed.work'`)).rows.length === 0, 5_000);
      assert.equal(keyedRuns, 1);
    } finally {
      await worker.stop();
    }
  });
});
