/**
 * The worker's batch lanes: how the one batchable job kind (herald's event expansion) is taken off
 * the queue many jobs at a time, in one transaction per batch, and when a lane starts. Kept apart
 * from the single-job claim loop (worker.ts) because its timing rules are its own: they decide how
 * big batches get under load and how soon one event is taken when idle (docs/BENCHMARKS.md).
 *
 * Each lane is a small state machine (Lane.phase); the worker-wide state is the set of lanes and
 * one flag, `waiting`: batchable work was announced and no lane has taken it yet.
 *
 *   alone ──────────────────────────────┐   (at start: the jobs queued before it, one at a time)
 *   taking ─┬─ took several ─> loaded ──┼─> ended: take again at once if the batch was full or
 *           └─ took one/none ─> light ──┘   work is waiting; else new work announces itself
 */
import { coerceError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Db } from '../storage/db.ts';
import { claimJobs, claimJobsById, newestJobId, takeJobs, BATCH_TRANSACTION_SETTINGS, type ClaimedJob } from '../storage/queries/jobs.ts';
import type { DbBackoff } from './db-backoff.ts';
import type { JobHandler } from './job-context.ts';

/** The worker's concurrency, shared with the claim loop: a job run alone and a lane each hold one slot. */
export interface Slots {
  used: number;
  readonly size: number;
}

/**
 * alone: runs the jobs queued before the start, one at a time with leases (see runQueuedAlone);
 *        no take runs meanwhile.
 * taking: its take is in flight: work announced now may or may not be in it.
 * loaded: it took several jobs, i.e. the worker is under load (see onWork).
 * light: it took one job or none.
 */
type Phase = 'alone' | 'taking' | 'loaded' | 'light';
interface Lane {
  phase: Phase;
  /** Ends after the lane's bookkeeping (stop() waits for it). */
  done?: Promise<void>;
}

export interface BatchLanes {
  /** Whether a lane could still start (the claim loop leaves a slot for it). */
  readonly laneFree: boolean;
  /** Starts a lane if one is free; if none is, the work that asked waits for the next lane to end. */
  start(): void;
  /** A wake-up for batchable work (see onWork). */
  onWork(): void;
  /** At start: runs the jobs of the kind already queued alone (see runQueuedAlone). */
  runQueuedAlone(): Promise<void>;
  /** The lanes running (stop() waits for them; their jobs hold no lease). */
  tasks(): Promise<void>[];
}

export interface BatchLanesOptions {
  db: Db;
  kind: string;
  handler: JobHandler;
  workerId: string;
  leaseMs: number;
  /** Most jobs claimed and committed together. */
  batchSize: number;
  /** Lanes running at once at most. */
  maxLanes: number;
  slots: Slots;
  isRunning: () => boolean;
  dbBackoff: DbBackoff;
  log: Logger;
  /** Runs a job claimed with a lease (the worker's heartbeat extends it meanwhile). */
  runLeased: (job: ClaimedJob) => Promise<void>;
  onSettled?: (job: ClaimedJob, outcome: 'completed') => void;
  /** A lane ended and freed its slot (after any lane it started). */
  onSlotFreed: () => void;
}

export function createBatchLanes(opts: BatchLanesOptions): BatchLanes {
  const { db, kind, batchSize, slots, dbBackoff } = opts;
  const lanes = new Set<Lane>();
  /** Batchable work announced that no lane has taken yet: claimed when a lane takes or ends. */
  let waiting = false;
  const anyLane = (...phases: Phase[]) => [...lanes].some((l) => phases.includes(l.phase));

  function launch(phase: Phase, work: (lane: Lane) => Promise<number>): void {
    const lane: Lane = { phase };
    slots.used++;
    lanes.add(lane);
    lane.done = work(lane)
      .catch((err) => {
        // Its work goes back to the queue (a rollback, or leases that expire).
        dbBackoff.failed('batch lane', err);
        return 0;
      })
      .then((took) => {
        slots.used--;
        lanes.delete(lane);
        // Take again at once if this turn filled the batch (more may be due) or batchable work
        // was announced while it ran (see onWork); otherwise new work announces itself.
        const announced = waiting;
        waiting = false;
        if (opts.isRunning() && (took === batchSize || announced)) start();
        // A freed slot may be what claimable single jobs were waiting for.
        opts.onSlotFreed();
      });
  }

  /** Two lanes at once at most, each on its own connection. */
  function start(): void {
    if (!opts.isRunning()) return;
    // Backing off after failures: the retry starts a lane (db-backoff.ts).
    if (dbBackoff.waiting) return;
    if (lanes.size < opts.maxLanes && slots.used < slots.size && !anyLane('alone')) launch('taking', takeTurn);
    else waiting = true;
  }

  /**
   * One lane's turn: a transaction that takes up to batchSize due jobs of the kind (takeJobs: the
   * row locks are the lease), runs the handler's batch over them and commits, which completes
   * them. If anything fails the rollback requeues them untouched, and they are claimed with leases
   * and run one by one, each with its own error, retry and failure record. Returns how many jobs
   * it took.
   */
  async function takeTurn(lane: Lane): Promise<number> {
    let taken: ClaimedJob[] = [];
    try {
      await db.transaction(
        async (tx) => {
          taken = await takeJobs(tx, kind, batchSize);
          lane.phase = taken.length > 1 ? 'loaded' : 'light';
          if (lane.phase === 'light' && waiting) {
            // Announced while this lane was taking, and this lane is not under load: a free lane
            // takes it now rather than when this one ends.
            waiting = false;
            start();
          }
          if (taken.length) await opts.handler.batch!(tx, taken.map((j) => j.payload));
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
      opts.log.warn({ kind, jobs: taken.length, err: coerceError(err).message }, 'batch failed; running its jobs one by one');
      const claimed = await claimJobsById(db, opts.workerId, opts.leaseMs, taken.map((j) => j.id)).then(
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
      for (const job of claimed) await opts.runLeased(job);
      return taken.length;
    }
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
  function onWork(): void {
    if (anyLane('loaded', 'taking')) waiting = true;
    else start();
  }

  /**
   * At start, the kind's jobs already queued are first claimed with leases and run one at a time
   * (up to batchSize of them, oldest first) in a lane. A batch's take leaves no trace when its
   * process dies, so a job whose work kills the process (a rule that exhausts memory or spins)
   * would otherwise be retaken after every restart without end, holding up every other event.
   * This way each restart counts an attempt for the one job that was running when the process
   * died, and such a job fails for good when its attempts run out; its neighbours lose nothing.
   * Jobs queued after the start are the lanes' as usual.
   */
  async function runQueuedAlone(): Promise<void> {
    const maxId = await newestJobId(db);
    if (maxId === 0) return;
    // No take lane runs meanwhile (phase 'alone'): one could take the job that killed the last process.
    launch('alone', async () => {
      try {
        let ran = 0;
        while (opts.isRunning() && ran < batchSize) {
          const [job] = await claimJobs(db, opts.workerId, opts.leaseMs, { leaveFreshOf: null, onlyKind: kind, maxId, limit: 1 });
          if (!job) break;
          await opts.runLeased(job);
          ran++;
        }
        return 0;
      } finally {
        waiting = true; // the lanes take over whatever is left
      }
    });
  }

  return {
    get laneFree() {
      return lanes.size < opts.maxLanes;
    },
    start,
    onWork,
    runQueuedAlone,
    tasks: () => [...lanes].map((l) => l.done!),
  };
}
