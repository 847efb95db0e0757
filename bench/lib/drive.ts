import { now, percentile, sleep } from './stats.ts';

/**
 * Load shapes shared by every subject. Each records the latency of the call itself; the queue
 * modes add the enqueue → handler-start latency through a Tracker.
 */

/** `concurrency` callers, each awaiting its call before the next, until `total` calls or `maxMs`. */
export async function closedLoop(
  concurrency: number,
  total: number,
  maxMs: number,
  call: (i: number) => Promise<void>,
): Promise<{ done: number; ms: number; ack: Float64Array }> {
  const ack = new Float64Array(total);
  let next = 0;
  let done = 0;
  const t0 = now();
  const deadline = t0 + maxMs;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total && now() < deadline) {
        const i = next++;
        const t = now();
        await call(i);
        ack[i] = now() - t;
        done++;
      }
    }),
  );
  return { done, ms: now() - t0, ack: ack.subarray(0, done) };
}

/**
 * Open loop: call i is due at t0 + i/rate whatever the previous calls are doing, so a slow system
 * queues work instead of slowing the generator (no coordinated omission). Latencies are measured
 * from the due time. Returns each call's due time (ms, on the `now()` clock).
 */
export async function openLoop(
  rate: number,
  seconds: number,
  call: (i: number) => Promise<void>,
): Promise<{ issued: number; due: Float64Array; ack: Float64Array; settled: Promise<unknown> }> {
  const total = Math.round(rate * seconds);
  const due = new Float64Array(total);
  const ack = new Float64Array(total);
  const pending: Promise<void>[] = [];
  const t0 = now() + 5;
  let i = 0;
  while (i < total) {
    const elapsed = now() - t0;
    const target = Math.min(total, Math.floor((elapsed * rate) / 1000) + 1);
    for (; i < target; i++) {
      const k = i;
      due[k] = t0 + (k * 1000) / rate;
      pending.push(call(k).then(() => void (ack[k] = now() - due[k]!)));
    }
    await sleep(1);
  }
  return { issued: total, due, ack, settled: Promise.all(pending) };
}

/** Records when each id's handler started; lets callers wait for one id or for a count. */
export class Tracker {
  readonly started = new Map<string, number>();
  duplicates = 0;
  private waiters = new Map<string, () => void>();
  private countWaiter: { n: number; resolve: () => void } | undefined;

  onStart = (id: string): void => {
    if (this.started.has(id)) {
      this.duplicates++;
      return;
    }
    this.started.set(id, now());
    this.waiters.get(id)?.();
    this.waiters.delete(id);
    if (this.countWaiter && this.started.size >= this.countWaiter.n) this.countWaiter.resolve();
  };

  waitFor(id: string): Promise<void> {
    if (this.started.has(id)) return Promise.resolve();
    return new Promise((r) => this.waiters.set(id, r));
  }

  /** Resolves true once `n` distinct ids started, false after `timeoutMs`. */
  async waitCount(n: number, timeoutMs: number): Promise<boolean> {
    if (this.started.size >= n) return true;
    let timer: NodeJS.Timeout | undefined;
    const ok = await Promise.race([
      new Promise<boolean>((resolve) => (this.countWaiter = { n, resolve: () => resolve(true) })),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs))),
    ]);
    clearTimeout(timer);
    this.countWaiter = undefined;
    return ok;
  }

  /** The last handler start, ms on the now() clock. */
  lastStart(): number {
    let last = 0;
    for (const t of this.started.values()) last = Math.max(last, t);
    return last;
  }

  reset(): void {
    this.started.clear();
    this.duplicates = 0;
    this.waiters.clear();
    this.countWaiter = undefined;
  }
}

export function pcts(samples: ArrayLike<number>): { p50: number; p99: number } {
  return { p50: percentile(samples, 50), p99: percentile(samples, 99) };
}
