import { coerceError, DatabaseUnavailableError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { retryDelayMs } from './backoff.ts';

/**
 * The worker's loops (single-job claims, batch lanes) when their statements fail — the database
 * went away (a DatabaseUnavailableError, or before the driver classifies them, raw connection
 * errors), or anything else that makes a claim throw. Instead of trying again on every poll
 * (every 50 ms – 1 s, each a connection attempt and an error line), they wait a capped,
 * jittered, growing delay (`retryDelayMs`: from the poll interval up to `capMs`), and `onRetry`
 * fires once when it is over, so work resumes without waiting for a wake-up that a dead LISTEN
 * connection will not deliver. The first failure of a streak is logged as a warning; the rest at
 * debug; the first success after it says the database is back. Nothing here ever stops for good:
 * the gate only delays the next try.
 */
export interface DbBackoff {
  /** True while the loops should not touch the database (a retry is scheduled). */
  readonly waiting: boolean;
  /** Failures in a row (0 when the last try succeeded). */
  readonly failures: number;
  failed(what: string, err: unknown): void;
  succeeded(): void;
  stop(): void;
}

/**
 * A streak of failures of one loop or task: how long to wait before the next try (`retryDelayMs`),
 * logged once as a warning when the streak starts, at debug while it lasts, and once more when
 * it ends. The worker's loops (createDbBackoff) and each maintenance task keep one.
 */
export interface FailureStreak {
  /** Failures in a row (0 when the last try succeeded). */
  readonly failures: number;
  /** When the next try is due (epoch ms; 0 outside a streak). */
  readonly retryAt: number;
  /** Counts a failure and logs it; returns the delay before the next try. */
  failed(thrown: unknown, fields?: Record<string, unknown>): number;
  /** Ends the streak, if any, and logs that. */
  succeeded(): void;
}

export function createFailureStreak(opts: {
  baseMs: number;
  capMs: number;
  log: Logger;
  /** Fields every line of this streak carries (which loop or task). */
  about: Record<string, unknown>;
  say: { failed: string; again: string; recovered: string };
}): FailureStreak {
  let failures = 0;
  let retryAt = 0;
  return {
    get failures() {
      return failures;
    },
    get retryAt() {
      return retryAt;
    },
    failed(thrown, fields) {
      failures++;
      const delay = retryDelayMs(failures, { baseMs: opts.baseMs, capMs: opts.capMs });
      retryAt = Date.now() + delay;
      const err = coerceError(thrown);
      const line = { ...opts.about, ...fields, err: err.message, unavailable: err instanceof DatabaseUnavailableError, failures, retryInMs: delay };
      if (failures === 1) opts.log.warn(line, opts.say.failed);
      else opts.log.debug(line, opts.say.again);
      return delay;
    },
    succeeded() {
      if (failures === 0) return;
      opts.log.info({ ...opts.about, failures }, opts.say.recovered);
      failures = 0;
      retryAt = 0;
    },
  };
}

export function createDbBackoff(opts: { baseMs: number; capMs: number; log: Logger; onRetry: () => void }): DbBackoff {
  const streak = createFailureStreak({
    ...opts,
    about: {},
    say: {
      failed: 'database work failed; the worker backs off and retries',
      again: 'database work failed again',
      recovered: 'database work succeeds again; the worker resumes',
    },
  });
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  return {
    get waiting() {
      return Date.now() < streak.retryAt;
    },
    get failures() {
      return streak.failures;
    },
    failed(what, thrown) {
      const delay = streak.failed(thrown, { what });
      if (timer) clearTimeout(timer);
      if (stopped) return;
      timer = setTimeout(() => {
        timer = undefined;
        if (!stopped) opts.onRetry();
      }, delay);
      timer.unref();
    },
    succeeded: () => streak.succeeded(),
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}
