/**
 * The storage seam. Everything above storage talks to Postgres through this small interface, so the
 * same queries run on a Postgres server (`pg`) and on embedded PGlite.
 *
 * Failures: a SQL error (a constraint, a cancelled statement) rejects as the driver reports it. A
 * connection that could not be had or was lost — the server down or restarting, a terminated
 * backend, a connect, pool-wait or client-side query timeout — rejects with DatabaseUnavailableError
 * (src/errors.ts), never anything else, and never kills the process: its `outcomeUnknown` says
 * whether something that commits by itself (a COMMIT; a statement or pipeline outside a
 * transaction) had been sent, so the write may have happened.
 */
export interface QueryResult<T> {
  rows: T[];
  /** Rows written by INSERT/UPDATE/DELETE. Not meaningful for SELECT on every driver: use rows.length. */
  rowCount: number;
}

export interface QueryOptions {
  /**
   * Keep this statement prepared on each connection (a Postgres server plans it once per
   * connection instead of on every call: ~0.5 ms saved on the claim query). Only for statements
   * whose text is fixed — each distinct text stays prepared for the connection's life.
   */
  prepare?: boolean;
}

export interface Queryable {
  query<T = Record<string, unknown>>(text: string, values?: unknown[], opts?: QueryOptions): Promise<QueryResult<T>>;
  /** Runs multi-statement SQL without parameters (migrations). */
  exec(sql: string): Promise<void>;
  /**
   * Runs the statements in order as one unit: on their own, one transaction that commits when the
   * last succeeds; inside a transaction, part of it. An error rolls back the ones before it (with
   * the enclosing transaction) and the ones after it never run. On a Postgres server they travel in
   * one round trip, where a query each costs one (plus BEGIN and COMMIT for a transaction of
   * their own). Results in the statements' order.
   */
  pipeline(statements: Statement[]): Promise<QueryResult<Record<string, unknown>>[]>;
}

export interface Db extends Queryable {
  readonly kind: 'postgres' | 'pglite';
  /**
   * Runs `fn` in one transaction; commits when it resolves, rolls back when it throws. `begin` is a
   * statement that opens it (the inbox's identity, a batch's planner settings). On Postgres, BEGIN
   * and `begin` travel with fn's first statement: a transaction costs its statements' round
   * trips plus one for COMMIT.
   */
  transaction<T>(fn: (tx: Queryable) => Promise<T>, opts?: { begin?: Statement }): Promise<T>;
  /**
   * Holds a session-level advisory lock for the duration of `fn` (on one connection), so several
   * processes starting at once migrate one after another.
   */
  withAdvisoryLock<T>(key: string, fn: (session: Db) => Promise<T>): Promise<T>;
  /** Subscribes to a NOTIFY channel. Returns an unsubscribe function. */
  listen(channel: string, onNotify: (payload: string) => void): Promise<() => Promise<void>>;
  /**
   * Wakes the channel's listeners: this process's at once (in memory), other processes' by a
   * NOTIFY sent on its own, outside any writer's transaction, and coalesced (while one is in
   * flight, later calls fold into one more). Call only after the writes it announces committed.
   * A lost wake-up only delays work until the next poll.
   */
  wake(channel: string): void;
  /** PGlite only: the data directory as a tarball, which StorageOptions.pgliteDump starts from. */
  dumpDataDir?(): Promise<Blob>;
  close(): Promise<void>;
}

/** A statement plus its `$n` values. All runtime SQL is built in `storage/queries/`. */
export interface Statement {
  text: string;
  values: unknown[];
  /** As QueryOptions.prepare: only for statements whose text is fixed. */
  prepare?: boolean;
}
