/**
 * The storage seam. Everything above storage talks to Postgres through this small interface, so the
 * same queries run on a Postgres server (`pg`) and on embedded PGlite.
 */
export interface QueryResult<T> {
  rows: T[];
  /** Rows written by INSERT/UPDATE/DELETE. Not meaningful for SELECT on every driver: use rows.length. */
  rowCount: number;
}

export interface Queryable {
  query<T = Record<string, unknown>>(text: string, values?: unknown[]): Promise<QueryResult<T>>;
  /** Runs multi-statement SQL without parameters (migrations). */
  exec(sql: string): Promise<void>;
}

export interface Db extends Queryable {
  readonly kind: 'postgres' | 'pglite';
  /** Runs `fn` in one transaction; commits when it resolves, rolls back when it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * Holds a session-level advisory lock for the duration of `fn` (on one connection), so several
   * processes starting at once migrate one after another.
   */
  withAdvisoryLock<T>(key: string, fn: (session: Db) => Promise<T>): Promise<T>;
  /** Subscribes to a NOTIFY channel. Returns an unsubscribe function. */
  listen(channel: string, onNotify: (payload: string) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

/** A statement plus its `$n` values. All runtime SQL is built in `storage/queries/`. */
export interface Statement {
  text: string;
  values: unknown[];
}
