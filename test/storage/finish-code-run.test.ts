import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { claimJobs, enqueueJob, type ClaimedJob } from '../../src/storage/queries/jobs.ts';
import { getRun, insertRun, runJobKey } from '../../src/storage/queries/runs.ts';
import { cancelRun, finishCodeRun } from '../../src/storage/queries/run-end.ts';
import { createTestDb, type TestDb } from '../helpers/db.ts';

/**
 * A code run's last execution completes its job and ends the run in one statement: the job row
 * goes only while the worker's lease holds, and the run (with its leftover work) only with it.
 */
describe('finishing a code run in one statement', () => {
  let t: TestDb;
  let n = 0;
  let runId: string;
  let job: ClaimedJob;
  before(async () => {
    t = await createTestDb();
  });
  after(() => t?.drop());

  beforeEach(async () => {
    // A run whose execution this worker claimed, and a resume queued meanwhile (same key).
    runId = `finish-${++n}`;
    await t.db.transaction((tx) =>
      insertRun(tx, { id: runId, kind: 'code', workflow: 'wf', input: { n }, eventId: null, tenantId: null, maxAttempts: 3 }),
    );
    [job] = (await claimJobs(t.db, 'w-mine', 30_000, { leaveFreshOf: null, onlyKind: 'workflow.run', limit: 1 })) as [ClaimedJob];
    assert.equal(job.payload.runId, runId);
    await enqueueJob(t.db, { kind: 'workflow.run', payload: { runId }, key: runJobKey(runId) });
  });

  const jobsOf = async () =>
    (await t.db.query<{ state: string }>(`SELECT state FROM herald_jobs WHERE key = $1 ORDER BY id`, [runJobKey(runId)])).rows.map((r) => r.state);
  const fence = (workerId = 'w-mine', attempts = job.attempts) => ({ jobId: job.id, workerId, attempts });

  test('with the lease held: the job is completed, the run ended with its result, its queued execution dropped', async () => {
    assert.deepEqual(await finishCodeRun(t.db, fence(), runId, { state: 'completed', result: { ok: n } }), { held: true, ended: true });
    const run = await getRun(t.db, runId);
    assert.equal(run?.state, 'completed');
    assert.deepEqual(run?.result, { ok: n });
    assert.ok(run?.finished_at);
    assert.deepEqual(await jobsOf(), []);
  });

  for (const [what, lost] of [
    ['another worker holds the lease', () => fence('w-other')],
    ['the lease is on a later attempt', () => fence('w-mine', job.attempts + 1)],
  ] as const) {
    test(`when ${what}, nothing is written`, async () => {
      assert.deepEqual(await finishCodeRun(t.db, lost(), runId, { state: 'completed', result: 1 }), { held: false, ended: false });
      const run = await getRun(t.db, runId);
      assert.equal(run?.state, 'running');
      assert.equal(run?.result, null);
      assert.deepEqual(await jobsOf(), ['running', 'queued']);
    });
  }

  test('a run cancelled meanwhile stays cancelled; the job is completed', async () => {
    await t.db.transaction((tx) => cancelRun(tx, runId));
    assert.deepEqual(await finishCodeRun(t.db, fence(), runId, { state: 'completed', result: 1 }), { held: true, ended: false });
    const run = await getRun(t.db, runId);
    assert.equal(run?.state, 'cancelled');
    assert.equal(run?.result, null);
    assert.deepEqual(await jobsOf(), []);
  });
});
