import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createWorker, type JobContext } from '../../src/jobs/worker.ts';
import { silentLogger } from '../../src/log.ts';
import { enqueueJob, fencedJob, fenceValues, type ClaimedJob } from '../../src/storage/queries/jobs.ts';
import { createTestDb, type TestDb } from '../helpers/db.ts';
import { eventually } from '../helpers/herald.ts';

/**
 * A job's transactional writes (JobContext.commit) land only while its worker holds the lease. The
 * lease check travels with the commit's first statement (no round trip of its own) and runs
 * before it: these tests take the lease away mid-job and check that nothing the commit wrote
 * stays, and that the check really runs first.
 */
describe('a job commit is fenced by its lease', () => {
  let t: TestDb;
  type Body = (ctx: JobContext) => Promise<void>;
  let body: Body = async () => {};
  const outcomes: string[] = [];
  let worker: ReturnType<typeof createWorker>;

  before(async () => {
    t = await createTestDb();
    await t.db.exec(`CREATE TABLE commit_marks (job_id bigint, note text)`);
    worker = createWorker({
      db: t.db,
      log: silentLogger,
      handlers: { 'test.commit': { run: (_payload, ctx) => body(ctx) } },
      leaseMs: 30_000,
      pollMs: 20,
      maintenanceMs: 60_000,
      maintenance: [],
      onSettled: (_job, outcome) => outcomes.push(outcome),
    });
    await worker.start();
  });
  after(async () => {
    await worker?.stop();
    await t?.drop();
  });

  /** Runs `fn` as the body of one job and returns how that job settled. */
  const runJob = async (fn: Body): Promise<{ outcome: string; job: ClaimedJob }> => {
    let seen: ClaimedJob | undefined;
    body = async (ctx) => {
      seen = ctx.job;
      await fn(ctx);
    };
    const before = outcomes.length;
    await enqueueJob(t.db, { kind: 'test.commit', payload: {}, maxAttempts: 1 });
    worker.wake();
    await eventually(async () => outcomes.length > before);
    return { outcome: outcomes[before]!, job: seen! };
  };
  const marks = async (jobId: number) =>
    (await t.db.query<{ note: string }>(`SELECT note FROM commit_marks WHERE job_id = $1 ORDER BY note`, [jobId])).rows.map((r) => r.note);
  const stealLease = (job: ClaimedJob) => t.db.query(`UPDATE herald_jobs SET locked_by = 'another-worker' WHERE id = $1`, [job.id]);
  const jobRow = async (id: number) => (await t.db.query(`SELECT state FROM herald_jobs WHERE id = $1`, [id])).rows[0];

  for (const complete of [true, false]) {
    test(`with the lease held, the writes commit${complete ? ' and the job completes in the same transaction' : ''}`, async () => {
      const { outcome, job } = await runJob(async (ctx) => {
        await ctx.commit(async (tx) => {
          await tx.query(`INSERT INTO commit_marks VALUES ($1, 'a')`, [ctx.job.id]);
          await tx.query(`INSERT INTO commit_marks VALUES ($1, 'b')`, [ctx.job.id]);
        }, { complete });
      });
      assert.equal(outcome, 'completed');
      assert.deepEqual(await marks(job.id), ['a', 'b']);
      assert.equal(await jobRow(job.id), undefined);
    });

    test(`with the lease lost, nothing the commit wrote stays (complete: ${complete})`, async () => {
      const { outcome, job } = await runJob(async (ctx) => {
        await stealLease(ctx.job);
        await ctx.commit((tx) => tx.query(`INSERT INTO commit_marks VALUES ($1, 'late')`, [ctx.job.id]), { complete });
      });
      assert.equal(outcome, 'lease-lost');
      assert.deepEqual(await marks(job.id), []);
      // The job is the other worker's: still there, still running.
      assert.deepEqual(await jobRow(job.id), { state: 'running' });
    });

    test(`with the lease lost, a failing commit reports the lost lease, not its own error (complete: ${complete})`, async () => {
      const { outcome, job } = await runJob(async (ctx) => {
        await stealLease(ctx.job);
        await ctx.commit(async (tx) => {
          await tx.query(`INSERT INTO commit_marks VALUES ($1, 'late')`, [ctx.job.id]);
          throw new Error('the work failed');
        }, { complete });
      });
      assert.equal(outcome, 'lease-lost');
      assert.deepEqual(await marks(job.id), []);
    });
  }

  // completeWith: the handler's own statement completes the job (a code run's finish).
  const finishInOne = async (ctx: JobContext): Promise<void> => {
    await ctx.completeWith(async (db, fence) => {
      const { rows } = await db.query<{ held: boolean }>(
        `WITH done AS (DELETE FROM herald_jobs WHERE ${fencedJob(2)} RETURNING 1),
         mark AS (INSERT INTO commit_marks SELECT $1, 'finished' WHERE EXISTS (SELECT 1 FROM done))
         SELECT EXISTS (SELECT 1 FROM done) AS held`,
        [ctx.job.id, ...fenceValues(fence)],
      );
      return rows[0]!;
    });
  };

  test('a job completed by its own fenced statement settles as completed', async () => {
    const { outcome, job } = await runJob(finishInOne);
    assert.equal(outcome, 'completed');
    assert.deepEqual(await marks(job.id), ['finished']);
    assert.equal(await jobRow(job.id), undefined);
  });

  test('a fenced statement that finds the lease lost settles as lease-lost and writes nothing', async () => {
    const { outcome, job } = await runJob(async (ctx) => {
      await stealLease(ctx.job);
      await finishInOne(ctx);
    });
    assert.equal(outcome, 'lease-lost');
    assert.deepEqual(await marks(job.id), []);
    assert.deepEqual(await jobRow(job.id), { state: 'running' });
  });

  test("the lease check runs before the commit's first statement", async () => {
    const seen: unknown[] = [];
    const { outcome } = await runJob(async (ctx) => {
      // Completing up front deletes the job row first: the first statement no longer sees it.
      await ctx.commit(async (tx) => {
        seen.push((await tx.query(`SELECT state FROM herald_jobs WHERE id = $1`, [ctx.job.id])).rows.length);
      }, { complete: true });
    });
    assert.equal(outcome, 'completed');
    assert.deepEqual(seen, [0]);
  });

  test('a commit that sends no statement still checks the lease', async () => {
    const { outcome, job } = await runJob(async (ctx) => {
      await stealLease(ctx.job);
      await ctx.commit(async () => {}, { complete: true });
    });
    assert.equal(outcome, 'lease-lost');
    assert.deepEqual(await jobRow(job.id), { state: 'running' });
  });
});
