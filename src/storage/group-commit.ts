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
}

export interface GroupCommit<T, R> {
  submit(item: T): Promise<R>;
  /** Items waiting for a flush (metrics, tests). */
  readonly queued: number;
}

interface Waiting<T, R> {
  item: T;
  resolve(r: R): void;
  reject(e: unknown): void;
}

export function createGroupCommit<T, R>(opts: GroupCommitOptions<T, R>): GroupCommit<T, R> {
  let queue: Waiting<T, R>[] = [];
  let inFlight = 0;
  let scheduled = false;

  function take(): Waiting<T, R>[] {
    const batch: Waiting<T, R>[] = [];
    const rest: Waiting<T, R>[] = [];
    const keys = new Set<string>();
    for (const w of queue) {
      const key = opts.conflictKey?.(w.item);
      if (batch.length >= opts.maxBatch || (key !== undefined && keys.has(key))) {
        rest.push(w);
        continue;
      }
      if (key !== undefined) keys.add(key);
      batch.push(w);
    }
    queue = rest;
    return batch;
  }

  async function write(batch: Waiting<T, R>[]): Promise<void> {
    try {
      const results = await opts.flush(batch.map((w) => w.item));
      batch.forEach((w, i) => w.resolve(results[i]!));
    } catch (err) {
      if (batch.length === 1) return batch[0]!.reject(err);
      // One bad item must not fail its neighbours: the batch rolled back, so retry each alone.
      for (const w of batch) await write([w]);
    }
  }

  function pump(): void {
    while (inFlight < opts.writers && queue.length > 0) {
      const batch = take();
      inFlight++;
      void write(batch).finally(() => {
        inFlight--;
        pump();
      });
    }
  }

  return {
    submit(item) {
      return new Promise<R>((resolve, reject) => {
        queue.push({ item, resolve, reject });
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
    get queued() {
      return queue.length;
    },
  };
}
