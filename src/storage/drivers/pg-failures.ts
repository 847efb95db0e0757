import { DatabaseUnavailableError } from '../../errors.ts';
import { endsSessionCode } from '../sqlstate.ts';

/**
 * Which errors mean "the database connection is gone or could not be had" (an outage: retry
 * later) rather than "this statement failed" (a SQL error: constraint, syntax, a cancelled
 * statement — the caller's to handle as before).
 */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/** pg's own words for a connection it lost, or could not make or hand out in time. */
const PG_CONNECTION_MESSAGES =
  /^Connection terminated|^timeout exceeded when trying to connect|is not queryable|^timeout expired$|^Query read timeout$/;

export function isConnectionFailure(err: unknown): boolean {
  if (err instanceof DatabaseUnavailableError) return true;
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (NETWORK_CODES.has(code) || endsSessionCode(err)) return true;
  }
  if (PG_CONNECTION_MESSAGES.test(err.message)) return true;
  // Node reports a failed connect to every address of a host as one AggregateError.
  if (err instanceof AggregateError) return err.errors.some(isConnectionFailure);
  return false;
}

/**
 * `err` as the Db seam throws it: a connection failure becomes a DatabaseUnavailableError (its
 * cause kept); anything else is returned as it is. `outcomeUnknown`: the failure came after
 * something that commits by itself was sent (a COMMIT, a statement outside a transaction), so the
 * write may have happened.
 */
export function classify(err: unknown, outcomeUnknown: boolean): unknown {
  if (err instanceof DatabaseUnavailableError) {
    if (err.outcomeUnknown || !outcomeUnknown) return err;
    return new DatabaseUnavailableError(`${err.message}; the write may or may not have committed`, true, { cause: err.cause ?? err });
  }
  if (!isConnectionFailure(err)) return err;
  const reason = describeReason(err as Error);
  const message = outcomeUnknown
    ? `the database connection was lost before its answer came (${reason}); the write may or may not have committed`
    : `the database is unavailable (${reason})`;
  return new DatabaseUnavailableError(message, outcomeUnknown, { cause: err });
}

/** A short, human reason: "connection refused", "terminated by the server (57P01)", pg's message. */
export function describeReason(err: Error): string {
  const code = (err as { code?: unknown }).code;
  if (err instanceof AggregateError && err.errors[0] instanceof Error) return describeReason(err.errors[0]);
  if (code === 'ECONNREFUSED') return 'connection refused';
  if (code === 'ECONNRESET') return 'connection reset';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'host not found';
  if (endsSessionCode(err)) return `${err.message} (${String(code)})`;
  return err.message;
}
