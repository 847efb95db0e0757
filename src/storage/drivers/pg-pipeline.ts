import pg from 'pg';
import { serialize } from 'pg-protocol';
import { createHash } from 'node:crypto';
import type { QueryResult, Statement } from '../db.ts';
import type { Start } from './pg-connection.ts';

/**
 * Several statements in one round trip and one transaction, over the extended protocol: each
 * statement's Parse/Bind/Describe/Execute, then a single Sync. Postgres runs everything before a
 * Sync in one implicit transaction (committed at the Sync), and after an error it skips every
 * message until the Sync — so a failed statement rolls back the ones before it and the ones after
 * it never run. That is the guarantee a `BEGIN; …; COMMIT` gives, at one round trip instead of
 * three, with the values still sent as parameters.
 *
 * pg has no API for it (its pipeline mode sends a Sync per query: separate transactions), so this
 * is a Submittable — pg's public extension point, the one pg-cursor and pg-query-stream use: the
 * client calls `submit(connection)` when the connection is free and hands it the backend's
 * messages (handle*) until ReadyForQuery. It uses nothing else of pg's: the messages are built
 * with pg-protocol's serializer and written as one buffer to the connection's stream (pg's typings
 * declare `Connection.stream` a Duplex: one write, one packet, no corking), the values are
 * encoded here (toWire) and the rows built here, with the type parsers of `pg.types`.
 *
 * Returns a Start for a Connection (drivers/pg-connection.ts), which hands it to the client when
 * no other query is active. Throws synchronously, having sent nothing, when a value cannot be
 * sent: a caller that opens a transaction with these statements then knows nothing was sent.
 */
export function pipelined(statements: Statement[]): Start {
  const values = statements.map((s) => s.values.map(toWire));
  return (client, done) => {
    client.query(new PipelinedQuery(statements, values, done) as unknown as pg.QueryConfig);
  };
}

type Done = (err: Error | undefined, results?: QueryResult<Record<string, unknown>>[]) => void;
type Wire = string | Buffer | null;

/** Names of prepared statements known to exist on a connection (confirmed by a completed run). */
const preparedOn = new WeakMap<object, Set<string>>();
const names = new Map<string, string>();
/** Own prefix: pg tracks its own named statements per connection and must never meet ours. */
function nameOf(text: string): string {
  let name = names.get(text);
  if (!name) names.set(text, (name = `herald_t_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`));
  return name;
}

/** What the Submittable contract hands to submit(): the connection and its stream. */
interface SubmitConnection {
  stream: NodeJS.WritableStream & { writable: boolean };
}
interface FieldDescription {
  name: string;
  dataTypeID: number;
  format: 'text' | 'binary';
}
type Parser = (value: string) => unknown;

const SYNC = serialize.sync();
const DESCRIBE_PORTAL = serialize.describe({ type: 'P', name: '' });
const EXECUTE_ALL = serialize.execute({ portal: '', rows: 0 });

class PipelinedQuery {
  private readonly results: QueryResult<Record<string, unknown>>[] = [];
  private columns: string[] = [];
  private parsers: Parser[] = [];
  private rows: Record<string, unknown>[] = [];
  private rowError: Error | undefined;
  private parsed: string[] = [];
  private connection: object | undefined;
  private settled = false;

  constructor(
    private readonly statements: Statement[],
    private readonly values: Wire[][],
    private readonly done: Done,
  ) {}

  submit(connection: SubmitConnection): Error | null {
    if (!connection.stream.writable) return new Error('Connection terminated: the connection is not writable');
    this.connection = connection;
    let known = preparedOn.get(connection);
    if (!known) preparedOn.set(connection, (known = new Set()));
    const messages: Buffer[] = [];
    this.statements.forEach((s, i) => {
      const name = s.prepare ? nameOf(s.text) : '';
      if (!name || !known.has(name)) {
        // A named statement not yet confirmed may exist from a run that failed after its
        // Parse: Close first (closing a missing statement is not an error), then Parse.
        if (name) messages.push(serialize.close({ type: 'S', name }));
        messages.push(serialize.parse({ text: s.text, name, types: [] }));
        if (name) this.parsed.push(name);
      }
      messages.push(serialize.bind({ portal: '', statement: name, values: this.values[i]!, binary: false }), DESCRIBE_PORTAL, EXECUTE_ALL);
    });
    messages.push(SYNC);
    connection.stream.write(Buffer.concat(messages));
    return null;
  }

  handleRowDescription(msg: { fields: FieldDescription[] }): void {
    this.columns = msg.fields.map((f) => f.name);
    this.parsers = msg.fields.map((f) => pg.types.getTypeParser(f.dataTypeID, f.format) as Parser);
  }

  handleDataRow(msg: { fields: (string | null)[] }): void {
    if (this.rowError) return;
    try {
      const row: Record<string, unknown> = {};
      for (let i = 0; i < this.columns.length; i++) {
        const raw = msg.fields[i];
        row[this.columns[i]!] = raw === null || raw === undefined ? null : this.parsers[i]!(raw);
      }
      this.rows.push(row);
    } catch (err) {
      this.rowError = err as Error;
    }
  }

  /** "INSERT 0 5", "UPDATE 3", "SELECT 2": the last number is the row count; "SET" has none. */
  handleCommandComplete(msg: { text: string }): void {
    const count = /(\d+)$/.exec(msg.text);
    this.results.push({ rows: this.rows, rowCount: count ? Number(count[1]) : 0 });
    this.rows = [];
    this.columns = [];
    this.parsers = [];
  }

  handleEmptyQuery(): void {
    this.results.push({ rows: [], rowCount: 0 });
  }

  /** An ErrorResponse (Postgres rolled back and skips to the Sync), or the connection failed. */
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

  handleCopyInResponse(connection: SubmitConnection): void {
    connection.stream.write(serialize.copyFail('COPY is not supported here'));
  }

  handleCopyData(): void {}

  private settle(err: Error | undefined): void {
    if (this.settled) return;
    this.settled = true;
    this.done(err, err ? undefined : this.results);
  }
}

/**
 * A JS value as the text (or bytes) of a Postgres parameter, as pg encodes a query's values:
 * null for null/undefined, bytes for a Buffer or typed array (sent in binary), a Postgres array
 * literal for an array, JSON for any other object, local time with its offset for a Date (as pg
 * sends it, so a \`timestamp\` or \`date\` parameter means the same on both paths). An invalid Date
 * or a circular object throws here, before anything is sent.
 */
export function toWire(value: unknown): Wire {
  if (value === null || value === undefined) return null;
  if (typeof value !== 'object') return String(value);
  if (Buffer.isBuffer(value)) return value;
  if (ArrayBuffer.isView(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof Date) return dateText(value);
  if (Array.isArray(value)) return arrayLiteral(value);
  return JSON.stringify(value);
}

function arrayLiteral(values: unknown[]): string {
  const items = values.map((v) => {
    if (v === null || v === undefined) return 'NULL';
    if (Array.isArray(v)) return arrayLiteral(v);
    if (ArrayBuffer.isView(v)) {
      return `"\\\\x${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')}"`;
    }
    return `"${(toWire(v) as string).replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  });
  return `{${items.join(',')}}`;
}

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

function dateText(d: Date): string {
  if (Number.isNaN(d.getTime())) throw new RangeError('an invalid Date cannot be sent to Postgres');
  let year = d.getFullYear();
  const bc = year < 1;
  if (bc) year = Math.abs(year) + 1; // year 0 is 1 BC
  const offset = -d.getTimezoneOffset();
  const zone = `${offset < 0 ? '-' : '+'}${pad(Math.floor(Math.abs(offset) / 60))}:${pad(Math.abs(offset) % 60)}`;
  return (
    `${pad(year, 4)}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:` +
    `${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}${zone}${bc ? ' BC' : ''}`
  );
}
