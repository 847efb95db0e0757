import { randomBytes } from 'node:crypto';
import { coerceError, LeaseLostError, NonRetriableError, RetryAfterError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Db, Queryable } from '../storage/db.ts';
import {
  claimJobs,
  completeJob,
  completeJobs,
  holdLeases,
  deferJob,
  extendLeases,
  failJob,
  holdsLease,
  BATCH_JOBS_CHANNEL,
  BATCH_TRANSACTION_SETTINGS,
  JOBS_CHANNEL,
  type ClaimedJob,
} from '../storage/queries/jobs.ts';
import { backoffMs } from './backoff.ts';
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
  /** Returns the job to the queue for `delayMs` without counting this attempt (it did not run). */
  defer(delayMs: number): Promise<void>;
}

export interface JobHandler {
  /** Does the job's work. Long work (user code, network) runs outside any transaction. */
  run(payload: Record<string, unknown>, ctx: JobContext): Promise<void>;
  /** Runs in the transaction that marks the job failed for good (e.g. to fail its workflow run). */
  onFailed?(tx: Queryable, payload: Record<string, unknown>, error: Error): Promise<void>;
  /**
   * Optional batch form of a transactional handler: many jobs of this kind claimed together, all
   * their work in one transaction that also completes them. If it throws, the worker runs each of
   * those jobs alone through `run`, so a bad job fails on its own.
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
  /** Leases held (for the heartbeat): every claimed job, alone or in a batch. */
  const inflight = new Map<number, Promise<void>>();
  let slots = 0;
  let batches = 0;
  let running = false;
  let looping = false;
  let wakeAgain = false;
  /** Batches running that took more than one job: the worker is under load (see onBatchWork). */
  let loadedBatches = 0;
  /** Batchable work announced while a loaded batch was running: claimed when a batch ends. */
  let batchWorkWaiting = false;
  const timers: NodeJS.Timeout[] = [];
  const unlisten: (() => Promise<void>)[] = [];
  const log = opts.log.child({ worker: id });
  const maintenance = createMaintenance(opts.db, opts.maintenance, log);

  async function runJob(job: ClaimedJob): Promise<void> {
    const handler = opts.handlers[job.kind];
    let completed = false;
    const ctx: JobContext = {
      job,
      commit: (fn, o) =>
        opts.db.transaction(async (tx) => {
          // Completing up front both checks the lease and locks the job (one statement, not two);
          // if fn throws, the rollback brings the job back.
          const upfront = o?.complete === true;
          if (!(await (upfront ? completeJob(tx, job, id) : holdsLease(tx, job, id)))) {
            throw new LeaseLostError(`lease on job ${job.id} was lost`);
          }
          const result = await fn(tx);
          if (upfront) completed = true;
          else if (typeof o?.complete === 'function' && o.complete(result)) {
            await completeJob(tx, job, id);
            completed = true;
          }
          return result;
        }),
      async defer(delayMs) {
        if (!(await deferJob(opts.db, job, id, delayMs))) throw new LeaseLostError(`lease on job ${job.id} was lost`);
        completed = true;
      },
    };
    try {
      if (!handler) throw new NonRetriableError(`no handler for job kind "${job.kind}"`);
      if (job.attempts > job.max_attempts) {
        throw new NonRetriableError(`gave up after ${job.max_attempts} attempts (the last ones lost their lease)`);
      }
      await handler.run(job.payload, ctx);
      if (!completed && !(await opts.db.transaction((tx) => completeJob(tx, job, id)))) {
        throw new LeaseLostError(`lease on job ${job.id} was lost`);
      }
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
      try {
        state = await opts.db.transaction(async (tx) => {
          const s = await failJob(tx, job, id, { error: err.message, delayMs, permanent });
          if (s === 'failed') await handler?.onFailed?.(tx, job.payload, err);
          return s;
        });
      } catch (e) {
        log.error({ jobId: job.id, err: coerceError(e).message }, 'could not record job failure; its lease will expire');
      }
      log[state === 'failed' ? 'error' : 'warn'](
        { jobId: job.id, kind: job.kind, attempt: job.attempts, err: err.message, retryInMs: state === 'queued' ? delayMs : null },
        state === 'failed' ? 'job failed permanently' : 'job failed; will retry',
      );
      if (state) opts.onSettled?.(job, state === 'failed' ? 'failed' : 'retry');
    }
  }

  async function runBatch(kind: string, jobs: ClaimedJob[]): Promise<void> {
    const handler = opts.handlers[kind]!;
    const fresh = jobs.filter((j) => j.attempts <= j.max_attempts);
    try {
      const held = await opts.db.transaction(async (tx) => {
        const held = await holdLeases(tx, fresh, id);
        const mine = fresh.filter((j) => held.has(j.id));
        if (mine.length) await handler.batch!(tx, mine.map((j) => j.payload));
        await completeJobs(tx, [...held]);
        return held;
      }, { begin: BATCH_TRANSACTION_SETTINGS });
      for (const job of fresh) {
        if (!held.has(job.id)) log.warn({ jobId: job.id, kind }, 'lease lost; another worker owns the job now');
        opts.onSettled?.(job, held.has(job.id) ? 'completed' : 'lease-lost');
      }
    } catch (err) {
      log.warn({ kind, jobs: fresh.length, err: coerceError(err).message }, 'batch failed; running its jobs one by one');
      for (const job of fresh) await runJob(job);
    }
    // Out of attempts (their earlier leases expired): the one-by-one path fails them for good.
    for (const job of jobs.filter((j) => j.attempts > j.max_attempts)) await runJob(job);
  }

  function launch(jobs: ClaimedJob[], work: Promise<void>, batch: boolean): void {
    slots++;
    if (batch) batches++;
    const loaded = batch && jobs.length > 1;
    if (loaded) loadedBatches++;
    const done = work.finally(() => {
      slots--;
      if (batch) batches--;
      if (loaded) loadedBatches--;
      for (const j of jobs) inflight.delete(j.id);
      // Claim again when work may be waiting for this slot (the last claim filled its lanes or
      // the slots), or when a keyed job ended (the next job with its key is claimable only now).
      // Otherwise new work announces itself (wake-up) or the poll finds it.
      // Batchable work announced meanwhile waited for this moment (see onBatchWork).
      const waiting = batch && batchWorkWaiting;
      if (waiting) batchWorkWaiting = false;
      if (running && (backlog || waiting || jobs.some((j) => j.key !== null))) void loop();
    });
    for (const j of jobs) inflight.set(j.id, done);
  }

  /**
   * A wake-up for batchable work. Under load (a running batch took several jobs, i.e. several
   * group commits queued up while the last claim was in flight) it is claimed when a batch ends,
   * so everything announced meanwhile goes into one batch; claiming on every group commit made
   * batches of ~3 jobs and a claim per ~13 events (docs/BENCHMARKS.md). Otherwise — idle, or one
   * event at a time — it is claimed at once, so unloaded latency is one claim.
   */
  function onBatchWork(): void {
    if (loadedBatches > 0) batchWorkWaiting = true;
    else void loop();
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

  async function claimLoop(): Promise<void> {
    try {
      do {
        wakeAgain = false;
        while (running && slots < concurrency) {
          // One statement claims both lanes; the batchable kind takes one slot as a batch.
          const batchLane = batchKind !== null && batches < maxBatches;
          const otherLimit = Math.max(0, concurrency - slots - (batchLane ? 1 : 0));
          const jobs = await claimJobs(opts.db, id, opts.leaseMs, { batchKind, batchLimit: batchLane ? batchSize : 0, otherLimit });
          const batch = jobs.filter((j) => j.kind === batchKind);
          if (batch.length) launch(batch, runBatch(batchKind!, batch), true);
          for (const job of jobs) if (job.kind !== batchKind) launch([job], runJob(job), false);
          // A lane that came back short means nothing more of it is due: stop until woken. A lane
          // that was closed (no slot for it) or came back full may have left jobs behind.
          const fullBatch = batchLane && batch.length === batchSize;
          const fullOther = jobs.length - batch.length === otherLimit;
          backlog = (batchKind !== null && !batchLane) || fullBatch || fullOther || slots >= concurrency;
          if (!(fullBatch || (otherLimit > 0 && fullOther))) break;
        }
        // Woken with every slot taken: the work that woke us waits for the next free slot.
        if (slots >= concurrency) backlog = true;
      } while (wakeAgain && running);
    } catch (err) {
      log.error({ err: coerceError(err).message }, 'claiming jobs failed; retrying on the next poll');
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
      timers.push(setInterval(() => void loop(), opts.pollMs));
      timers.push(
        setInterval(() => {
          const ids = [...inflight.keys()];
          if (ids.length) extendLeases(opts.db, ids, id, opts.leaseMs).catch(() => {});
        }, Math.max(50, Math.floor(opts.leaseMs / 3))),
      );
      timers.push(setInterval(() => void maintenance.tick(), opts.maintenanceMs));
      for (const t of timers) t.unref();
      void loop();
    },
    async stop(graceMs = 10_000) {
      running = false;
      for (const t of timers) clearInterval(t);
      timers.length = 0;
      for (const stop of unlisten.splice(0)) await stop();
      // A claim already in flight may still start jobs: let it finish, then wait for all of them.
      await claiming?.catch(() => {});
      const all = Promise.allSettled([...inflight.values(), maintenance.idle()]);
      await Promise.race([all, new Promise((r) => setTimeout(r, graceMs).unref())]);
    },
    wake: () => void loop(),
  };
}
