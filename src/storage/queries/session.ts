import pg from 'pg';

/**
 * SQL that makes the rest of the transaction run as an end user: role herald_user (not owner, not
 * superuser, no BYPASSRLS) and the JWT claims where auth.uid() reads them. Both settings are
 * transaction-local (set_config(..., true) is SET LOCAL), so they end with the transaction and
 * never leak to the next request on a pooled connection.
 *
 * Parameterless, for Db.transaction's `begin`: sent with BEGIN in one round trip (the inbox answers
 * each request in three instead of four). The claims come from a verified JWT and are quoted with
 * pg's escapeLiteral (doubled quotes; backslashes doubled under E'' so the literal means the same
 * whatever standard_conforming_strings says).
 */
export function becomeUserSql(claims: Record<string, unknown>): string {
  return `SELECT set_config('role', 'herald_user', true), set_config('request.jwt.claims', ${pg.escapeLiteral(JSON.stringify(claims))}, true)`;
}
