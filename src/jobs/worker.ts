import { randomBytes } from 'node:crypto';
import { coerceError, LeaseLostError, NonRetriableError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Db, Queryable } from '../storage/db.ts';
import { pruneKeys } from '../storage/queries/idempotency.ts';
import {
  claimJobs,
  completeJob,
  extendLeases,
  failJob,
  JOBS_CHANNEL,
  type ClaimedJob,
} from '../storage/queries/jobs.ts';
import { runAsLeader } from '../storage/queries/maintenance.ts';
import { backoffMs } from './backoff.ts';

/** Runs a job's work inside the transaction that also completes the job. */
export type JobHandler = (tx: Queryable, payload: Record<string, unknown>, job: ClaimedJob) => Promise<void>;

export interface WorkerOptions {
  db: Db;
  handlers: Record<string, JobHandler>;
  log: Logger;
  /** Jobs processed at once by this worker. */
  concurrency?: number;
  leaseMs: number;
  pollMs: number;
  idempotencyTtlHours: number;
  /** Called after each job settles (tests and metrics). */
  onSettled?: (job: ClaimedJob, outcome: 'completed' | 'retry' | 'failed' | 'lease-lost') => void;
}

export interface Worker {
  readonly id: string;
  start(): Promise<void>;
  /** Stops claiming and waits (up to `graceMs`) for in-flight jobs to settle. */
  stop(graceMs?: number): Promise<void>;
  /** Asks the worker to look for work now (used after a local enqueue). */
  wake(): void;
}

const MAINTENANCE_EVERY_MS = 60_000;

export function createWorker(opts: WorkerOptions): Worker {
  const id = `w-${process.pid}-${randomBytes(4).toString('hex')}`;
  const concurrency = opts.concurrency ?? 8;
  const inflight = new Map<number, Promise<void>>();
  let running = false;
  let looping = false;
  let wakeAgain = false;
  const timers: NodeJS.Timeout[] = [];
  let unlisten: (() => Promise<void>) | undefined;
  const log = opts.log.child({ worker: id });

  async function runJob(job: ClaimedJob): Promise<void> {
    const handler = opts.handlers[job.kind];
    try {
      if (!handler) throw new NonRetriableError(`no handler for job kind "${job.kind}"`);
      await opts.db.transaction(async (tx) => {
        await handler(tx, job.payload, job);
        // Fencing: the work commits only if this worker still holds this attempt's lease.
        if (!(await completeJob(tx, job, id))) throw new LeaseLostError(`lease on job ${job.id} was lost`);
      });
      opts.onSettled?.(job, 'completed');
    } catch (raw) {
      const err = coerceError(raw);
      if (err instanceof LeaseLostError) {
        log.warn({ jobId: job.id, kind: job.kind }, 'lease lost; another worker owns the job now');
        opts.onSettled?.(job, 'lease-lost');
        return;
      }
      const permanent = err instanceof NonRetriableError || job.attempts >= job.max_attempts;
      const delayMs = backoffMs(job.attempts);
      const ok = await failJob(opts.db, job, id, { error: err.message, delayMs, permanent }).catch((e) => {
        log.error({ jobId: job.id, err: coerceError(e).message }, 'could not record job failure; the lease will expire');
        return false;
      });
      log[permanent ? 'error' : 'warn'](
        { jobId: job.id, kind: job.kind, attempt: job.attempts, err: err.message, retryInMs: permanent ? null : delayMs },
        permanent ? 'job failed permanently' : 'job failed; will retry',
      );
      if (ok) opts.onSettled?.(job, permanent ? 'failed' : 'retry');
    }
  }

  async function loop(): Promise<void> {
    if (looping) {
      wakeAgain = true;
      return;
    }
    looping = true;
    try {
      do {
        wakeAgain = false;
        while (running && inflight.size < concurrency) {
          const jobs = await claimJobs(opts.db, id, concurrency - inflight.size, opts.leaseMs);
          for (const job of jobs) {
            const p = runJob(job).finally(() => {
              inflight.delete(job.id);
              if (running) void loop();
            });
            inflight.set(job.id, p);
          }
          if (jobs.length === 0) break;
        }
      } while (wakeAgain && running);
    } catch (err) {
      log.error({ err: coerceError(err).message }, 'claiming jobs failed; retrying on the next poll');
    } finally {
      looping = false;
    }
  }

  async function maintain(): Promise<void> {
    try {
      await runAsLeader(opts.db, 'herald.maintenance', async (tx) => {
        const pruned = await pruneKeys(tx, opts.idempotencyTtlHours);
        if (pruned > 0) log.info({ pruned }, 'pruned expired idempotency keys');
      });
    } catch (err) {
      log.warn({ err: coerceError(err).message }, 'maintenance failed');
    }
  }

  return {
    id,
    async start() {
      running = true;
      // LISTEN only wakes workers early; the poll below finds work even if a NOTIFY is missed.
      unlisten = await opts.db.listen(JOBS_CHANNEL, () => void loop());
      timers.push(setInterval(() => void loop(), opts.pollMs));
      timers.push(
        setInterval(() => {
          const ids = [...inflight.keys()];
          if (ids.length) extendLeases(opts.db, ids, id, opts.leaseMs).catch(() => {});
        }, Math.max(50, Math.floor(opts.leaseMs / 3))),
      );
      timers.push(setInterval(() => void maintain(), MAINTENANCE_EVERY_MS));
      for (const t of timers) t.unref();
      void loop();
    },
    async stop(graceMs = 10_000) {
      running = false;
      for (const t of timers) clearInterval(t);
      timers.length = 0;
      await unlisten?.();
      const all = Promise.allSettled([...inflight.values()]);
      await Promise.race([all, new Promise((r) => setTimeout(r, graceMs).unref())]);
    },
    wake: () => void loop(),
  };
}
