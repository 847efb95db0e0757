import type { Queryable, QueryOptions, QueryResult, Statement } from './db.ts';

type Result = QueryResult<Record<string, unknown>>;

/**
 * A view of the transaction `tx` whose first round trip also carries `first`, ahead of the first
 * statement the caller issues (as BEGIN travels with it, see Db.transaction): a check every
 * transaction of a kind starts with — a job worker's lease — costs no round trip of its own.
 * Postgres runs `first` before anything else, so a lock it takes is held before the rest runs;
 * the caller reads its result with `firstResult()` (which sends it alone if nothing else was sent)
 * and throws to roll the transaction back if it says so.
 */
export function withFirstStatement(tx: Queryable, first: Statement): { tx: Queryable; firstResult(): Promise<Result> } {
  let sent: Promise<Result> | undefined;
  const sendAlone = (): Promise<Result> => {
    sent = tx.query(first.text, first.values, { prepare: first.prepare });
    sent.catch(() => {}); // read through firstResult(), or the caller's own statement fails with it
    return sent;
  };
  const pipeline = (statements: Statement[]) => {
    if (sent) return tx.pipeline(statements);
    const all = tx.pipeline([first, ...statements]);
    sent = all.then((results) => results[0]!);
    sent.catch(() => {});
    return all.then((results) => results.slice(1));
  };
  return {
    tx: {
      async query<T>(text: string, values?: unknown[], opts?: QueryOptions): Promise<QueryResult<T>> {
        if (sent) return tx.query<T>(text, values, opts);
        const [result] = await pipeline([{ text, values: values ?? [], prepare: opts?.prepare }]);
        return result as QueryResult<T>;
      },
      async exec(sql) {
        await (sent ?? sendAlone());
        await tx.exec(sql);
      },
      pipeline,
    },
    firstResult: () => sent ?? sendAlone(),
  };
}
