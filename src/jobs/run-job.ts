/**
 * Running one claimed job, start to end: its handler runs with a JobContext (job-context.ts), then
 * the job is completed (unless the handler's writes did so), or its failure recorded: requeued
 * with a backoff, or failed for good (with the handler's onFailed in that transaction). A lease
 * found lost ends the run quietly: the job is another worker's now. Nothing here knows about
 * slots, lanes or polling (worker.ts, batch-lanes.ts): a job in, its outcome out.
 */
import { coerceError, LeaseLostError, NonRetriableError, RetryAfterError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Db } from '../storage/db.ts';
import { completeJob, failJob, retryingTwinRace, type ClaimedJob } from '../storage/queries/jobs.ts';
import { backoffMs } from './backoff.ts';
import { createJobContext, leaseLost, type JobHandler } from './job-context.ts';

/** How a job's run ended, as WorkerOptions.onSettled hears it. */
export type JobOutcome = 'completed' | 'retry' | 'failed' | 'lease-lost';

export interface JobRunnerOptions {
  db: Db;
  handlers: Record<string, JobHandler>;
  /** The worker whose lease the jobs are claimed under. */
  workerId: string;
  log: Logger;
  onSettled?: (job: ClaimedJob, outcome: JobOutcome) => void;
}

/** Returns the function that runs one job claimed (with a lease) by `workerId`. It never throws. */
export function createJobRunner(opts: JobRunnerOptions): (job: ClaimedJob) => Promise<void> {
  const { db, log, workerId } = opts;

  return async function runJob(job: ClaimedJob): Promise<void> {
    const handler = opts.handlers[job.kind];
    let completed = false;
    const ctx = createJobContext(db, job, workerId, () => (completed = true));
    try {
      if (!handler) throw new NonRetriableError(`no handler for job kind "${job.kind}"`);
      if (job.attempts > job.max_attempts) {
        throw new NonRetriableError(`gave up after ${job.max_attempts} attempts (the last ones lost their lease)`);
      }
      await handler.run(job.payload, ctx);
      if (!completed && !(await db.transaction((tx) => completeJob(tx, job, workerId)))) throw leaseLost(job);
      opts.onSettled?.(job, 'completed');
    } catch (thrown) {
      const err = coerceError(thrown);
      if (err instanceof LeaseLostError) {
        log.warn({ jobId: job.id, kind: job.kind }, 'lease lost; another worker owns the job now');
        opts.onSettled?.(job, 'lease-lost');
        return;
      }
      const permanent = err instanceof NonRetriableError;
      const delayMs = err instanceof RetryAfterError ? err.delayMs : backoffMs(job.attempts);
      const state = await recordFailure(job, handler, err, { delayMs, permanent });
      log[state === 'failed' ? 'error' : 'warn'](
        { jobId: job.id, kind: job.kind, attempt: job.attempts, err: err.message, retryInMs: state === 'queued' ? delayMs : null },
        state === 'failed' ? 'job failed permanently' : 'job failed; will retry',
      );
      if (state) opts.onSettled?.(job, state === 'failed' ? 'failed' : 'retry');
    }
  };

  /**
   * Requeues the job or fails it for good, in one transaction with the handler's onFailed.
   * Undefined when that could not be recorded (the lease then expires and the rescue requeues it).
   */
  async function recordFailure(
    job: ClaimedJob,
    handler: JobHandler | undefined,
    err: Error,
    how: { delayMs: number; permanent: boolean },
  ): Promise<'queued' | 'failed' | undefined> {
    try {
      return await retryingTwinRace(() =>
        db.transaction(async (tx) => {
          const s = await failJob(tx, job, workerId, { error: err.message, ...how });
          if (s === 'failed') await handler?.onFailed?.(tx, job.payload, err);
          return s;
        }),
      );
    } catch (e) {
      // The lease will expire and the rescue requeues the job.
      log.error({ jobId: job.id, err: coerceError(e).message }, 'could not record job failure; its lease will expire');
      return undefined;
    }
  }
}
