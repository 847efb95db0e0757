/**
 * The contract between the worker and a job's handler: what a handler is (JobHandler) and what it
 * is given while it runs (JobContext). Every write a context offers lands only while this worker
 * still holds the job's lease, so a worker whose lease expired (another worker owns the job now)
 * cannot write; that is the one rule this file keeps. Running the job around it (completing,
 * failing, retrying) is run-job.ts's.
 */
import { LeaseLostError } from '../errors.ts';
import type { Db, Queryable } from '../storage/db.ts';
import { withFirstStatement } from '../storage/first-statement.ts';
import {
  completeJob,
  completeJobStatement,
  deferJob,
  retryingTwinRace,
  fenceOf,
  holdsLeaseStatement,
  type ClaimedJob,
  type JobFence,
} from '../storage/queries/jobs.ts';

export interface JobContext {
  job: ClaimedJob;
  /**
   * Runs `fn` in a transaction that commits only while this worker still holds the job's lease
   * (the job row is locked and checked first), so a worker whose lease expired cannot write.
   * With `complete: true` (or a predicate on fn's result that returns true) the job is also
   * completed in that transaction.
   */
  commit<T>(fn: (tx: Queryable) => Promise<T>, opts?: { complete?: boolean | ((result: T) => boolean) }): Promise<T>;
  /**
   * Completes the job with one statement of the handler's, run as its own transaction (no BEGIN
   * or COMMIT round trip): `write` gets the job's fence, deletes the job row only while it holds
   * (storage/queries/jobs.ts: fencedJob) with every other write guarded on that deletion, and
   * says whether it held. If it did not, the lease was lost and nothing may have been written.
   */
  completeWith<T>(write: (db: Queryable, fence: JobFence) => Promise<{ held: boolean } & T>): Promise<T>;
  /**
   * A write of the handler's, one statement run as its own transaction, that lands only while this
   * worker holds the lease: `write` gets the job's fence, guards its writes on it (fencedJob) and
   * says whether it held. The job stays running. Throws LeaseLostError if it did not hold.
   */
  fenced<T>(write: (db: Queryable, fence: JobFence) => Promise<{ held: boolean } & T>): Promise<T>;
  /** Returns the job to the queue for `delayMs` without counting this attempt (it did not run). */
  defer(delayMs: number): Promise<void>;
}

export interface JobHandler {
  /** Does the job's work. Long work (user code, network) runs outside any transaction. */
  run(payload: Record<string, unknown>, ctx: JobContext): Promise<void>;
  /** Runs in the transaction that marks the job failed for good (e.g. to fail its workflow run). */
  onFailed?(tx: Queryable, payload: Record<string, unknown>, error: Error): Promise<void>;
  /**
   * Optional batch form of a transactional handler: many jobs of this kind taken together, all
   * their work in the one transaction that takes them off the queue (see takeJobs). If it throws,
   * the transaction rolls back and the worker runs each of those jobs alone through `run`, so a bad
   * job fails on its own.
   */
  batch?(tx: Queryable, payloads: Record<string, unknown>[]): Promise<void>;
}

/** The error of a write that found the job no longer this worker's. */
export const leaseLost = (job: ClaimedJob) => new LeaseLostError(`lease on job ${job.id} was lost`);

/**
 * The context of one run of `job` by worker `workerId`. `onCompleted` is called when one of its
 * writes took the job off the queue (completed or deferred it), so the runner does not complete it
 * again.
 */
export function createJobContext(db: Db, job: ClaimedJob, workerId: string, onCompleted: () => void): JobContext {
  return {
    job,
    commit: (fn, o) =>
      db.transaction(async (transaction) => {
        // The lease check travels with fn's first statement and runs before it. Completing up
        // front both checks the lease and locks the job (one statement, not two); otherwise the
        // job row is locked. If the lease turns out lost, fn's writes roll back with the
        // transaction; if fn throws, the rollback brings the job back.
        const upfront = o?.complete === true;
        const { tx, firstResult } = withFirstStatement(transaction, upfront ? completeJobStatement(job, workerId) : holdsLeaseStatement(job, workerId));
        const leaseHeld = async () => {
          const r = await firstResult();
          return upfront ? r.rowCount === 1 : r.rows.length === 1;
        };
        let result;
        try {
          result = await fn(tx);
        } catch (err) {
          // A failure of work that was no longer this worker's is reported as that.
          if (!(await leaseHeld().catch(() => true))) throw leaseLost(job);
          throw err;
        }
        if (!(await leaseHeld())) throw leaseLost(job);
        if (upfront) onCompleted();
        else if (typeof o?.complete === 'function' && o.complete(result)) {
          await completeJob(tx, job, workerId);
          onCompleted();
        }
        return result;
      }),
    async completeWith(write) {
      const out = await write(db, fenceOf(job, workerId));
      if (!out.held) throw leaseLost(job);
      onCompleted();
      return out;
    },
    async fenced(write) {
      const out = await write(db, fenceOf(job, workerId));
      if (!out.held) throw leaseLost(job);
      return out;
    },
    async defer(delayMs) {
      if (!(await retryingTwinRace(() => deferJob(db, job, workerId, delayMs)))) throw leaseLost(job);
      onCompleted();
    },
  };
}
