import pg from 'pg';
import { createHash } from 'node:crypto';
import type { QueryResult, Statement } from '../db.ts';

/**
 * Several statements in one round trip and one transaction, over the extended protocol: each
 * statement's Parse/Bind/Describe/Execute, then a single Sync. Postgres runs everything before a
 * Sync in one implicit transaction (committed at the Sync), and after an error it skips every
 * message until the Sync — so a failed statement rolls back the ones before it and the ones after
 * it never run. That is the guarantee a `BEGIN; …; COMMIT` gives, at one round trip instead of
 * three, with the values still sent as parameters.
 *
 * pg has no API for it (its pipeline mode sends a Sync per query: separate transactions), so this
 * is a custom Submittable: the client hands it the backend's messages until ReadyForQuery.
 */
export function runTogether(client: pg.ClientBase, statements: Statement[]): Promise<QueryResult<Record<string, unknown>>[]> {
  let settle: Done = () => {};
  const done = new Promise<QueryResult<Record<string, unknown>>[]>((resolve, reject) => {
    settle = (err, results) => (err ? reject(err) : resolve(results!));
  });
  // Throws here, synchronously and before anything is queued, when a value cannot be sent: a
  // caller that opens a transaction with these statements then knows nothing was sent.
  const together = new Together(statements, (err, results) => settle(err, results));
  client.query(together as unknown as pg.QueryConfig);
  return done;
}

/** Names of prepared statements known to exist on a connection (confirmed by a completed run). */
const preparedOn = new WeakMap<object, Set<string>>();
const names = new Map<string, string>();
/** Own prefix: pg tracks its own named statements per connection and must never meet ours. */
function nameOf(text: string): string {
  let name = names.get(text);
  if (!name) names.set(text, (name = `herald_t_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`));
  return name;
}

interface Connection {
  stream: { cork?: () => void; uncork?: () => void };
  parse(m: { text: string; name: string; types: unknown[] }): void;
  bind(m: { portal: string; statement: string; values: unknown[]; binary: boolean; valueMapper?: (v: unknown) => unknown }): void;
  describe(m: { type: 'P'; name: string }): void;
  execute(m: { portal: string; rows: number }): void;
  close(m: { type: 'S'; name: string }): void;
  sync(): void;
  sendCopyFail(msg: string): void;
}

/** pg.Result's row-building methods, which its typings leave out. */
interface RowBuilder {
  rows: Record<string, unknown>[];
  rowCount: number | null;
  addFields(fields: unknown[]): void;
  parseRow(fields: unknown[]): Record<string, unknown>;
  addRow(row: Record<string, unknown>): void;
  addCommandComplete(msg: unknown): void;
}
const newResult = () => new (pg.Result as unknown as new () => RowBuilder)();
const { prepareValue } = (pg as unknown as { utils: { prepareValue(v: unknown): unknown } }).utils;

type Done = (err: Error | undefined, results?: QueryResult<Record<string, unknown>>[]) => void;

class Together {
  private readonly results: QueryResult<Record<string, unknown>>[] = [];
  private current = newResult();
  private rowError: Error | undefined;
  private parsed: string[] = [];
  private connection: Connection | undefined;
  private settled = false;

  private readonly values: unknown[][];

  constructor(
    private readonly statements: Statement[],
    private readonly done: Done,
  ) {
    // Values are mapped to their wire text up front, so one that cannot be sent (e.g. a circular
    // object) throws before any message is written.
    this.values = statements.map((s) => s.values.map((v) => prepareValue(v)));
  }

  submit(connection: Connection): null {
    const values = this.values;
    this.connection = connection;
    let known = preparedOn.get(connection);
    if (!known) preparedOn.set(connection, (known = new Set()));
    connection.stream.cork?.();
    try {
      this.statements.forEach((s, i) => {
        const name = s.prepare ? nameOf(s.text) : '';
        if (!name || !known.has(name)) {
          // A named statement not yet confirmed may exist from a run that failed after its
          // Parse: Close first (closing a missing statement is not an error), then Parse.
          if (name) connection.close({ type: 'S', name });
          connection.parse({ text: s.text, name, types: [] });
          if (name) this.parsed.push(name);
        }
        connection.bind({ portal: '', statement: name, values: values[i]!, binary: false });
        connection.describe({ type: 'P', name: '' });
        connection.execute({ portal: '', rows: 0 });
      });
      connection.sync();
    } finally {
      connection.stream.uncork?.();
    }
    return null;
  }

  handleRowDescription(msg: { fields: unknown[] }): void {
    this.current.addFields(msg.fields);
  }

  handleDataRow(msg: { fields: unknown[] }): void {
    if (this.rowError) return;
    try {
      this.current.addRow(this.current.parseRow(msg.fields));
    } catch (err) {
      this.rowError = err as Error;
    }
  }

  handleCommandComplete(msg: { text: string }): void {
    this.current.addCommandComplete(msg);
    this.results.push({ rows: this.current.rows, rowCount: this.current.rowCount ?? 0 });
    this.current = newResult();
  }

  handleEmptyQuery(): void {
    this.results.push({ rows: [], rowCount: 0 });
  }

  /** An ErrorResponse: Postgres rolled back and skips to the Sync; the client forgets this query. */
  handleError(err: Error): void {
    this.settle(err);
  }

  handleReadyForQuery(): void {
    if (this.rowError) return this.settle(this.rowError);
    const known = this.connection && preparedOn.get(this.connection);
    for (const name of this.parsed) known?.add(name);
    this.settle(undefined);
  }

  handlePortalSuspended(): void {
    this.settle(new Error('unexpected PortalSuspended: statements run to completion'));
  }

  handleCopyInResponse(connection: Connection): void {
    connection.sendCopyFail('COPY is not supported here');
  }

  handleCopyData(): void {}

  private settle(err: Error | undefined): void {
    if (this.settled) return;
    this.settled = true;
    this.done(err, err ? undefined : this.results);
  }
}
