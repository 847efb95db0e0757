/**
 * The worker's lifecycle: start (LISTEN for wake-ups, the jobs queued before the start, the poll,
 * the lease heartbeat, leader maintenance), the claim loop that keeps its slots busy with single
 * jobs, backing off while the database fails, and stop. What it runs lives beside it: one job,
 * with the context its handler gets (run-job.ts, job-context.ts), and the batchable kind's lanes
 * (batch-lanes.ts), which share the worker's slots with the claim loop.
 */
import { randomBytes } from 'node:crypto';
import { coerceError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Db } from '../storage/db.ts';
import { claimJobs, extendLeases, BATCH_JOBS_CHANNEL, JOBS_CHANNEL, type ClaimedJob } from '../storage/queries/jobs.ts';
import { createBatchLanes, type Slots } from './batch-lanes.ts';
import { createDbBackoff } from './db-backoff.ts';
import type { JobHandler } from './job-context.ts';
import { createMaintenance, type MaintenanceTask } from './maintenance.ts';
import { createJobRunner, type JobOutcome } from './run-job.ts';

export type { JobContext, JobHandler } from './job-context.ts';

export interface WorkerOptions {
  db: Db;
  handlers: Record<string, JobHandler>;
  log: Logger;
  /** Jobs processed at once by this worker (a batch counts as one). */
  concurrency?: number;
  /** Most jobs of a batchable kind claimed and committed together. */
  batchSize?: number;
  leaseMs: number;
  pollMs: number;
  maintenanceMs: number;
  /** Leader-only periodic work (lease rescue, due timers, pruning). */
  maintenance: MaintenanceTask[];
  /** Called after each job settles (tests and metrics). */
  onSettled?: (job: ClaimedJob, outcome: JobOutcome) => void;
}

export interface Worker {
  readonly id: string;
  start(): Promise<void>;
  /** Stops claiming and waits (up to `graceMs`) for in-flight jobs to settle. */
  stop(graceMs?: number): Promise<void>;
  /** Asks the worker to look for work now (used after a local enqueue). */
  wake(): void;
}

/** The longest the claim loop and the batch lanes wait between tries while the database fails. */
const DB_RETRY_CAP_MS = 10_000;

export function createWorker(opts: WorkerOptions): Worker {
  const id = `w-${process.pid}-${randomBytes(4).toString('hex')}`;
  const concurrency = opts.concurrency ?? 8;
  const batchKinds = Object.keys(opts.handlers).filter((k) => opts.handlers[k]!.batch);
  // The batch lane claims one kind through its own index (see claimJobs); one is all herald has.
  if (batchKinds.length > 1) throw new Error(`one batchable job kind is supported, got ${batchKinds.join(', ')}`);
  const batchKind = batchKinds[0] ?? null;
  /** Leases held (for the heartbeat): every job claimed to run alone. */
  const inflight = new Map<number, Promise<void>>();
  const slots: Slots = { used: 0, size: concurrency };
  let running = false;
  let looping = false;
  let wakeAgain = false;
  /** Whether the last claim may have left due jobs behind (it filled a lane or every slot). */
  let backlog = false;
  /** The claim loop in progress, if any: stop() waits for it, so no job starts unobserved. */
  let claiming: Promise<void> | undefined;
  const timers: NodeJS.Timeout[] = [];
  const unlisten: (() => Promise<void>)[] = [];
  const log = opts.log.child({ worker: id });
  const maintenance = createMaintenance(opts.db, opts.maintenance, log, opts.maintenanceMs);
  /**
   * When claims or takes fail (the database is unreachable, or anything else), the claim loop and
   * the batch lanes wait a growing, jittered delay before touching the database again, then try
   * by themselves (see db-backoff.ts); leases, heartbeats and maintenance carry on as they are.
   */
  const dbBackoff = createDbBackoff({
    baseMs: opts.pollMs,
    capMs: Math.max(opts.pollMs, DB_RETRY_CAP_MS),
    log,
    onRetry: () => {
      void loop();
      lanes?.start();
    },
  });
  const runJob = createJobRunner({ db: opts.db, handlers: opts.handlers, workerId: id, log, onSettled: opts.onSettled });

  /** Runs a job claimed with a lease inside a batch lane; the heartbeat extends its lease meanwhile. */
  async function runLeased(job: ClaimedJob): Promise<void> {
    const done = runJob(job);
    inflight.set(job.id, done);
    await done.finally(() => inflight.delete(job.id));
  }

  const lanes =
    batchKind === null
      ? null
      : createBatchLanes({
          db: opts.db,
          kind: batchKind,
          handler: opts.handlers[batchKind]!,
          workerId: id,
          leaseMs: opts.leaseMs,
          batchSize: opts.batchSize ?? 100,
          // Two batches at once keep two connections (both cores of a small box) busy.
          maxLanes: Math.min(2, concurrency),
          slots,
          isRunning: () => running,
          dbBackoff,
          log,
          runLeased,
          onSettled: opts.onSettled,
          onSlotFreed: () => {
            if (running && backlog) void loop();
          },
        });

  function launch(job: ClaimedJob, work: Promise<void>): void {
    slots.used++;
    const done = work.finally(() => {
      slots.used--;
      inflight.delete(job.id);
      // Claim again when work may be waiting for this slot (the last claim filled every slot), or
      // when a keyed job ended (the next job with its key is claimable only now). Otherwise new
      // work announces itself (wake-up) or the poll finds it.
      if (running && (backlog || job.key !== null)) void loop();
    });
    inflight.set(job.id, done);
  }

  function loop(): Promise<void> {
    if (looping) {
      wakeAgain = true;
      return claiming ?? Promise.resolve();
    }
    looping = true;
    claiming = claimLoop();
    return claiming;
  }

  /** Claims single jobs while slots are free. */
  async function claimLoop(): Promise<void> {
    try {
      // Backing off after failures: the retry runs the loop (db-backoff.ts).
      if (dbBackoff.waiting) return;
      do {
        wakeAgain = false;
        while (running && slots.used < concurrency) {
          // Leave a slot for a batch lane that is not running yet.
          const limit = Math.max(0, concurrency - slots.used - (lanes?.laneFree ? 1 : 0));
          if (limit === 0) break;
          const jobs = await claimJobs(opts.db, id, opts.leaseMs, { leaveFreshOf: batchKind, limit });
          dbBackoff.succeeded();
          for (const job of jobs) launch(job, runJob(job));
          // A claim that came back short means nothing more is due: stop until woken. A full one
          // may have left jobs behind.
          backlog = jobs.length === limit || slots.used >= concurrency;
          if (jobs.length < limit) break;
        }
        // Woken with every slot taken: the work that woke us waits for the next free slot.
        if (slots.used >= concurrency) backlog = true;
      } while (wakeAgain && running);
    } catch (err) {
      dbBackoff.failed('claim jobs', err);
    } finally {
      looping = false;
      claiming = undefined;
    }
  }

  return {
    id,
    async start() {
      running = true;
      // LISTEN only wakes workers early; the poll below finds work even if a NOTIFY is missed.
      unlisten.push(await opts.db.listen(JOBS_CHANNEL, () => void loop()));
      unlisten.push(await opts.db.listen(BATCH_JOBS_CHANNEL, () => lanes?.onWork()));
      if (lanes) {
        await lanes.runQueuedAlone().catch((err) => {
          log.error({ err: coerceError(err).message }, 'could not look at the queue at start; its lanes take the batch jobs');
        });
      }
      // The poll looks for both kinds of work (a lane whose take finds nothing costs three round trips).
      timers.push(
        setInterval(() => {
          void loop();
          lanes?.start();
        }, opts.pollMs),
      );
      timers.push(
        setInterval(() => {
          const ids = [...inflight.keys()];
          if (ids.length) extendLeases(opts.db, ids, id, opts.leaseMs).catch(() => {});
        }, Math.max(50, Math.floor(opts.leaseMs / 3))),
      );
      timers.push(setInterval(() => void maintenance.tick(), opts.maintenanceMs));
      for (const t of timers) t.unref();
      void loop();
      lanes?.start();
    },
    async stop(graceMs = 10_000) {
      running = false;
      dbBackoff.stop();
      for (const t of timers) clearInterval(t);
      timers.length = 0;
      for (const stop of unlisten.splice(0)) await stop();
      // A claim already in flight may still start jobs: let it finish, then wait for all of them.
      await claiming?.catch(() => {});
      const all = Promise.allSettled([...inflight.values(), ...(lanes?.tasks() ?? []), maintenance.idle()]);
      await Promise.race([all, new Promise((r) => setTimeout(r, graceMs).unref())]);
    },
    wake: () => void loop(),
  };
}
