import pg from 'pg';
import { Connection } from './pg-connection.ts';
import { classify } from './pg-failures.ts';

/** How often the LISTEN connection, which otherwise only waits, checks that the server answers. */
const LISTEN_HEARTBEAT_MS = 30_000;
const LISTEN_RETRY_MAX_MS = 5_000;

export interface PgNotifierOptions {
  /** The pool's client settings, under this connection's application name. */
  clientConfig(name: string): pg.ClientConfig;
  /** LISTEN, NOTIFY and SELECT 1 are instant: the bound of any statement, or twice the connect timeout when statements are unbounded. */
  boundMs: number;
  onError?: (err: Error) => void;
}

/**
 * The Postgres driver's wake-ups (Db.listen and Db.wake): one LISTEN connection per process,
 * outside the pool, that reconnects by itself, and NOTIFYs coalesced on it. Wake-ups are hints:
 * a lost one only delays work until the workers' next poll.
 */
export function createPgNotifier(opts: PgNotifierOptions) {
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
  const listenBoundMs = opts.boundMs;

  function connectListen(): Promise<Connection> {
    if (listenConn) return Promise.resolve(listenConn);
    if (closed) return Promise.reject(new Error('the database was closed'));
    return (listenConnecting ??= (async () => {
      const client = new pg.Client(opts.clientConfig('herald listen'));
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

async function listen(channel: string, onNotify: (payload: string) => void): Promise<() => Promise<void>> {
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
  }

  async function close(): Promise<void> {
    closed = true;
    clearInterval(heartbeat);
    clearTimeout(listenRetry);
    await waking;
    await listenConnecting?.catch(() => {});
    await listenConn?.client.end().catch(() => {});
  }

  return { listen, wake, close };
}
