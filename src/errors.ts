/** An error with an HTTP status whose message is safe to show to the caller. */
export class HttpError extends Error {
  override name = 'HttpError';
  constructor(
    readonly status: 400 | 401 | 403 | 404 | 409 | 413 | 415 | 422 | 429 | 500 | 503,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** The event's ctx (or another input) failed validation; `field` names where. */
export class ValidationError extends Error {
  override name = 'ValidationError';
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

/** A job's lease was lost (expired and taken by another worker): its result must not commit. */
export class LeaseLostError extends Error {
  override name = 'LeaseLostError';
}

/**
 * `instanceof` for the errors a user's workflow code throws. A config normally gets the engine's
 * own classes (config/load-config.ts maps `herald` to the running module), but a second copy of
 * herald (a duplicate install, a deep import bundled into the config) would bring its own; a
 * registry symbol marks every copy, and the check accepts any of them. Subclasses keep the
 * ordinary prototype check.
 */
function brandedInstanceof(base: Function, brand: symbol) {
  return function (this: Function, value: unknown): boolean {
    if (this !== base) return Function.prototype[Symbol.hasInstance].call(this, value);
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[brand] === true;
  };
}

const NON_RETRIABLE = Symbol.for('herald.NonRetriableError');
const RETRY_AFTER = Symbol.for('herald.RetryAfterError');

/** A job that must not be retried (bad data, unknown kind): it fails at once. */
export class NonRetriableError extends Error {
  override name = 'NonRetriableError';
  readonly [NON_RETRIABLE] = true;
  static override [Symbol.hasInstance] = brandedInstanceof(NonRetriableError, NON_RETRIABLE);
}

export function coerceError(err: unknown): Error {
  if (err instanceof Error) return err;
  return new Error(typeof err === 'string' ? err : JSON.stringify(err));
}

/** A job (or workflow step) asks to be retried after `delayMs`, e.g. a rate-limited dependency. */
export class RetryAfterError extends Error {
  override name = 'RetryAfterError';
  readonly [RETRY_AFTER] = true;
  static override [Symbol.hasInstance] = brandedInstanceof(RetryAfterError, RETRY_AFTER);
  constructor(
    message: string,
    readonly delayMs: number,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** The config (herald.config.ts) is invalid; the message names the place and the fix. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/**
 * The database could not be reached, or a connection broke while a statement was in flight (a
 * stopped or restarted server, a terminated backend, a connect or acquire timeout). An outage,
 * not a bug: HTTP answers 503 with Retry-After, the worker backs off and resumes by itself.
 * `outcomeUnknown` is set when the connection was lost after a COMMIT (or a one-round-trip
 * statement that commits) was sent: the write may or may not have happened, so the caller must
 * answer 503 and rely on the idempotency key to make the client's retry exact.
 */
export class DatabaseUnavailableError extends Error {
  override name = 'DatabaseUnavailableError';
  constructor(
    message: string,
    readonly outcomeUnknown = false,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/**
 * herald is past its capacity and sheds this request instead of queueing it (a bounded queue is
 * full, too many emits are in progress, or the request waited longer than its bound while writes
 * went on): 429 with Retry-After, nothing written. herald is up; the client sent more than it
 * can take now. A database that does not answer is DatabaseUnavailableError (503) instead.
 */
export class OverloadedError extends Error {
  override name = 'OverloadedError';
  constructor(
    message: string,
    readonly retryAfterSeconds = 1,
  ) {
    super(message);
  }
}
