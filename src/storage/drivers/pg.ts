import pg from 'pg';
import { createHash } from 'node:crypto';
import { DatabaseUnavailableError } from '../../errors.ts';
import type { Db, QueryOptions, QueryResult, Queryable, Statement } from '../db.ts';
import { Connection, type Start } from './pg-connection.ts';
import { classify, describeReason, isConnectionFailure } from './pg-failures.ts';
import { together } from './pg-together.ts';

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

/** The defaults of HERALD_DB_CONNECT_TIMEOUT_MS, HERALD_DB_STATEMENT_TIMEOUT_MS, HERALD_DB_IDLE_TX_TIMEOUT_MS. */
export const PG_TIMEOUT_DEFAULTS = { connectTimeoutMs: 5_000, statementTimeoutMs: 30_000, idleInTransactionTimeoutMs: 60_000 };

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
/** How often the LISTEN connection, which otherwise only waits, checks that the server answers. */
const LISTEN_HEARTBEAT_MS = 30_000;
const LISTEN_RETRY_MAX_MS = 5_000;

type Results = QueryResult<Record<string, unknown>>[];

/**
 * Runs `fn` in a transaction on `conn` (checked out by the caller). BEGIN is not a round trip of
 * its own: it goes out with the first statement (runTogether), which is also when Postgres would
 * take the transaction's snapshot anyway. Each method hands its statements to the connection before
 * any await, so statements issued concurrently reach it in call order, BEGIN first. A connection
 * lost before COMMIT was sent rolled the transaction back (outcome known); lost after, unknown.
 */
async function inTransaction<T>(conn: Connection, fn: (tx: Queryable) => Promise<T>, begin?: Statement): Promise<T> {
  let opened = false;
  const lead: Statement[] = begin ? [BEGIN, begin] : [BEGIN];
  /** Sends `statements`, preceded by BEGIN if this is the transaction's first. */
  const run = (statements: Statement[]): Promise<Results> => {
    if (opened) return conn.promise(together(statements), false);
    // together() throws synchronously, having sent nothing, when a value cannot be sent: then the
    // transaction is still unopened and the next statement opens it.
    const start = together([...lead, ...statements]);
    opened = true;
    return conn.promise<Results>(start, false).then((r) => r.slice(lead.length));
  };
  const tx: Queryable = {
    async query<R>(text: string, values?: unknown[], qopts?: QueryOptions): Promise<QueryResult<R>> {
      if (!opened) return (await run([{ text, values: values ?? [], prepare: qopts?.prepare }]))[0] as QueryResult<R>;
      return asResult<R>(await conn.query(queryConfig(text, values, qopts), false));
    },
    async exec(sql) {
      const opening = opened ? undefined : run([]);
      await Promise.all([opening, conn.query(sql, false)]);
    },
    runTogether: async (statements) => run(statements),
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
  const connectTimeoutMs = opts.connectTimeoutMs ?? PG_TIMEOUT_DEFAULTS.connectTimeoutMs;
  const statementTimeoutMs = opts.statementTimeoutMs ?? PG_TIMEOUT_DEFAULTS.statementTimeoutMs;
  const idleInTransactionTimeoutMs = opts.idleInTransactionTimeoutMs ?? PG_TIMEOUT_DEFAULTS.idleInTransactionTimeoutMs;
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

  /** One statement (or runTogether) on a pooled connection of its own: it commits by itself. */
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

  const listeners = new Map<string, Set<(payload: string) => void>>();
  const dispatch = (channel: string, payload: string) => {
    for (const fn of listeners.get(channel) ?? []) {
      try {
        fn(payload);
      } catch (err) {
        // A handler's bug must not escape into pg's socket callback (it would kill the process).
        opts.onError?.(err as Error);
      }
    }
  };

  // The LISTEN connection: one per process, outside the pool. Lost, it is made again with backoff
  // and subscribed to every channel again; the workers' polling covers the gap.
  let listenConn: Connection | undefined;
  let listenConnecting: Promise<Connection> | undefined;
  /** The listen connection's backend, whose NOTIFYs come back to it and are skipped. */
  let ownPid: number | undefined;
  let listenRetry: NodeJS.Timeout | undefined;
  let listenRetryMs = 0;
  const subscriptions = new Map<string, Promise<void>>();
  let closed = false;
  // LISTEN, NOTIFY and SELECT 1 are instant: bounded like any statement, or by twice the connect
  // timeout when statement timeouts are off.
  const listenBoundMs = boundMs || 2 * connectTimeoutMs;

  function connectListen(): Promise<Connection> {
    if (listenConn) return Promise.resolve(listenConn);
    if (closed) return Promise.reject(new Error('the database was closed'));
    return (listenConnecting ??= (async () => {
      const client = new pg.Client(clientConfig('herald listen'));
      const conn: Connection = new Connection(client, listenBoundMs, (err) => listenLost(conn, err));
      client.on('notification', (msg) => {
        // Our own wake-ups were dispatched in memory when they were sent.
        if (msg.processId !== ownPid) dispatch(msg.channel, msg.payload ?? '');
      });
      try {
        await client.connect();
        const channels = [...listeners.keys()];
        // One round trip: this connection only carries wake-ups (losing one in a crash is
        // harmless: workers poll), so its NOTIFY transactions need not wait for a WAL flush; every
        // channel this process listens on; and its backend's pid.
        const setup = ['SET synchronous_commit = off', ...channels.map((ch) => `LISTEN ${pg.escapeIdentifier(ch)}`), 'SELECT pg_backend_pid() AS pid'];
        const res = (await conn.query(setup.join('; '), false)) as pg.QueryResult | pg.QueryResult[];
        ownPid = (Array.isArray(res) ? res.at(-1)! : res).rows[0].pid;
        if (conn.broken) throw conn.broken;
        listenConn = conn;
        listenRetryMs = 0;
        return conn;
      } catch (err) {
        conn.discard(err as Error);
        client.end().catch(() => {});
        scheduleListenRetry();
        throw classify(err, false);
      } finally {
        listenConnecting = undefined;
      }
    })());
  }

  function listenLost(conn: Connection, err: Error): void {
    if (closed || listenConn !== conn) return; // still connecting: connectListen's catch retries
    listenConn = undefined;
    opts.onError?.(err);
    conn.client.end().catch(() => {});
    scheduleListenRetry();
  }

  function scheduleListenRetry(): void {
    if (closed || listenRetry || listeners.size === 0) return;
    listenRetryMs = Math.min(Math.max(listenRetryMs * 2, 100), LISTEN_RETRY_MAX_MS);
    listenRetry = setTimeout(() => {
      listenRetry = undefined;
      connectListen().catch(() => {}); // a failure schedules the next attempt
    }, listenRetryMs * (0.5 + Math.random() / 2));
    listenRetry.unref();
  }

  // A server that vanished without a word (no reset) leaves an idle connection silent forever:
  // the heartbeat's query then times out, which drops the connection and starts the reconnect.
  const heartbeat = setInterval(() => {
    listenConn?.query('SELECT 1', false).catch(() => {});
  }, LISTEN_HEARTBEAT_MS);
  heartbeat.unref();

  // Coalesced wake-ups: at most one NOTIFY statement in flight, and under a steady flow one every
  // NOTIFY_GAP_MS at most; calls meanwhile fold into the next. NOTIFYs only reach other processes
  // (this one was woken in memory), whose workers are then at most that much later — and each
  // NOTIFY is a round trip and a commit (~6 µs per event at one per group commit).
  const NOTIFY_GAP_MS = 5;
  const wakeQueued = new Set<string>();
  let waking: Promise<void> | undefined;
  let lastNotifyAt = -Infinity;

  function wake(channel: string): void {
    dispatch(channel, '');
    if (closed) return;
    wakeQueued.add(channel);
    waking ??= sendWakes().finally(() => (waking = undefined));
  }

  async function sendWakes(): Promise<void> {
    try {
      while (wakeQueued.size > 0 && !closed) {
        const wait = lastNotifyAt + NOTIFY_GAP_MS - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, Math.ceil(wait)));
        if (closed) break;
        const channels = [...wakeQueued];
        wakeQueued.clear();
        // While the listen connection is down and waiting to reconnect, the NOTIFY is dropped:
        // the other processes poll.
        const conn = listenConn ?? (listenRetry ? undefined : await connectListen());
        if (!conn) continue;
        await conn.query(channels.map((ch) => `NOTIFY ${pg.escapeIdentifier(ch)}`).join('; '), false);
        lastNotifyAt = performance.now();
      }
    } catch (err) {
      wakeQueued.clear();
      opts.onError?.(err as Error);
    }
  }

  /** A session on one connection (the migration lock's): its statements commit by themselves. */
  const onConnection = (conn: Connection): Queryable => ({
    async query<R>(text: string, values?: unknown[], qopts?: QueryOptions) {
      return asResult<R>(await conn.query(queryConfig(text, values, qopts), true));
    },
    async exec(sql) {
      await conn.query(sql, true);
    },
    runTogether: async (statements) => conn.promise<Results>(together(statements), true),
  });

  return {
    kind: 'postgres',
    async query<T>(text: string, values?: unknown[], qopts?: QueryOptions): Promise<QueryResult<T>> {
      return asResult<T>(await standalone<pg.QueryResult>(() => sendQuery(queryConfig(text, values, qopts))));
    },
    async exec(sql: string) {
      await standalone(() => sendQuery(sql)); // no values: simple protocol, several statements allowed
    },
    runTogether: (statements) => standalone<Results>(() => together(statements)),
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
          wake,
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
    async listen(channel, onNotify) {
      // Registered before any await: concurrent listens on one channel all stay subscribed.
      let set = listeners.get(channel);
      if (!set) listeners.set(channel, (set = new Set()));
      set.add(onNotify);
      let subscribed = subscriptions.get(channel);
      if (!subscribed) {
        subscribed = (async () => {
          const conn = await connectListen();
          await conn.query(`LISTEN ${pg.escapeIdentifier(channel)}`, false);
        })().catch((err: Error) => {
          // Down now: the reconnect subscribes to every channel, this one included; polling
          // covers the meantime.
          opts.onError?.(err);
          scheduleListenRetry();
        });
        subscriptions.set(channel, subscribed);
      }
      await subscribed;
      return async () => {
        set.delete(onNotify);
      };
    },
    wake,
    async close() {
      closed = true;
      clearInterval(heartbeat);
      clearTimeout(listenRetry);
      await waking;
      await listenConnecting?.catch(() => {});
      await listenConn?.client.end().catch(() => {});
      await pool.end();
    },
  };
}
