import type { Db, Queryable } from '../storage/db.ts';
import { becomeUserSql } from '../storage/queries/session.ts';

/** Claims from a verified JWT; `sub` is the user id that RLS checks every row against. */
export interface UserClaims {
  sub: string;
  [claim: string]: unknown;
}

/**
 * Runs `fn` as the end user, in its own transaction, so every row it touches passes through the
 * notifications policies. Identity cannot outlive the transaction (see becomeUserSql).
 */
export function asUser<T>(db: Db, claims: UserClaims, fn: (tx: Queryable) => Promise<T>): Promise<T> {
  return db.transaction(fn, { begin: becomeUserSql(claims) });
}
