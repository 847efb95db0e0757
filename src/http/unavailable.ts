import type { Context } from 'hono';
import { DatabaseUnavailableError, OverloadedError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { isDatabaseFailureCode, isStatementTimeoutCode } from '../storage/sqlstate.ts';
import type { AppEnv } from './context.ts';

/**
 * The two answers that are not bugs: the database is unavailable (503) and herald is shedding load
 * (429). Both carry Retry-After and never a stack; both are logged as a warning at most once per
 * LOG_EVERY_MS per process, with how many requests got the same answer meanwhile — an outage or an
 * overload is one event for the operator, not thousands of log lines that would cost CPU and disk
 * exactly when there is none to spare.
 *
 * Why 429 and not 503 for shedding: the service is up and answering, and the client sent more
 * than it can take right now; 429 with Retry-After is what HTTP clients and the product's bars
 * (SPEC: "Overload: 429 with Retry-After, not errors") read as "slow down", and monitoring that
 * counts 5xx as server failures does not page for a deliberate, healthy refusal. 503 stays the
 * answer for "the database is unavailable", a failure the operator must see.
 */

/** Seconds a client should wait before retrying while the database is unavailable. */
export const DATABASE_RETRY_AFTER_SECONDS = 2;
const LOG_EVERY_MS = 10_000;

/**
 * The DatabaseUnavailableError behind `err` (itself or a cause), or an equivalent for a raw server
 * error whose SQLSTATE says the database, not the request, failed (storage/sqlstate.ts), or that
 * a statement ran out of time (57014).
 */
export function databaseUnavailable(err: unknown): DatabaseUnavailableError | undefined {
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof DatabaseUnavailableError) return e;
    if (isDatabaseFailureCode(e) || isStatementTimeoutCode(e)) {
      return new DatabaseUnavailableError((e as Error).message ?? String((e as { code?: unknown }).code), false, { cause: e });
    }
  }
  return undefined;
}

interface Episode {
  lastLoggedAt: number;
  since: number;
}
const episodes = new WeakMap<Logger, Map<string, Episode>>();

/** Warns once per LOG_EVERY_MS per kind, saying how many answers of that kind were not logged. */
function warnRateLimited(log: Logger | undefined, kind: string, fields: Record<string, unknown>, msg: string): void {
  if (!log) return;
  let byKind = episodes.get(log);
  if (!byKind) episodes.set(log, (byKind = new Map()));
  const now = performance.now();
  const ep = byKind.get(kind);
  if (ep && now - ep.lastLoggedAt < LOG_EVERY_MS) {
    ep.since++;
    return;
  }
  log.warn({ ...fields, answeredLikeThisSinceLastLog: ep?.since ?? 0 }, msg);
  byKind.set(kind, { lastLoggedAt: now, since: 0 });
}

/** An outage's or an overload's answer: status, Retry-After and body, by path (`{error}` under /v2). */
export function refusal(err: DatabaseUnavailableError | OverloadedError, path: string): { status: 429 | 503; retryAfter: string; body: Record<string, unknown> } {
  const v2 = path.startsWith('/v2/');
  if (err instanceof OverloadedError) {
    return { status: 429, retryAfter: String(Math.max(1, Math.ceil(err.retryAfterSeconds))), body: v2 ? { error: err.message } : { ok: false, error: err.message, retryable: true } };
  }
  const body = v2
    ? { error: 'database unavailable' }
    : {
        ok: false,
        error: 'database unavailable',
        // The write may have happened: retrying with the same Idempotency-Key is safe and exact.
        ...(err.outcomeUnknown ? { outcome: 'unknown: retry with the same Idempotency-Key' } : {}),
        retryable: true,
      };
  return { status: 503, retryAfter: String(DATABASE_RETRY_AFTER_SECONDS), body };
}

/** Logs the refusal, at most once per LOG_EVERY_MS per kind and logger. */
export function logRefusal(log: Logger | undefined, err: DatabaseUnavailableError | OverloadedError, path: string, requestId?: string): void {
  if (err instanceof OverloadedError) warnRateLimited(log, 'overload', { path, reason: err.message }, 'overloaded: shedding requests with 429');
  else warnRateLimited(log, 'database', { requestId, path, err: err.message, outcomeUnknown: err.outcomeUnknown }, 'database unavailable: answering 503');
}

export function refusalResponse(c: Context<AppEnv>, err: DatabaseUnavailableError | OverloadedError): Response {
  logRefusal(c.get('engine')?.log, err, c.req.path, c.get('requestId'));
  const r = refusal(err, c.req.path);
  c.header('Retry-After', r.retryAfter);
  return c.json(r.body, r.status);
}
