import type { Statement } from '../db.ts';

/**
 * The statement that makes the rest of the transaction run as an end user: role herald_user (not
 * owner, not superuser, no BYPASSRLS) and the JWT claims where auth.uid() reads them, bound as a
 * parameter. Both settings are transaction-local (set_config(..., true) is SET LOCAL), so they end
 * with the transaction and never leak to the next request on a pooled connection. It opens every
 * end-user transaction, or travels with the request's one statement (Db.pipeline: if it failed,
 * that statement would not run at all — never as the connecting role).
 */
export function becomeUser(claims: Record<string, unknown>): Statement {
  return {
    text: `SELECT set_config('role', 'herald_user', true), set_config('request.jwt.claims', $1, true)`,
    values: [JSON.stringify(claims)],
    prepare: true,
  };
}
