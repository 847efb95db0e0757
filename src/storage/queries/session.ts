import type { Queryable } from '../db.ts';

/**
 * Makes the rest of the transaction run as an end user: role herald_user (not owner, not
 * superuser, no BYPASSRLS) and the JWT claims where auth.uid() reads them. Both settings are
 * transaction-local (set_config(..., true) is SET LOCAL), so they end with the transaction and
 * never leak to the next request on a pooled connection.
 */
export async function becomeUser(tx: Queryable, claims: Record<string, unknown>): Promise<void> {
  await tx.query(
    `SELECT set_config('role', 'herald_user', true), set_config('request.jwt.claims', $1, true)`,
    [JSON.stringify(claims)],
    { prepare: true },
  );
}
