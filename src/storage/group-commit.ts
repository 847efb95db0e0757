import { DatabaseUnavailableError, OverloadedError } from '../errors.ts';
import { isDatabaseFailureCode } from './sqlstate.ts';

/**
 * Application-level group commit. Concurrent callers each submit one item; items that arrive
 * while a flush is in flight are coalesced into the next flush, which writes them all with one
 * statement (one COMMIT, one WAL flush, at most one wake-up after it). Each caller's promise
 * settles only after the flush that carried its item committed, so acknowledging it is as durable
 * as a transaction of its own — but at a fraction of the round trips and fsyncs (see
 * docs/BENCHMARKS.md).
 *
 * There is no timer: a flush starts at the end of the event-loop turn in which items arrived, as
 * soon as a writer slot is free, so an idle system adds no latency and a busy one batches exactly
 * as much as arrived during the previous flush.
 *
 * The queue is bounded, in items and in time, so that overload is shed instead of queued (a queue
 * that only grows turns every request's latency into seconds, and keeps writing for clients that
 * gave up long ago):
 * - `maxQueued`: a submit beyond it is refused at once (OverloadedError);
 * - `maxWaitMs`: an item still queued that long is dropped, never written (a sojourn limit, as
 *   CoDel's: what matters is how long items wait, not how many there are). `refusal()` refuses a
 *   new item once the oldest waiting item has waited half of it: the writers are not keeping up,
 *   and a new item would most likely be dropped after its body was parsed and validated for
 *   nothing (the HTTP layer asks before it reads the body). The oldest item's wait measures the
 *   writers' real pace, batch sizes and disk stalls included. A drain time predicted as
 *   queued / recent throughput was left out: after an idle spell the recent throughput is the idle
 *   one, not the writers' capacity, and it would refuse most of a burst that one flush can write;
 * - an item whose caller went away (`abandoned()`) is dropped when its flush is assembled;
 * - `flushTimeoutMs`: callers of a flush that has not answered within it get a
 *   DatabaseUnavailableError with `outcomeUnknown` (the write may still commit: the idempotency key
 *   makes the client's retry exact). The writer slot stays taken until the flush really settles.
 *   From then until a flush settles, the writers are stalled: the database does not answer, so
 *   what is refused or dropped meanwhile is refused as DatabaseUnavailableError (503), at once,
 *   not as OverloadedError. Before that, a database that hangs cannot be told from a slow one.
 *   Items retried one by one after a failed batch share the batch's deadline: one not yet written
 *   by then gets a DatabaseUnavailableError with nothing written for it.
 */
export interface GroupCommitOptions<T, R> {
  /** Writes a batch and returns one result per item, in order. Must be all-or-nothing. */
  flush(items: T[]): Promise<R[]>;
  /** Most items per flush (bounds statement size and the time one flush holds its connection). */
  maxBatch: number;
  /** Flushes in flight at once (= writer connections). Two use both cores of a small box. */
  writers: number;
  /**
   * Items with the same conflict key never share a flush (e.g. one idempotency key: a statement
   * cannot insert a key twice); a later one waits for the next flush, where it sees the first.
   */
  conflictKey?(item: T): string | undefined;
  /** Most items waiting for a flush (default: unbounded). */
  maxQueued?: number;
  /** Longest an item may wait for its flush to start (default: unbounded). */
  maxWaitMs?: number;
  /** Longest a caller waits for its item's flush to answer (default: unbounded). */
  flushTimeoutMs?: number;
}

export interface SubmitOptions {
  /** True once the caller has gone away (a client that disconnected): its item is not written. */
  abandoned?(): boolean;
}

export interface GroupCommit<T, R> {
  submit(item: T, opts?: SubmitOptions): Promise<R>;
  /**
   * Why an item submitted now would be refused or dropped before its write (the queue is full,
   * would take longer than its bound to drain, or the database has stopped answering), or
   * undefined. Cheap: for callers that can refuse before doing the work of building an item.
   */
  refusal(): Error | undefined;
  /**
   * Whether the database, rather than the load, is what holds writes up: the last write failed
   * for want of the database and none has succeeded since, or writes are in flight and none has
   * completed for over half the wait bound. The refusal to give then, or undefined. A limit on
   * emits in progress that is full for this reason is an outage (503), not overload (429).
   */
  unavailable(): DatabaseUnavailableError | undefined;
  /** Items waiting for a flush (metrics, tests). */
  readonly queued: number;
  /** Items in flushes in flight (metrics, tests). */
  readonly writing: number;
}

interface Waiting<T, R> {
  item: T;
  /** When it started waiting for a writer (performance.now()): its submit, or its key's earlier item's flush. */
  at: number;
  abandoned: (() => boolean) | undefined;
  resolve(r: R): void;
  reject(e: unknown): void;
}

const RETRY_AFTER_SECONDS = 1;
/**
 * After a write failed to reach the database, emits are refused with 503 at once for this long,
 * then one flush is let through as a probe (a circuit breaker, half-open every DOWN_PROBE_MS):
 * during an outage every emit is answered 503 without a statement sent for it, whatever else
 * (overload shedding) would have said, and herald notices the database is back within this.
 */
const DOWN_PROBE_MS = 250;

/**
 * Errors that say nothing about the items of a batch but about the database or the connection
 * (the driver's DatabaseUnavailableError, or a raw SQLSTATE of a database failure): retrying each item alone
 * would only send more statements to a database that cannot take them. A statement timeout
 * (57014) is not one of them: one item too big for the batch's time is what the retry isolates.
 */
function failsTheWholeBatch(err: unknown): boolean {
  if (err instanceof DatabaseUnavailableError || err instanceof OverloadedError) return true;
  return isDatabaseFailureCode(err);
}

/**
 * Resolves once `deadline` (performance.now() time) has passed; its timer does not hold the
 * process open. Node's timers may fire a fraction of a millisecond early, hence the extra one.
 */
function sleepUntil(deadline: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, Math.ceil(deadline - performance.now()) + 1)).unref());
}

export function createGroupCommit<T, R>(opts: GroupCommitOptions<T, R>): GroupCommit<T, R> {
  const maxQueued = opts.maxQueued ?? Infinity;
  const maxWaitMs = opts.maxWaitMs ?? Infinity;
  const stallMs = opts.flushTimeoutMs ?? Infinity;
  /** Items waiting for a writer, in submit order (so the oldest is first). */
  let queue: Waiting<T, R>[] = [];
  /**
   * Items that wait for the flush of an earlier item with their conflict key, not for a writer:
   * their wait bound starts when that flush does (a burst of one key's duplicates goes one flush
   * each, and none of them is "late" for it). Older than anything in `queue` with their key.
   */
  let blocked: Waiting<T, R>[] = [];
  let inFlight = 0;
  let writing = 0;
  let scheduled = false;
  /** The last time a flush settled, or one started on idle writers: "the writers are moving". */
  let progressAt = performance.now();
  /**
   * The last time a flush wrote (resolved). An item that waited its whole bound with no write
   * completing meanwhile did not wait behind other emits (overload: writes complete every few
   * ms) but behind a database that does not answer: that is an outage (503), even before the
   * flush timeout declares the writers stalled.
   */
  let wroteAt = performance.now();
  /** The last write that failed to reach the database, as the refusal to give until a probe writes. */
  let down: { at: number; refusal: DatabaseUnavailableError } | undefined;
  let sweepTimer: NodeJS.Timeout | undefined;

  const stalled = (now: number) => inFlight > 0 && now - progressAt > stallMs;
  const shedError = (why: string) => new OverloadedError(`herald is overloaded: ${why}; retry later`, RETRY_AFTER_SECONDS);
  // Refusals are made once and shared: under overload they are most answers, and an Error's stack
  // is captured when it is made.
  const refused = {
    stall: new DatabaseUnavailableError(`the database has not answered a write for over ${stallMs} ms`),
    full: shedError(`${maxQueued} emits are already waiting for a write`),
    slow: shedError(`emits are waiting over ${Math.round(maxWaitMs / 2)} ms for a write`),
    late: shedError(`waited over ${maxWaitMs} ms for a write`),
    unwritten: new DatabaseUnavailableError(`the write did not complete within ${stallMs} ms; nothing was written for this request`),
    silent: new DatabaseUnavailableError(`no write has completed for over ${maxWaitMs} ms: the database is not answering`),
    quiet: new DatabaseUnavailableError(`no write has completed for over ${Math.round(maxWaitMs / 2)} ms: the database is not answering`),
    gone: shedError('the client went away before its write'),
  };
  const lateError = (now: number, w: Waiting<T, R>) =>
    stalled(now) ? refused.stall : wroteAt < w.at ? refused.silent : refused.late;

  /** Rejects every waiting item whose bound passed. */
  function dropExpired(now: number): void {
    const keep = (list: Waiting<T, R>[]) =>
      list.filter((w) => {
        if (now - w.at <= maxWaitMs) return true;
        w.reject(lateError(now, w));
        return false;
      });
    if (queue.length > 0 && now - queue[0]!.at > maxWaitMs) queue = keep(queue);
    if (blocked.length > 0) blocked = keep(blocked);
  }

  /**
   * While items wait and no writer is free, a timer answers each one when its bound passes (the
   * writers may be stuck: an item must not wait for them to find out it is too late).
   */
  function armSweep(): void {
    if (sweepTimer || maxWaitMs === Infinity) return;
    let oldest = queue.length > 0 ? queue[0]!.at : Infinity;
    for (const w of blocked) oldest = Math.min(oldest, w.at);
    if (oldest === Infinity) return;
    sweepTimer = setTimeout(() => {
      sweepTimer = undefined;
      dropExpired(performance.now());
      armSweep();
    }, Math.max(0, oldest + maxWaitMs - performance.now()) + 1);
  }

  function take(now: number): Waiting<T, R>[] {
    const batch: Waiting<T, R>[] = [];
    const keys = new Set<string>();
    const stillBlocked: Waiting<T, R>[] = [];
    const rest: Waiting<T, R>[] = [];
    // The blocked first: they came before any item of their key still in the queue.
    for (const [list, full] of [[blocked, stillBlocked], [queue, rest]] as const) {
      for (const w of list) {
        // Never start a write for a request that is already answered by its bound, or given up.
        if (now - w.at > maxWaitMs) {
          w.reject(lateError(now, w));
          continue;
        }
        if (w.abandoned?.()) {
          w.reject(refused.gone);
          continue;
        }
        const key = opts.conflictKey?.(w.item);
        if (key !== undefined && keys.has(key)) {
          w.at = now;
          stillBlocked.push(w);
          continue;
        }
        if (batch.length >= opts.maxBatch) {
          full.push(w);
          continue;
        }
        if (key !== undefined) keys.add(key);
        batch.push(w);
      }
    }
    blocked = stillBlocked;
    queue = rest;
    return batch;
  }

  /**
   * Runs one flush and answers its callers; settles when the flush itself has (not at its timeout).
   * `deadline` is the batch's: items retried one by one after a failed batch share it, so a
   * caller's wait stays bounded by one flush timeout however many neighbours go before it.
   */
  async function write(batch: Waiting<T, R>[], deadline = performance.now() + stallMs): Promise<void> {
    const startedAt = performance.now();
    let answered = false;
    let timer: NodeJS.Timeout | undefined;
    if (deadline !== Infinity) {
      timer = setTimeout(() => {
        answered = true;
        const err = new DatabaseUnavailableError(`the database did not answer the write within ${Math.round(deadline - startedAt)} ms`, true);
        for (const w of batch) w.reject(err);
      }, Math.max(0, deadline - performance.now()));
    }
    try {
      const results = await opts.flush(batch.map((w) => w.item));
      wroteAt = performance.now();
      down = undefined;
      if (!answered) batch.forEach((w, i) => w.resolve(results[i]!));
    } catch (err) {
      if (err instanceof DatabaseUnavailableError && wroteAt < startedAt) {
        // The breaker opens whether or not the timeout already answered these callers, unless a
        // write succeeded since this one began (a flush that fails late, its database since
        // answering the other writer). Nothing is sent for a refused emit: its outcome is known.
        down = { at: performance.now(), refusal: new DatabaseUnavailableError(err.message) };
      }
      // Callers answered at the timeout are not written again: they were told the outcome is unknown.
      if (answered) return;
      if (batch.length === 1 || failsTheWholeBatch(err)) {
        for (const w of batch) w.reject(err);
        return;
      }
      // One bad item must not fail its neighbours: the batch rolled back, so retry each alone
      // (but not for a caller that has gone meanwhile, nor past the batch's deadline: that caller
      // is answered 503, with nothing written for it).
      clearTimeout(timer);
      timer = undefined;
      let last: Promise<void> | undefined;
      for (const w of batch) {
        if (w.abandoned?.()) w.reject(refused.gone);
        else if (performance.now() >= deadline) w.reject(refused.unwritten);
        else {
          // A write that hangs is answered at the deadline by its own timer, and the items after
          // it must not wait for it to settle (that is the driver's bound, not ours).
          last = write([w], deadline);
          await Promise.race([last, sleepUntil(deadline)]);
        }
      }
      // The writer slot stays taken until the last write really settles.
      await last;
    } finally {
      clearTimeout(timer);
    }
  }

  function pump(): void {
    const now = performance.now();
    while (inFlight < opts.writers && queue.length + blocked.length > 0) {
      const batch = take(now);
      if (batch.length === 0) break;
      if (inFlight === 0) progressAt = now;
      inFlight++;
      writing += batch.length;
      void write(batch).finally(() => {
        inFlight--;
        writing -= batch.length;
        progressAt = performance.now();
        pump();
      });
    }
    armSweep();
  }

  function refusal(now?: number): Error | undefined {
    now ??= performance.now();
    if (down && now - down.at < DOWN_PROBE_MS) return down.refusal;
    if (queue.length === 0 && inFlight < opts.writers) return undefined;
    if (stalled(now)) return refused.stall;
    const waiting = queue.length + blocked.length;
    if (waiting >= maxQueued) return refused.full;
    if (queue.length > 0 && now - queue[0]!.at > maxWaitMs / 2) return wroteAt < queue[0]!.at ? refused.silent : refused.slow;
    return undefined;
  }

  return {
    submit(item, submitOpts) {
      const now = performance.now();
      const refused = refusal(now);
      if (refused) return Promise.reject(refused);
      return new Promise<R>((resolve, reject) => {
        queue.push({ item, at: now, abandoned: submitOpts?.abandoned, resolve, reject });
        // Start the flush at the end of this turn of the event loop, not now: callers woken by
        // the previous flush's acknowledgement submit their next items in this same turn, and
        // they should share one flush rather than the first one leaving alone.
        if (!scheduled) {
          scheduled = true;
          setImmediate(() => {
            scheduled = false;
            pump();
          });
        }
      });
    },
    refusal: () => refusal(),
    unavailable() {
      if (down) return down.refusal;
      const now = performance.now();
      if (inFlight > 0 && now - Math.max(wroteAt, progressAt) > maxWaitMs / 2) return refused.quiet;
      return undefined;
    },
    get queued() {
      return queue.length + blocked.length;
    },
    get writing() {
      return writing;
    },
  };
}
