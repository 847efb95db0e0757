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

export function createDbBackoff(opts: { baseMs: number; capMs: number; log: Logger; onRetry: () => void }): DbBackoff {
  let failures = 0;
  let retryAt = 0;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  return {
    get waiting() {
      return Date.now() < retryAt;
    },
    get failures() {
      return failures;
    },
    failed(what, thrown) {
      failures++;
      const delay = retryDelayMs(failures, { baseMs: opts.baseMs, capMs: opts.capMs });
      retryAt = Date.now() + delay;
      const err = coerceError(thrown);
      const fields = { what, err: err.message, unavailable: err instanceof DatabaseUnavailableError, failures, retryInMs: delay };
      if (failures === 1) opts.log.warn(fields, 'database work failed; the worker backs off and retries');
      else opts.log.debug(fields, 'database work failed again');
      if (timer) clearTimeout(timer);
      if (stopped) return;
      timer = setTimeout(() => {
        timer = undefined;
        if (!stopped) opts.onRetry();
      }, delay);
      timer.unref();
    },
    succeeded() {
      if (failures === 0) return;
      opts.log.info({ failures }, 'database work succeeds again; the worker resumes');
      failures = 0;
      retryAt = 0;
    },
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}
