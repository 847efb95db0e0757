import type pg from 'pg';
import { DatabaseUnavailableError } from '../../errors.ts';
import { classify } from './pg-failures.ts';

/** Hands one query to a pg client and calls back once with its outcome. */
export type Start = (client: pg.Client, done: (err: Error | undefined, result?: unknown) => void) => void;

/** `sent`: the query reached the connection (a write in it may have happened). */
export type Settled = (err: Error | undefined, result: unknown, sent: boolean) => void;

interface Waiting {
  start: Start;
  settled: Settled;
}

/**
 * One Postgres connection as herald uses it: one query at a time, in call order (pg's own
 * per-client queue is deprecated and goes in pg 9, so pg never sees a second query while one is
 * active), with an 'error' listener for its whole life (pg emits 'error' when the socket dies, and
 * an unhandled one kills the process), and a client-side bound on each query: a server that stops
 * answering mid-query (a network that drops packets) never triggers statement_timeout, so past
 * the bound the connection is destroyed and never used again.
 */
export class Connection {
  /** Set once the connection is unusable (lost, or a query timed out): it must be discarded. */
  broken: Error | undefined;
  /** Client-side bound of one query, in ms; 0: none (the migration lock's session). */
  timeoutMs: number;
  private active = false;
  private readonly waiting: Waiting[] = [];

  constructor(
    readonly client: pg.Client,
    timeoutMs: number,
    private readonly onBroken?: (err: Error) => void,
  ) {
    this.timeoutMs = timeoutMs;
    client.on('error', (err) => this.fail(err));
    client.on('end', () => this.fail(new Error('Connection terminated')));
  }

  /** Queues `start`; `settled` is called once. Never throws. */
  send(start: Start, settled: Settled): void {
    if (this.broken) return settled(this.broken, undefined, false);
    if (this.active) return void this.waiting.push({ start, settled });
    this.run(start, settled);
  }

  /**
   * Runs `start` as a promise. A connection failure rejects with a DatabaseUnavailableError, whose
   * outcome is unknown when `commits` (the statement commits by itself: a COMMIT, or one outside a
   * transaction) and it was sent; any other error is the statement's own.
   */
  promise<T>(start: Start, commits: boolean): Promise<T> {
    return new Promise((resolve, reject) =>
      this.send(start, (err, result, sent) => (err ? reject(classify(err, commits && sent)) : resolve(result as T))),
    );
  }

  /**
   * A plain query, through pg's Query in its callback form (measured on the inbox query: the
   * promise form's result chain survived young-generation GCs, 5-12 ms scavenges at c=1 where
   * the callback form's took 0.3-0.6 ms).
   */
  query(config: pg.QueryConfig | string, commits: boolean): Promise<pg.QueryResult> {
    return this.promise((client, done) => {
      client.query(config as pg.QueryConfig, (err: Error | undefined, res: pg.QueryResult) => done(err ?? undefined, res));
    }, commits);
  }

  private run(start: Start, settled: Settled): void {
    this.active = true;
    let over = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (err: Error | undefined, result?: unknown) => {
      if (over) return;
      over = true;
      if (timer) clearTimeout(timer);
      this.active = false;
      // The next waiting query goes first, then the caller hears: a caller that releases the
      // connection on its answer must find nothing of its own still queued on it.
      this.next();
      settled(err, result, true);
    };
    if (this.timeoutMs > 0) {
      const ms = this.timeoutMs;
      timer = setTimeout(() => {
        const err = new DatabaseUnavailableError(`the database did not answer within ${ms} ms`);
        this.fail(err); // first: nothing waiting may start on this connection
        finish(err);
        // pg's public way to drop a connection with a query in flight: end() destroys the socket.
        this.client.end().catch(() => {});
      }, ms);
    }
    try {
      start(this.client, finish);
    } catch (err) {
      // Thrown before anything was sent (a value that cannot be encoded).
      over = true;
      if (timer) clearTimeout(timer);
      this.active = false;
      this.next();
      settled(err as Error, undefined, false);
    }
  }

  /** Marks the connection unusable (e.g. its ROLLBACK failed): released, it is discarded. */
  discard(err: Error): void {
    this.fail(err);
  }

  private next(): void {
    const w = this.waiting.shift();
    if (!w) return;
    if (this.broken) {
      w.settled(this.broken, undefined, false);
      return this.drain();
    }
    this.run(w.start, w.settled);
  }

  private fail(err: Error): void {
    if (this.broken) return;
    this.broken = err;
    this.onBroken?.(err);
    // The query in flight (if any) is failed by pg itself; the ones waiting were never sent.
    this.drain();
  }

  private drain(): void {
    for (const w of this.waiting.splice(0)) w.settled(this.broken!, undefined, false);
  }
}
