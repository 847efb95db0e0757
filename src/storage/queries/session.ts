import pg from 'pg';
import type { Statement } from '../db.ts';

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

/**
 * The same identity as a statement with the claims as a parameter, for Db.runTogether: it and the
 * user's statement run in one transaction, so the settings end with it, and if it failed the
 * user's statement would not run at all (never as the connecting role).
 */
export function becomeUser(claims: Record<string, unknown>): Statement {
  return {
    text: `SELECT set_config('role', 'herald_user', true), set_config('request.jwt.claims', $1, true)`,
    values: [JSON.stringify(claims)],
    prepare: true,
  };
}
