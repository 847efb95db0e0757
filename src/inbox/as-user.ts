import type { Db, QueryResult, Queryable, Statement } from '../storage/db.ts';
import { becomeUser } from '../storage/queries/session.ts';

/** Claims from a verified JWT; `sub` is the user id that RLS checks every row against. */
export interface UserClaims {
  sub: string;
  [claim: string]: unknown;
}

/**
 * Runs `fn` as the end user, in its own transaction, so every row it touches passes through the
 * notifications policies. Identity cannot outlive the transaction (see becomeUser).
 */
export function asUser<T>(db: Db, claims: UserClaims, fn: (tx: Queryable) => Promise<T>): Promise<T> {
  return db.transaction(fn, { begin: becomeUser(claims) });
}

/**
 * asUser for the common request that is a single statement (a page, the badge, one change): the
 * identity and the statement go to Postgres together and commit together — one round trip where
 * asUser's BEGIN, statement and COMMIT take three. `fn` makes one call: a query or a pipeline.
 */
export async function asUserOneStatement<T>(db: Db, claims: UserClaims, fn: (q: Queryable) => Promise<T>): Promise<T> {
  let used = false;
  const sendAsUser = (statements: Statement[]) => {
    if (used) throw new Error('asUserOneStatement: a second call needs asUser (one transaction)');
    used = true;
    return db.pipeline([becomeUser(claims), ...statements]);
  };
  const once: Queryable = {
    async query<R>(text: string, values: unknown[] = [], opts?: { prepare?: boolean }): Promise<QueryResult<R>> {
      const [, result] = await sendAsUser([{ text, values, prepare: opts?.prepare }]);
      return result as QueryResult<R>;
    },
    async pipeline(statements) {
      return (await sendAsUser(statements)).slice(1);
    },
    exec() {
      throw new Error('asUserOneStatement runs parameterised statements; use asUser');
    },
  };
  return fn(once);
}
