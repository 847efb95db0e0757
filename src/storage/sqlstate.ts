/**
 * Postgres error codes (SQLSTATE) that say something about the database or the session rather
 * than the statement, in one place: the driver, the group commit and the HTTP layer each ask
 * a different question of them.
 */

const codeOf = (err: unknown): string | undefined => {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
};

/**
 * The database failed, not the request: class 08 (connection exception), 53 (insufficient
 * resources: too many connections, out of memory or disk), 58 (system error), 57P01-57P05 (a
 * server shutting down or restarting, crash recovery, an idle session timed out).
 */
export function isDatabaseFailureCode(err: unknown): boolean {
  const code = codeOf(err);
  return code !== undefined && /^((08|53|58)[0-9A-Z]{3}|57P0[1-5])$/.test(code);
}

/**
 * The session is over, not just the statement, so the connection must be discarded: class 08,
 * a server that shut down or restarted (57P01-57P03), too many connections (53300), the
 * session's idle timeouts (25P03, 57P05).
 */
export function endsSessionCode(err: unknown): boolean {
  const code = codeOf(err);
  return code !== undefined && (/^08[0-9A-Z]{3}$/.test(code) || SESSION_ENDED.has(code));
}
const SESSION_ENDED = new Set(['57P01', '57P02', '57P03', '53300', '25P03', '57P05']);

/** A statement cancelled or past its statement_timeout (57014). */
export const isStatementTimeoutCode = (err: unknown): boolean => codeOf(err) === '57014';
