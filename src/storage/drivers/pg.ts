import pg from 'pg';
import { createHash } from 'node:crypto';
import { DatabaseUnavailableError } from '../../errors.ts';
import { DB_TIMEOUT_DEFAULTS } from '../../config/settings.ts';
import type { Db, QueryOptions, QueryResult, Queryable, Statement } from '../db.ts';
import { Connection, type Start } from './pg-connection.ts';
import { classify, describeReason, isConnectionFailure } from './pg-failures.ts';
import { createPgNotifier } from './pg-notify.ts';
import { pipelined } from './pg-pipeline.ts';

// Return timestamps and bigints as the same JS types PGlite gives, so callers see one shape.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

export interface PgOptions {
  connectionString: string;
  max?: number;
  onError?: (err: Error) => void;
  /** Connecting, and waiting for a pooled connection to be free; ms. */
  connectTimeoutMs?: number;
  /** statement_timeout of herald's connections (ms; 0: herald sets none). Also bounds each query client-side. */
  statementTimeoutMs?: number;
  /** idle_in_transaction_session_timeout of herald's connections (ms; 0: herald sets none). */
  idleInTransactionTimeoutMs?: number;
}


/**
 * How long herald waits for a query's answer before it gives the connection up: statement_timeout,
 * plus as much again (at most 5 s more) for the server's cancellation to come back. Past it the
 * server is not answering at all (statement_timeout would have fired), e.g. a network that drops
 * packets. 0 when statement timeouts are off.
 */
export function queryBoundMs(statementTimeoutMs: number): number {
  return statementTimeoutMs > 0 ? statementTimeoutMs + Math.min(statementTimeoutMs, 5_000) : 0;
}

/** host:port of a connection string, for messages (never its credentials). */
export function addressOf(connectionString: string): string {
  try {
    const u = new URL(connectionString);
    const host = u.searchParams.get('host') ?? (decodeURIComponent(u.hostname) || 'localhost');
    const port = u.searchParams.get('port') ?? (u.port || '5432');
    return host.startsWith('/') ? `${host}/.s.PGSQL.${port}` : `${host}:${port}`;
  } catch {
    return 'the address in the connection string';
  }
}

/** Prepared statements are named by their text's hash, so one text always maps to one name. */
const statementNames = new Map<string, string>();
function statementName(text: string): string {
  let name = statementNames.get(text);
  if (!name) statementNames.set(text, (name = `herald_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`));
  return name;
}

const queryConfig = (text: string, values?: unknown[], opts?: QueryOptions): pg.QueryConfig =>
  opts?.prepare ? { name: statementName(text), text, values } : { text, values };
const asResult = <T>(res: pg.QueryResult): QueryResult<T> => ({ rows: res.rows as T[], rowCount: res.rowCount ?? 0 });

const BEGIN: Statement = { text: 'BEGIN', values: [], prepare: true };

type Results = QueryResult<Record<string, unknown>>[];

/**
 * Runs `fn` in a transaction on `conn` (checked out by the caller). BEGIN is not a round trip of
 * its own: it goes out with the first statement (pipeline), which is also when Postgres would
 * take the transaction's snapshot anyway. Each method hands its statements to the connection before
 * any await, so statements issued concurrently reach it in call order, BEGIN first. A connection
 * lost before COMMIT was sent rolled the transaction back (outcome known); lost after, unknown.
 */
async function inTransaction<T>(conn: Connection, fn: (tx: Queryable) => Promise<T>, begin?: Statement): Promise<T> {
  let opened = false;
  const opening: Statement[] = begin ? [BEGIN, begin] : [BEGIN];
  /** Sends `statements`, preceded by BEGIN if this is the transaction's first. */
  const run = (statements: Statement[]): Promise<Results> => {
    if (opened) return conn.promise(pipelined(statements), false);
    // pipelined() throws synchronously, having sent nothing, when a value cannot be sent: then the
    // transaction is still unopened and the next statement opens it.
    const start = pipelined([...opening, ...statements]);
    opened = true;
    return conn.promise<Results>(start, false).then((r) => r.slice(opening.length));
  };
  const tx: Queryable = {
    async query<R>(text: string, values?: unknown[], qopts?: QueryOptions): Promise<QueryResult<R>> {
      if (!opened) return (await run([{ text, values: values ?? [], prepare: qopts?.prepare }]))[0] as QueryResult<R>;
      return asResult<R>(await conn.query(queryConfig(text, values, qopts), false));
    },
    async exec(sql) {
      const begun = opened ? undefined : run([]);
      await Promise.all([begun, conn.query(sql, false)]);
    },
    pipeline: async (statements) => run(statements),
  };
  try {
    const result = await fn(tx);
    if (opened) await conn.query('COMMIT', true);
    return result;
  } catch (err) {
    if (opened && !conn.broken) await conn.query('ROLLBACK', false).catch((e: Error) => conn.discard(e));
    throw err; // the statements' own errors come classified (a lost connection is a DatabaseUnavailableError)
  }
}

export function openPg(opts: PgOptions): Db {
  const connectTimeoutMs = opts.connectTimeoutMs ?? DB_TIMEOUT_DEFAULTS.connectTimeoutMs;
  const statementTimeoutMs = opts.statementTimeoutMs ?? DB_TIMEOUT_DEFAULTS.statementTimeoutMs;
  const idleInTransactionTimeoutMs = opts.idleInTransactionTimeoutMs ?? DB_TIMEOUT_DEFAULTS.idleInTransactionTimeoutMs;
  const boundMs = queryBoundMs(statementTimeoutMs);
  const max = opts.max ?? 10;
  const address = addressOf(opts.connectionString);
  const clientConfig = (name: string): pg.ClientConfig => ({
    connectionString: opts.connectionString,
    connectionTimeoutMillis: connectTimeoutMs,
    // Sent in the startup packet: every statement on these connections is bounded server-side,
    // and so is a transaction left open (a stalled caller must not hold locks and a snapshot).
    statement_timeout: statementTimeoutMs || undefined,
    idle_in_transaction_session_timeout: idleInTransactionTimeoutMs || undefined,
    keepAlive: true,
    fallback_application_name: name,
  });

  const pool = new pg.Pool({ ...clientConfig('herald'), max });
  // An idle client that loses its connection must not crash the process; the pool discards it.
  pool.on('error', (err) => opts.onError?.(err));
  // Every client gets its Connection (and so its 'error' listener) when it is made, before use.
  const connections = new WeakMap<pg.ClientBase, Connection>();
  pool.on('connect', (client) => void connections.set(client, new Connection(client as pg.Client, boundMs)));
  const connectionOf = (client: pg.PoolClient): Connection => {
    let conn = connections.get(client);
    if (!conn) connections.set(client, (conn = new Connection(client, boundMs)));
    return conn;
  };

  /** Why no pooled connection could be had, as the Db seam reports it. */
  function acquireFailure(err: Error): Error {
    if (/^timeout exceeded when trying to connect/.test(err.message)) {
      return new DatabaseUnavailableError(`no database connection could be had within ${connectTimeoutMs} ms (all ${max} busy or connecting)`, false, { cause: err });
    }
    if (/connection timeout|^timeout expired/.test(err.message)) {
      return new DatabaseUnavailableError(`the database at ${address} did not answer within ${connectTimeoutMs} ms`, false, { cause: err });
    }
    if (isConnectionFailure(err)) {
      return new DatabaseUnavailableError(`cannot connect to the database at ${address} (${describeReason(err)})`, false, { cause: err });
    }
    return err; // e.g. a refused password: not an outage
  }

  interface Lease {
    client: pg.PoolClient;
    conn: Connection;
  }
  function acquire(): Promise<Lease> {
    return new Promise((resolve, reject) =>
      pool.connect((err, client) => (err || !client ? reject(acquireFailure(err ?? new Error('no client'))) : resolve({ client, conn: connectionOf(client) }))),
    );
  }
  /** Back to the pool, or, if it broke (lost, timed out, a failed ROLLBACK), discarded by pg-pool. */
  const release = ({ client, conn }: Lease) => client.release(conn.broken ?? undefined);

  /** One statement (or pipeline) on a pooled connection of its own: it commits by itself. */
  function standalone<T>(start: () => Start): Promise<T> {
    let begin: Start;
    try {
      begin = start(); // may throw before anything is sent (a value that cannot be encoded)
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise((resolve, reject) =>
      pool.connect((err, client) => {
        if (err || !client) return reject(acquireFailure(err ?? new Error('no client')));
        const conn = connectionOf(client);
        conn.send(begin, (e, result, sent) => {
          client.release(conn.broken ?? undefined);
          if (e) reject(classify(e, sent));
          else resolve(result as T);
        });
      }),
    );
  }
  const sendQuery =
    (config: pg.QueryConfig | string): Start =>
    (client, done) =>
      client.query(config as pg.QueryConfig, (err: Error | undefined, res: pg.QueryResult) => done(err ?? undefined, res));

  // Wake-ups: LISTEN on a connection of their own, coalesced NOTIFYs (pg-notify.ts).
  const notifier = createPgNotifier({ clientConfig, boundMs: boundMs || 2 * connectTimeoutMs, onError: opts.onError });

  /** A session on one connection (the migration lock's): its statements commit by themselves. */
  const onConnection = (conn: Connection): Queryable => ({
    async query<R>(text: string, values?: unknown[], qopts?: QueryOptions) {
      return asResult<R>(await conn.query(queryConfig(text, values, qopts), true));
    },
    async exec(sql) {
      await conn.query(sql, true);
    },
    pipeline: async (statements) => conn.promise<Results>(pipelined(statements), true),
  });

  return {
    kind: 'postgres',
    async query<T>(text: string, values?: unknown[], qopts?: QueryOptions): Promise<QueryResult<T>> {
      return asResult<T>(await standalone<pg.QueryResult>(() => sendQuery(queryConfig(text, values, qopts))));
    },
    async exec(sql: string) {
      await standalone(() => sendQuery(sql)); // no values: simple protocol, several statements allowed
    },
    pipeline: (statements) => standalone<Results>(() => pipelined(statements)),
    async transaction(fn, topts) {
      const lease = await acquire();
      try {
        return await inTransaction(lease.conn, fn, topts?.begin);
      } finally {
        release(lease);
      }
    },
    async withAdvisoryLock(key, fn) {
      const lease = await acquire();
      const { conn } = lease;
      try {
        // Migrations: a long DDL statement, or the wait for another process's migrations, is not
        // a stall. Neither statement_timeout nor the client-side bound applies on this session.
        conn.timeoutMs = 0;
        await conn.query('SET statement_timeout = 0', false);
        await conn.query({ text: 'SELECT pg_advisory_lock(hashtext($1))', values: [key] }, false);
        const session: Db = {
          kind: 'postgres',
          ...onConnection(conn),
          transaction: (f, topts) => inTransaction(conn, f, topts?.begin),
          withAdvisoryLock: () => Promise.reject(new Error('nested advisory locks are not supported')),
          listen: () => Promise.reject(new Error('listen is not available on a locked session')),
          wake: notifier.wake,
          close: async () => {},
        };
        return await fn(session);
      } finally {
        conn.timeoutMs = boundMs;
        if (!conn.broken) {
          // Unlocked and back to its own statement_timeout (the startup packet's) for the pool; if
          // either fails the connection is discarded, which ends the lock too.
          await conn
            .query({ text: 'SELECT pg_advisory_unlock(hashtext($1))', values: [key] }, false)
            .then(() => conn.query('RESET statement_timeout', false))
            .catch((e: Error) => conn.discard(e));
        }
        release(lease);
      }
    },
    listen: notifier.listen,
    wake: notifier.wake,
    async close() {
      await notifier.close();
      await pool.end();
    },
  };
}
