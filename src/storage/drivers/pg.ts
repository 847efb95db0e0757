import pg from 'pg';
import { createHash } from 'node:crypto';
import type { Db, QueryOptions, QueryResult, Queryable, Statement } from '../db.ts';
import { runTogether } from './pg-together.ts';

// Return timestamps and bigints as the same JS types PGlite gives, so callers see one shape.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

export interface PgOptions {
  connectionString: string;
  max?: number;
  onError?: (err: Error) => void;
}

/** Prepared statements are named by their text's hash, so one text always maps to one name. */
const statementNames = new Map<string, string>();
function statementName(text: string): string {
  let name = statementNames.get(text);
  if (!name) statementNames.set(text, (name = `herald_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`));
  return name;
}

/**
 * Sends one query and settles when its answer is in. pg's callback form, not its promise form:
 * measured on this code's inbox query, the promise form's result chain survives young-generation
 * GCs (scavenges of 5–12 ms every ~70 ms at c=1, where the callback form's take 0.3–0.6 ms) —
 * those pauses were the request tail.
 */
function send(client: pg.ClientBase | pg.Pool, config: pg.QueryConfig | string): Promise<pg.QueryResult> {
  return new Promise((resolve, reject) => {
    client.query(config as pg.QueryConfig, (err: Error | undefined, res: pg.QueryResult) => (err ? reject(err) : resolve(res)));
  });
}

const BEGIN: Statement = { text: 'BEGIN', values: [], prepare: true };

function wrap(client: pg.PoolClient | pg.Pool): Queryable {
  return {
    async query<T>(text: string, values?: unknown[], opts?: QueryOptions): Promise<QueryResult<T>> {
      const res = await send(client, opts?.prepare ? { name: statementName(text), text, values } : { text, values });
      return { rows: res.rows as T[], rowCount: res.rowCount ?? 0 };
    },
    async exec(sql: string) {
      await send(client, sql); // no values: simple protocol, several statements allowed
    },
    async runTogether(statements) {
      if (!(client instanceof pg.Pool)) return runTogether(client, statements);
      const c = await client.connect();
      try {
        return await runTogether(c, statements);
      } finally {
        c.release();
      }
    },
  };
}

export function openPg(opts: PgOptions): Db {
  const pool = new pg.Pool({ connectionString: opts.connectionString, max: opts.max ?? 10 });
  // An idle client that loses its connection must not crash the process; the pool replaces it.
  pool.on('error', (err) => opts.onError?.(err));
  const listeners = new Map<string, Set<(payload: string) => void>>();
  const dispatch = (channel: string, payload: string) => {
    for (const fn of listeners.get(channel) ?? []) fn(payload);
  };
  let listenClient: pg.Client | undefined;
  let listenClientReady: Promise<pg.Client> | undefined;
  /** The listen connection's backend, whose NOTIFYs come back to it and are skipped. */
  let ownPid: number | undefined;
  let closed = false;

  async function getListenClient(): Promise<pg.Client> {
    if (listenClient) return listenClient;
    listenClientReady ??= (async () => {
      const c = new pg.Client({ connectionString: opts.connectionString });
      c.on('error', (err) => {
        opts.onError?.(err);
        // Forget the broken connection; the next listen() or wake() reconnects. Polling covers the gap.
        listenClient = undefined;
        listenClientReady = undefined;
      });
      c.on('notification', (msg) => {
        // Our own wake-ups were dispatched in memory when they were sent.
        if (msg.processId !== ownPid) dispatch(msg.channel, msg.payload ?? '');
      });
      await c.connect();
      // This connection only carries wake-ups: losing one in a crash is harmless (workers poll),
      // so its NOTIFY transactions need not wait for a WAL flush.
      await send(c, 'SET synchronous_commit = off');
      // After a reconnect, subscribe again to everything this process listens on.
      for (const channel of listeners.keys()) await send(c, `LISTEN ${pg.escapeIdentifier(channel)}`);
      ownPid = (c as unknown as { processID: number }).processID;
      listenClient = c;
      return c;
    })();
    return listenClientReady;
  }

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
        const client = await getListenClient();
        await send(client, channels.map((ch) => `NOTIFY ${pg.escapeIdentifier(ch)}`).join('; '));
        lastNotifyAt = performance.now();
      }
    } catch (err) {
      wakeQueued.clear();
      opts.onError?.(err as Error);
    }
  }

  return {
    kind: 'postgres',
    ...wrap(pool),
    async transaction(fn, opts) {
      const client = await pool.connect();
      // BEGIN is not a round trip of its own: it goes out with the first statement (runTogether),
      // which is also when Postgres would take the transaction's snapshot anyway.
      let opened = false;
      const lead: Statement[] = opts?.begin ? [BEGIN, opts.begin] : [BEGIN];
      /** Sends `statements`, preceded by BEGIN if this is the transaction's first. */
      const together = (statements: Statement[]) => {
        if (opened) return runTogether(client, statements);
        // runTogether throws synchronously, having sent nothing, when a value cannot be sent:
        // then the transaction is still unopened and the next statement opens it.
        const pending = runTogether(client, [...lead, ...statements]);
        opened = true;
        return pending.then((r) => r.slice(lead.length));
      };
      const plain = wrap(client);
      // Each method hands its statements to the client before any await, so statements issued
      // concurrently reach the connection in call order, BEGIN first.
      const tx: Queryable = {
        async query<T>(text: string, values?: unknown[], qopts?: QueryOptions): Promise<QueryResult<T>> {
          if (opened) return plain.query<T>(text, values, qopts);
          const [result] = await together([{ text, values: values ?? [], prepare: qopts?.prepare }]);
          return result as QueryResult<T>;
        },
        async exec(sql) {
          if (!opened) await together([]);
          await plain.exec(sql);
        },
        runTogether: async (statements) => together(statements),
      };
      try {
        const result = await fn(tx);
        if (opened) await send(client, 'COMMIT');
        return result;
      } catch (err) {
        if (opened) await send(client, 'ROLLBACK').catch(() => {});
        throw err;
      } finally {
        client.release();
      }
    },
    async withAdvisoryLock(key, fn) {
      const client = await pool.connect();
      try {
        await send(client, { text: 'SELECT pg_advisory_lock(hashtext($1))', values: [key] });
        const session: Db = {
          kind: 'postgres',
          ...wrap(client),
          transaction: async (f) => {
            await send(client, 'BEGIN');
            try {
              const r = await f(wrap(client));
              await send(client, 'COMMIT');
              return r;
            } catch (err) {
              await send(client, 'ROLLBACK').catch(() => {});
              throw err;
            }
          },
          withAdvisoryLock: () => Promise.reject(new Error('nested advisory locks are not supported')),
          listen: () => Promise.reject(new Error('listen is not available on a locked session')),
          wake,
          close: async () => {},
        };
        return await fn(session);
      } finally {
        await send(client, { text: 'SELECT pg_advisory_unlock(hashtext($1))', values: [key] }).catch(() => {});
        client.release();
      }
    },
    async listen(channel, onNotify) {
      let set = listeners.get(channel);
      const client = await getListenClient();
      if (!set) {
        set = new Set();
        listeners.set(channel, set);
        await send(client, `LISTEN ${pg.escapeIdentifier(channel)}`);
      }
      set.add(onNotify);
      return async () => {
        set!.delete(onNotify);
      };
    },
    wake,
    async close() {
      closed = true;
      await waking;
      await listenClient?.end().catch(() => {});
      await pool.end();
    },
  };
}
