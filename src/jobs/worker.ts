import { randomBytes } from 'node:crypto';
import { coerceError, LeaseLostError, NonRetriableError, RetryAfterError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Db, Queryable } from '../storage/db.ts';
import { leadWith } from '../storage/leading-statement.ts';
import {
  claimJobs,
  claimJobsById,
  completeJob,
  completeJobStatement,
  deferJob,
  extendLeases,
  failJob,
  fenceOf,
  holdsLeaseStatement,
  takeJobs,
  newestJobId,
  BATCH_JOBS_CHANNEL,
  BATCH_TRANSACTION_SETTINGS,
  JOBS_CHANNEL,
  type ClaimedJob,
  type JobFence,
} from '../storage/queries/jobs.ts';
import { backoffMs } from './backoff.ts';
import { createDbBackoff } from './db-backoff.ts';
import { createMaintenance, type MaintenanceTask } from './maintenance.ts';

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

/** The longest the claim loop and the batch lanes wait between tries while the database fails. */
const DB_RETRY_CAP_MS = 10_000;

const isUniqueViolation = (err: unknown) => (err as { code?: unknown } | null)?.code === '23505';

export function createWorker(opts: WorkerOptions): Worker {
  const id = `w-${process.pid}-${randomBytes(4).toString('hex')}`;
  const concurrency = opts.concurrency ?? 8;
  const batchSize = opts.batchSize ?? 100;
  const batchKinds = Object.keys(opts.handlers).filter((k) => opts.handlers[k]!.batch);
  // The batch lane claims one kind through its own index (see claimJobs); one is all herald has.
  if (batchKinds.length > 1) throw new Error(`one batchable job kind is supported, got ${batchKinds.join(', ')}`);
  const batchKind = batchKinds[0] ?? null;
  // Two batches at once keep two connections (both cores of a small box) busy.
  const maxBatches = Math.min(2, concurrency);
  /** Leases held (for the heartbeat): every job claimed to run alone. */
  const inflight = new Map<number, Promise<void>>();
  /** Batch lanes running (stop() waits for them; their jobs hold no lease). */
  const batchTasks = new Set<Promise<void>>();
  let slots = 0;
  let batches = 0;
  let running = false;
  let looping = false;
  let wakeAgain = false;
  /** Batches running that took more than one job: the worker is under load (see onBatchWork). */
  let loadedBatches = 0;
  /** While the jobs queued before start() run one at a time (see runQueuedAlone). */
  let runningQueuedAlone = false;
  /** Batch lanes whose take is in flight: work announced meanwhile may miss it (see onBatchWork). */
  let takingLanes = 0;
  /** Batchable work announced while a loaded batch was running: claimed when a batch ends. */
  let batchWorkWaiting = false;
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
      startBatches();
    },
  });

  async function runJob(job: ClaimedJob): Promise<void> {
    const handler = opts.handlers[job.kind];
    let completed = false;
    const lost = () => new LeaseLostError(`lease on job ${job.id} was lost`);
    const ctx: JobContext = {
      job,
      commit: (fn, o) =>
        opts.db.transaction(async (raw) => {
          // The lease check travels with fn's first statement and runs before it. Completing up
          // front both checks the lease and locks the job (one statement, not two); otherwise the
          // job row is locked. If the lease turns out lost, fn's writes roll back with the
          // transaction; if fn throws, the rollback brings the job back.
          const upfront = o?.complete === true;
          const { tx, lead } = leadWith(raw, upfront ? completeJobStatement(job, id) : holdsLeaseStatement(job, id));
          const leaseHeld = async () => {
            const r = await lead();
            return upfront ? r.rowCount === 1 : r.rows.length === 1;
          };
          let result;
          try {
            result = await fn(tx);
          } catch (err) {
            // A failure of work that was no longer this worker's is reported as that.
            if (!(await leaseHeld().catch(() => true))) throw lost();
            throw err;
          }
          if (!(await leaseHeld())) throw lost();
          if (upfront) completed = true;
          else if (typeof o?.complete === 'function' && o.complete(result)) {
            await completeJob(tx, job, id);
            completed = true;
          }
          return result;
        }),
      async completeWith(write) {
        const out = await write(opts.db, fenceOf(job, id));
        if (!out.held) throw lost();
        completed = true;
        return out;
      },
      async fenced(write) {
        const out = await write(opts.db, fenceOf(job, id));
        if (!out.held) throw lost();
        return out;
      },
      async defer(delayMs) {
        if (!(await deferJob(opts.db, job, id, delayMs))) throw lost();
        completed = true;
      },
    };
    try {
      if (!handler) throw new NonRetriableError(`no handler for job kind "${job.kind}"`);
      if (job.attempts > job.max_attempts) {
        throw new NonRetriableError(`gave up after ${job.max_attempts} attempts (the last ones lost their lease)`);
      }
      await handler.run(job.payload, ctx);
      if (!completed && !(await opts.db.transaction((tx) => completeJob(tx, job, id)))) throw lost();
      opts.onSettled?.(job, 'completed');
    } catch (raw) {
      const err = coerceError(raw);
      if (err instanceof LeaseLostError) {
        log.warn({ jobId: job.id, kind: job.kind }, 'lease lost; another worker owns the job now');
        opts.onSettled?.(job, 'lease-lost');
        return;
      }
      const permanent = err instanceof NonRetriableError;
      const delayMs = err instanceof RetryAfterError ? err.delayMs : backoffMs(job.attempts);
      let state: 'queued' | 'failed' | undefined;
      for (let attempt = 1; ; attempt++) {
        try {
          state = await opts.db.transaction(async (tx) => {
            const s = await failJob(tx, job, id, { error: err.message, delayMs, permanent });
            if (s === 'failed') await handler?.onFailed?.(tx, job.payload, err);
            return s;
          });
          break;
        } catch (e) {
          // A job of this key queued by a transaction that committed while this one ran: the
          // retry sees it and merges into it (failJob). Anything else: the lease will expire and
          // the rescue requeues the job.
          if (attempt < 3 && isUniqueViolation(e)) continue;
          log.error({ jobId: job.id, err: coerceError(e).message }, 'could not record job failure; its lease will expire');
          break;
        }
      }
      log[state === 'failed' ? 'error' : 'warn'](
        { jobId: job.id, kind: job.kind, attempt: job.attempts, err: err.message, retryInMs: state === 'queued' ? delayMs : null },
        state === 'failed' ? 'job failed permanently' : 'job failed; will retry',
      );
      if (state) opts.onSettled?.(job, state === 'failed' ? 'failed' : 'retry');
    }
  }

  /** Runs a job claimed with a lease inside a batch lane; the heartbeat extends its lease meanwhile. */
  async function runLeased(job: ClaimedJob): Promise<void> {
    const done = runJob(job);
    inflight.set(job.id, done);
    await done.finally(() => inflight.delete(job.id));
  }

  /**
   * One batch lane's turn: a transaction that takes up to batchSize due jobs of the batch kind
   * (takeJobs: the row locks are the lease), runs the handler's batch over them and commits, which
   * completes them. If anything fails the rollback requeues them untouched, and they are claimed
   * with leases and run one by one, each with its own error, retry and failure record. Returns how
   * many jobs it took.
   */
  async function runBatchLane(kind: string): Promise<number> {
    const handler = opts.handlers[kind]!;
    let taken: ClaimedJob[] = [];
    let loaded = false;
    takingLanes++;
    let taking = true;
    const tookOff = () => {
      if (taking) takingLanes--;
      taking = false;
    };
    try {
      await opts.db.transaction(
        async (tx) => {
          taken = await takeJobs(tx, kind, batchSize);
          tookOff();
          if (taken.length > 1) {
            loaded = true;
            loadedBatches++;
          } else if (batchWorkWaiting) {
            // Announced while this lane was taking, and this lane is not under load: a free lane
            // takes it now rather than when this one ends.
            batchWorkWaiting = false;
            startBatches();
          }
          if (taken.length) await handler.batch!(tx, taken.map((j) => j.payload));
        },
        { begin: BATCH_TRANSACTION_SETTINGS },
      );
      dbBackoff.succeeded();
      for (const job of taken) opts.onSettled?.(job, 'completed');
      return taken.length;
    } catch (err) {
      if (taken.length === 0) {
        dbBackoff.failed('take a batch', err);
        return 0;
      }
      log.warn({ kind, jobs: taken.length, err: coerceError(err).message }, 'batch failed; running its jobs one by one');
      const claimed = await claimJobsById(opts.db, id, opts.leaseMs, taken.map((j) => j.id)).then(
        (jobs) => {
          dbBackoff.succeeded();
          return jobs;
        },
        (e) => {
          // Rolled back (their takes with it): they are queued, for a lane or the poll to take.
          dbBackoff.failed('claim the jobs of a failed batch', e);
          return [] as ClaimedJob[];
        },
      );
      for (const job of claimed) await runLeased(job);
      return taken.length;
    } finally {
      tookOff();
      if (loaded) loadedBatches--;
    }
  }

  /**
   * At start, the batch kind's jobs already queued are first claimed with leases and run one at a
   * time (up to batchSize of them, oldest first) in a batch lane. A batch's take leaves no trace
   * when its process dies, so a job whose work kills the process (a rule that exhausts memory or
   * spins) would otherwise be retaken after every restart without end, holding up every other
   * event. This way each restart counts an attempt for the one job that was running when the
   * process died, and such a job fails for good when its attempts run out; its neighbours lose
   * nothing. Jobs queued after the start are the lanes' as usual.
   */
  async function runQueuedAlone(kind: string): Promise<void> {
    const maxId = await newestJobId(opts.db);
    if (maxId === 0) return;
    // No take lane runs meanwhile: one could take the job that killed the last process.
    runningQueuedAlone = true;
    launchBatch(async () => {
      try {
        let ran = 0;
        while (running && ran < batchSize) {
          const [job] = await claimJobs(opts.db, id, opts.leaseMs, { freshExcept: null, onlyKind: kind, maxId, limit: 1 });
          if (!job) break;
          await runLeased(job);
          ran++;
        }
        return 0;
      } finally {
        runningQueuedAlone = false;
        batchWorkWaiting = true; // the lanes take over whatever is left
      }
    });
  }

  function launchBatch(work: () => Promise<number> = () => runBatchLane(batchKind!)): void {
    slots++;
    batches++;
    const task: Promise<void> = work()
      .catch((err) => {
        // Its work goes back to the queue (a rollback, or leases that expire).
        dbBackoff.failed('batch lane', err);
        return 0;
      })
      .then((took) => {
        slots--;
        batches--;
        batchTasks.delete(task);
        // Take again at once if this turn filled the batch (more may be due) or batchable work
        // was announced while it ran (see onBatchWork); otherwise new work announces itself.
        const waiting = batchWorkWaiting;
        batchWorkWaiting = false;
        if (running && (took === batchSize || waiting)) startBatches();
        // A freed slot may be what claimable single jobs were waiting for.
        if (running && backlog) void loop();
      });
    batchTasks.add(task);
  }

  /**
   * Starts a batch lane if one is free (two run at once at most, each on its own connection). If
   * none is, the work that asked waits for the next lane to end.
   */
  function startBatches(): void {
    if (!running || batchKind === null) return;
    // Backing off after failures: the retry starts a lane (db-backoff.ts).
    if (dbBackoff.waiting) return;
    if (batches < maxBatches && slots < concurrency && !runningQueuedAlone) launchBatch();
    else batchWorkWaiting = true;
  }

  function launch(job: ClaimedJob, work: Promise<void>): void {
    slots++;
    const done = work.finally(() => {
      slots--;
      inflight.delete(job.id);
      // Claim again when work may be waiting for this slot (the last claim filled every slot), or
      // when a keyed job ended (the next job with its key is claimable only now). Otherwise new
      // work announces itself (wake-up) or the poll finds it.
      if (running && (backlog || job.key !== null)) void loop();
    });
    inflight.set(job.id, done);
  }

  /**
   * A wake-up for batchable work. Under load (a running batch took several jobs, i.e. several
   * group commits queued up while the last claim was in flight) it is claimed when a batch ends,
   * so everything announced meanwhile goes into one batch; claiming on every group commit made
   * batches of ~3 jobs and a claim per ~13 events (docs/BENCHMARKS.md). The same while a lane's
   * take is in flight: the work may or may not be in it, and a second lane started now would take
   * a sliver; if that take comes back with one job or none, another lane starts then. Otherwise —
   * idle, or one event at a time — it is taken at once, so unloaded latency is one take.
   */
  function onBatchWork(): void {
    if (loadedBatches > 0 || takingLanes > 0) batchWorkWaiting = true;
    else startBatches();
  }

  /** Whether the last claim may have left due jobs behind (it filled a lane or every slot). */
  let backlog = false;
  /** The claim loop in progress, if any: stop() waits for it, so no job starts unobserved. */
  let claiming: Promise<void> | undefined;

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
        while (running && slots < concurrency) {
          // Leave a slot for a batch lane that is not running yet.
          const limit = Math.max(0, concurrency - slots - (batchKind !== null && batches < maxBatches ? 1 : 0));
          if (limit === 0) break;
          const jobs = await claimJobs(opts.db, id, opts.leaseMs, { freshExcept: batchKind, limit });
          dbBackoff.succeeded();
          for (const job of jobs) launch(job, runJob(job));
          // A claim that came back short means nothing more is due: stop until woken. A full one
          // may have left jobs behind.
          backlog = jobs.length === limit || slots >= concurrency;
          if (jobs.length < limit) break;
        }
        // Woken with every slot taken: the work that woke us waits for the next free slot.
        if (slots >= concurrency) backlog = true;
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
      unlisten.push(await opts.db.listen(BATCH_JOBS_CHANNEL, onBatchWork));
      if (batchKind !== null) {
        await runQueuedAlone(batchKind).catch((err) => {
          log.error({ err: coerceError(err).message }, 'could not look at the queue at start; its lanes take the batch jobs');
        });
      }
      // The poll looks for both kinds of work (a lane whose take finds nothing costs three round trips).
      timers.push(
        setInterval(() => {
          void loop();
          startBatches();
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
      startBatches();
    },
    async stop(graceMs = 10_000) {
      running = false;
      dbBackoff.stop();
      for (const t of timers) clearInterval(t);
      timers.length = 0;
      for (const stop of unlisten.splice(0)) await stop();
      // A claim already in flight may still start jobs: let it finish, then wait for all of them.
      await claiming?.catch(() => {});
      const all = Promise.allSettled([...inflight.values(), ...batchTasks, maintenance.idle()]);
      await Promise.race([all, new Promise((r) => setTimeout(r, graceMs).unref())]);
    },
    wake: () => void loop(),
  };
}
