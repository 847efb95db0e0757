import type { Queryable, QueryOptions, QueryResult, Statement } from './db.ts';

/**
 * A view of the transaction `tx` whose first round trip also carries `lead`, ahead of the first
 * statement the caller issues (as BEGIN travels with it, see Db.transaction): a check every
 * transaction of a kind starts with — a job worker's lease — costs no round trip of its own.
 * Postgres runs `lead` first, so a lock it takes is held before anything after it runs; the
 * caller reads its result with `lead()` (which sends it alone if nothing else was sent) and
 * throws to roll the transaction back if it says so.
 */
export function leadWith(tx: Queryable, lead: Statement): { tx: Queryable; lead(): Promise<QueryResult<Record<string, unknown>>> } {
  let sent: Promise<QueryResult<Record<string, unknown>>> | undefined;
  const send = (): Promise<QueryResult<Record<string, unknown>>> => {
    sent = tx.query(lead.text, lead.values, { prepare: lead.prepare });
    sent.catch(() => {}); // read through lead(), or the caller's own statement fails with it
    return sent;
  };
  const together = (statements: Statement[]) => {
    if (sent) return tx.runTogether(statements);
    const all = tx.runTogether([lead, ...statements]);
    sent = all.then((results) => results[0]!);
    sent.catch(() => {});
    return all.then((results) => results.slice(1));
  };
  return {
    tx: {
      async query<T>(text: string, values?: unknown[], opts?: QueryOptions): Promise<QueryResult<T>> {
        if (sent) return tx.query<T>(text, values, opts);
        const [result] = await together([{ text, values: values ?? [], prepare: opts?.prepare }]);
        return result as QueryResult<T>;
      },
      async exec(sql) {
        await (sent ?? send());
        await tx.exec(sql);
      },
      runTogether: together,
    },
    lead: () => sent ?? send(),
  };
}
