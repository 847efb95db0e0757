import type { Queryable, Statement } from '../db.ts';
import { reportToInvoker } from './http-workflows.ts';
import { fencedJob, fenceValues, JOBS_CHANNEL, type JobFence } from './jobs.ts';

/** Job kinds that execute a run, by run kind (http runs are delivered over the QStash protocol). */
export const RUN_JOB = { code: 'workflow.run', http: 'workflow.deliver' } as const;
export const runJobKey = (runId: string) => `run:${runId}`;

export type RunState = 'running' | 'completed' | 'failed' | 'cancelled';

/**
 * "The run is still running", in a form no index matches, for statements that find a run by its
 * id. Written `state = 'running'`, it also matches herald_runs_state_idx (state, created_at), and
 * when the statistics saw few running runs (a quiet system analyzed with every run ended, or a
 * young one) the planner ties that index with the primary key and may take it: it then walks every
 * running run to find one. A burst of 3,000 running runs made each finish read ~830 index entries
 * (4 ms instead of 0.1). The id lookup is always the plan wanted.
 */
export const stillRunning = (alias = '') => `${alias ? `${alias}.` : ''}state || '' = 'running'`;

export interface RunRow {
  id: string;
  kind: 'code' | 'http';
  workflow: string;
  state: RunState;
  input: unknown;
  result: unknown;
  error: string | null;
  event_id: string | null;
  tenant_id: string | null;
  max_attempts: number;
  /** http runs: the trigger's configuration (HttpRunConfig). */
  config: Record<string, unknown>;
  created_at: Date;
  updated_at: Date;
  finished_at: Date | null;
}

const RUN_COLUMNS = `id, kind, workflow, state, input, result, error, event_id, tenant_id, max_attempts, config,
  created_at, updated_at, finished_at`;

export interface NewRun {
  id: string;
  kind: 'code' | 'http';
  workflow: string;
  input: unknown;
  eventId: string | null;
  tenantId: string | null;
  maxAttempts: number;
}

/** Inserts a run and queues its first execution, in the caller's transaction. */
export async function insertRun(tx: Queryable, run: NewRun): Promise<{ id: string; created_at: Date }> {
  const { rows } = await tx.query<{ id: string; created_at: Date }>(
    `WITH r AS (
       INSERT INTO herald_runs (id, kind, workflow, input, event_id, tenant_id, max_attempts)
       VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7)
       RETURNING id, created_at),
     j AS (
       INSERT INTO herald_jobs (kind, payload, key, max_attempts)
       SELECT $8, jsonb_build_object('runId', r.id), $9, $7 FROM r
       RETURNING id)
     SELECT r.id, r.created_at, (SELECT pg_notify('${JOBS_CHANNEL}', '') FROM j) AS woke FROM r`,
    [run.id, run.kind, run.workflow, JSON.stringify(run.input ?? null), run.eventId, run.tenantId, run.maxAttempts,
      RUN_JOB[run.kind], runJobKey(run.id)],
  );
  return rows[0]!;
}

const GET_RUN = `SELECT ${RUN_COLUMNS} FROM herald_runs WHERE id = $1`;

export async function getRun(db: Queryable, id: string): Promise<RunRow | undefined> {
  return (await db.query<RunRow>(GET_RUN, [id], { prepare: true })).rows[0];
}

/**
 * A run and its recorded steps in one round trip and one snapshot (what every execution of a code
 * run reads first, to replay it).
 */
export async function getRunAndSteps(db: Queryable, id: string): Promise<{ run: RunRow | undefined; steps: StepRow[] }> {
  const [run, steps] = await db.runTogether([
    { text: GET_RUN, values: [id], prepare: true },
    { text: GET_STEPS, values: [id], prepare: true },
  ]);
  return { run: run!.rows[0] as RunRow | undefined, steps: (steps!.rows as unknown as StepRow[]).map(normalizeBytes) };
}

/**
 * The run, locked until the transaction ends: a concurrent cancel or finish (an UPDATE of the row)
 * waits for it, or it waits for them and sees the new state. Writes that must not land on an ended
 * run (a waiter, a kept event) check the state read this way. The lock is the one every addition
 * to an http run's history takes (see appendMessage), so a transaction that reads the run this way
 * and then appends never has to upgrade its lock (two upgraders would deadlock).
 */
export async function getRunLocked(tx: Queryable, id: string): Promise<RunRow | undefined> {
  return (await tx.query<RunRow>(`SELECT ${RUN_COLUMNS} FROM herald_runs WHERE id = $1 FOR NO KEY UPDATE`, [id])).rows[0];
}

/**
 * What an ended run leaves behind, as CTEs of the statement that ends it: its waiters, kept events
 * and queued executions/deliveries go. `$1` is the run id, `$2` its job key; `guard` holds only if
 * the run was ended by this statement, `isHttp` only if it is an http run. The deliveries of an
 * http run are matched by payload, which no index covers: that scan is gated on `isHttp`, so
 * ending a code run stays an index lookup however many jobs are queued.
 */
const dropRunWorkCtes = (guard: string, isHttp: string) => `
     dropped_waiters AS (DELETE FROM herald_waiters WHERE run_id = $1 AND ${guard}),
     dropped_events AS (DELETE FROM herald_run_events WHERE run_id = $1 AND ${guard}),
     dropped_run_job AS (DELETE FROM herald_jobs WHERE state = 'queued' AND key = $2 AND ${guard}),
     dropped_deliveries AS (
       DELETE FROM herald_jobs
       WHERE state = 'queued' AND kind = '${RUN_JOB.http}' AND payload->>'runId' = $1 AND ${guard} AND ${isHttp})`;

/**
 * Ends a running run, with its leftover work, in one statement. Returns false if it had already
 * ended (cancelled meanwhile, say). A run started by context.invoke then reports to its invoker.
 */
export async function finishRun(
  tx: Queryable,
  id: string,
  outcome: { state: 'completed'; result: unknown } | { state: 'failed'; error: string },
): Promise<boolean> {
  const { rows } = await tx.query<{ invoked: boolean }>(
    `WITH ended AS (
       UPDATE herald_runs SET state = $3, result = $4::jsonb, error = $5, finished_at = now(), updated_at = now()
       WHERE id = $1 AND ${stillRunning()}
       RETURNING kind, kind = 'http' AND config ? 'invoker' AS invoked),
     ${dropRunWorkCtes('EXISTS (SELECT 1 FROM ended)', "EXISTS (SELECT 1 FROM ended WHERE kind = 'http')")}
     SELECT invoked FROM ended`,
    [
      id,
      runJobKey(id),
      outcome.state,
      outcome.state === 'completed' ? JSON.stringify(outcome.result ?? null) : null,
      outcome.state === 'failed' ? outcome.error.slice(0, 4000) : null,
    ],
    { prepare: true },
  );
  if (rows[0]?.invoked) await reportToInvoker(tx, id);
  return rows.length === 1;
}

/**
 * Completes a code run's execution job and ends the run, in one statement (one round trip, its
 * own transaction): the job row is deleted only while `fence` holds, and the run is ended (with
 * its leftover work) only if it was. `held: false` means the lease was lost and nothing was
 * written; `ended: false` that the run had already ended (cancelled meanwhile). Only for code
 * runs: an http run may have an invoker to report to (finishRun).
 */
export async function finishCodeRun(
  db: Queryable,
  fence: JobFence,
  id: string,
  outcome: { state: 'completed'; result: unknown },
): Promise<{ held: boolean; ended: boolean }> {
  const { rows } = await db.query<{ held: boolean; ended: boolean }>(
    `WITH done AS (DELETE FROM herald_jobs WHERE ${fencedJob(5)} RETURNING 1),
     ended AS (
       UPDATE herald_runs SET state = $3, result = $4::jsonb, finished_at = now(), updated_at = now()
       WHERE id = $1 AND kind = 'code' AND ${stillRunning()} AND EXISTS (SELECT 1 FROM done)
       RETURNING 1),
     ${dropRunWorkCtes('EXISTS (SELECT 1 FROM ended)', 'false')}
     SELECT EXISTS (SELECT 1 FROM done) AS held, EXISTS (SELECT 1 FROM ended) AS ended`,
    [id, runJobKey(id), outcome.state, JSON.stringify(outcome.result ?? null), ...fenceValues(fence)],
    { prepare: true },
  );
  return rows[0]!;
}

export type CancelOutcome = { outcome: 'cancelled' } | { outcome: 'not-found' } | { outcome: 'ended'; state: RunState };

/** Cancels a running run: its waiters, stored events and queued executions go with it. */
export async function cancelRun(tx: Queryable, id: string): Promise<CancelOutcome> {
  const { rows } = await tx.query<{ state: RunState; updated: boolean }>(
    `WITH u AS (
       UPDATE herald_runs SET state = 'cancelled', finished_at = now(), updated_at = now()
       WHERE id = $1 AND ${stillRunning()} RETURNING id)
     SELECT r.state, EXISTS (SELECT 1 FROM u) AS updated FROM herald_runs r WHERE r.id = $1`,
    [id],
  );
  if (!rows[0]) return { outcome: 'not-found' };
  // Not updated: it had already ended (its state, possibly 'cancelled', says how).
  if (!rows[0].updated) return { outcome: 'ended', state: rows[0].state };
  await dropRunWork(tx, id);
  return { outcome: 'cancelled' };
}

/**
 * Drops what an ended run leaves behind (see dropRunWorkCtes), and a run started by
 * context.invoke reports to its invoker.
 */
export async function dropRunWork(tx: Queryable, runId: string): Promise<void> {
  const { rows } = await tx.query<{ invoked: boolean }>(
    `WITH ${dropRunWorkCtes('true', "EXISTS (SELECT 1 FROM herald_runs WHERE id = $1 AND kind = 'http')")}
     SELECT EXISTS (SELECT 1 FROM herald_runs WHERE id = $1 AND kind = 'http' AND config ? 'invoker') AS invoked`,
    [runId, runJobKey(runId)],
  );
  if (rows[0]?.invoked) await reportToInvoker(tx, runId);
}

export interface RunFilter {
  state?: RunState;
  workflow?: string;
  limit: number;
  /** Keyset cursor: runs created before this (created_at, id). */
  before?: { createdAt: string; id: string };
}

export async function listRuns(db: Queryable, f: RunFilter): Promise<(RunRow & { cursor: string })[]> {
  const { rows } = await db.query<RunRow & { cursor: string }>(
    `SELECT ${RUN_COLUMNS}, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS cursor
     FROM herald_runs
     WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR workflow = $2)
       AND ($3::timestamptz IS NULL OR (created_at, id) < ($3::timestamptz, $4::text))
     ORDER BY created_at DESC, id DESC
     LIMIT $5`,
    [f.state ?? null, f.workflow ?? null, f.before?.createdAt ?? null, f.before?.id ?? null, f.limit],
  );
  return rows;
}

export async function runCounts(db: Queryable): Promise<Record<string, number>> {
  const { rows } = await db.query<{ state: string; n: number }>(
    `SELECT state, count(*)::int AS n FROM herald_runs GROUP BY state`,
  );
  return Object.fromEntries(rows.map((r) => [r.state, r.n]));
}

// ---------------------------------------------------------------------------------------------
// Steps

export type StepType = 'run' | 'sleep' | 'wait' | 'notify' | 'send';

export interface StepRow {
  step_id: string;
  type: StepType;
  /** 'running': a `run` step whose body started and whose result is not recorded (see startRunStep). */
  state: 'completed' | 'failed' | 'waiting' | 'running';
  output: unknown;
  /** true when output is SQL NULL (the step returned undefined), not JSON null. */
  output_missing: boolean;
  output_bytes: Buffer | null;
  content_type: string | null;
  wake_at: Date | null;
  /** wake_at <= now() on the database clock. */
  due: boolean;
  attempts: number;
  error: string | null;
  started_at: Date;
  finished_at: Date | null;
}

const STEP_COLUMNS = `step_id, type, state, output, output IS NULL AS output_missing, output_bytes, content_type,
  wake_at, coalesce(wake_at <= now(), false) AS due, attempts, error, started_at, finished_at`;

const GET_STEPS = `SELECT ${STEP_COLUMNS} FROM herald_steps WHERE run_id = $1 ORDER BY seq`;

export async function getSteps(db: Queryable, runId: string): Promise<StepRow[]> {
  const { rows } = await db.query<StepRow>(GET_STEPS, [runId], { prepare: true });
  return rows.map(normalizeBytes);
}

/** PGlite returns bytea as Uint8Array, pg as Buffer: callers get a Buffer either way. */
function normalizeBytes<T extends { output_bytes: Buffer | Uint8Array | null }>(r: T): T {
  if (r.output_bytes && !Buffer.isBuffer(r.output_bytes)) {
    r.output_bytes = Buffer.from(r.output_bytes.buffer, r.output_bytes.byteOffset, r.output_bytes.byteLength);
  }
  return r;
}

/**
 * Records a step's result exactly once. A step already completed keeps its first result (a
 * duplicate execution cannot overwrite it); the recorded row is returned either way.
 */
export async function recordStep(
  tx: Queryable,
  s: { runId: string; stepId: string; type: StepType; output: unknown; outputBytes?: Buffer; contentType?: string | null },
): Promise<StepRow> {
  const { rows } = await tx.query<StepRow>(
    `INSERT INTO herald_steps AS st (run_id, step_id, type, state, output, output_bytes, content_type, attempts, finished_at)
     VALUES ($1, $2, $3, 'completed', $4::jsonb, $5, $6, 1, now())
     ON CONFLICT (run_id, step_id) DO UPDATE
       SET state = 'completed', output = excluded.output, output_bytes = excluded.output_bytes,
           content_type = excluded.content_type, attempts = st.attempts + 1, error = NULL, finished_at = now()
       WHERE st.state <> 'completed'
     RETURNING ${STEP_COLUMNS}`,
    [s.runId, s.stepId, s.type, s.output === undefined ? null : JSON.stringify(s.output), s.outputBytes ?? null, s.contentType ?? null],
  );
  if (rows[0]) return normalizeBytes(rows[0]);
  const existing = await tx.query<StepRow>(`SELECT ${STEP_COLUMNS} FROM herald_steps WHERE run_id = $1 AND step_id = $2`, [
    s.runId,
    s.stepId,
  ]);
  return normalizeBytes(existing.rows[0]!);
}

/**
 * Sent with startRunStep, in its round trip and implicit transaction: the start of an execution
 * need not wait for a WAL flush. What the record is for is a *herald process* that dies before the
 * step's result commits — a commit is visible to every other session at once, flushed or not, so
 * the next execution sees it. Only a Postgres crash within the next ~0.6 s (three times
 * wal_writer_delay) can lose it, and then the retry is told the attempt the lost one was told.
 * The result's own commit flushes the WAL up to it, start included. Waiting for the flush here
 * would put a second fsync on every step's path; this way a step costs what it did (two round
 * trips, one flush), only split differently.
 */
const NO_FLUSH_WAIT: Statement = { text: `SELECT set_config('synchronous_commit', 'off', true)`, values: [], prepare: true };

/**
 * Records that an execution of a `run` step starts, before its body runs: the step's row becomes
 * 'running' with one more attempt, and the attempt number comes back — what the body is told. An
 * execution that follows a crash between a body and its result (a killed process, a lost lease:
 * nothing recorded a failure) is thereby told it is a retry, as one after a failure is. Fenced by
 * the job's lease: `held: false` (nothing written) when this worker lost it — the body then never
 * runs. `attempt` is null if the step is already completed (another execution recorded it).
 * The lease is read, not locked (a lock would wait on the heartbeat's update): a worker that loses
 * it in the same instant counts one attempt too many at worst, and its result is fenced out.
 */
export async function startRunStep(
  db: Queryable,
  fence: JobFence,
  runId: string,
  stepId: string,
): Promise<{ held: boolean; attempt: number | null }> {
  const [, started] = await db.runTogether([
    NO_FLUSH_WAIT,
    {
      text: `WITH held AS (SELECT 1 FROM herald_jobs WHERE ${fencedJob(3)}),
       started AS (
         INSERT INTO herald_steps AS st (run_id, step_id, type, state, attempts)
         SELECT $1, $2, 'run', 'running', 1 FROM held
         ON CONFLICT (run_id, step_id) DO UPDATE SET state = 'running', attempts = st.attempts + 1
           WHERE st.state <> 'completed'
         RETURNING attempts)
       SELECT EXISTS (SELECT 1 FROM held) AS held, (SELECT attempts FROM started) AS attempt`,
      values: [runId, stepId, ...fenceValues(fence)],
      prepare: true,
    },
  ]);
  const row = started!.rows[0] as { held: boolean; attempt: number | null };
  return { held: row.held, attempt: row.attempt };
}

/**
 * Records a `run` step's result, in one statement and one round trip (its own transaction, no
 * BEGIN or COMMIT of its own): only while `fence` holds — the job row is locked first, so the
 * lease cannot be lost between the check and the write — and only if the step is not completed
 * yet (its first result stays). The attempt was counted when the execution started
 * (startRunStep). Returns the recorded row, or `held: false` if the lease was lost.
 */
export async function saveRunStep(
  db: Queryable,
  fence: JobFence,
  runId: string,
  stepId: string,
  output: unknown,
): Promise<{ held: boolean; step?: StepRow }> {
  const { rows } = await db.query<StepRow & { held: boolean; saved: boolean }>(
    `WITH held AS (SELECT 1 FROM herald_jobs WHERE ${fencedJob(4)} FOR UPDATE),
     saved AS (
       INSERT INTO herald_steps AS st (run_id, step_id, type, state, output, attempts, finished_at)
       SELECT $1, $2, 'run', 'completed', $3::jsonb, 1, now() FROM held
       ON CONFLICT (run_id, step_id) DO UPDATE
         SET state = 'completed', output = excluded.output, error = NULL, finished_at = now()
         WHERE st.state <> 'completed'
       RETURNING ${STEP_COLUMNS})
     SELECT EXISTS (SELECT 1 FROM held) AS held, saved.step_id IS NOT NULL AS saved, saved.*
     FROM (SELECT 1) one LEFT JOIN saved ON true`,
    [runId, stepId, output === undefined ? null : JSON.stringify(output), ...fenceValues(fence)],
    { prepare: true },
  );
  const row = rows[0]!;
  if (!row.held) return { held: false };
  if (row.saved) {
    const { held: _h, saved: _s, ...step } = row;
    return { held: true, step: normalizeBytes(step as StepRow) };
  }
  // Completed by another execution before this one: its result stands.
  const existing = await db.query<StepRow>(`SELECT ${STEP_COLUMNS} FROM herald_steps WHERE run_id = $1 AND step_id = $2`, [runId, stepId]);
  return { held: true, step: normalizeBytes(existing.rows[0]!) };
}

/**
 * Records a failed execution of a `run` step (its error) without completing it. The execution was
 * counted when it started (startRunStep wrote the row; the insert is only a fallback).
 */
export async function recordStepFailure(tx: Queryable, runId: string, stepId: string, type: StepType, error: string) {
  await tx.query(
    `INSERT INTO herald_steps AS st (run_id, step_id, type, state, attempts, error)
     VALUES ($1, $2, $3, 'failed', 1, $4)
     ON CONFLICT (run_id, step_id) DO UPDATE SET error = excluded.error, state = 'failed'
       WHERE st.state <> 'completed'`,
    [runId, stepId, type, error.slice(0, 4000)],
  );
}

/**
 * Records a sleep as waiting until `wake_at`: now() + delayMs on the database clock, or an
 * absolute time. Truncated to milliseconds so the job that wakes the run is never early.
 */
export async function insertSleep(
  tx: Queryable,
  s: { runId: string; stepId: string; delayMs?: number; untilMs?: number },
): Promise<{ wake_at: Date; due: boolean }> {
  const { rows } = await tx.query<{ wake_at: Date; due: boolean }>(
    `INSERT INTO herald_steps (run_id, step_id, type, state, wake_at, output)
     VALUES ($1, $2, 'sleep', 'waiting',
       date_trunc('milliseconds', coalesce(to_timestamp($4::double precision / 1000),
                                           now() + make_interval(secs => $3::double precision / 1000))),
       NULL)
     ON CONFLICT (run_id, step_id) DO NOTHING
     RETURNING wake_at, wake_at <= now() AS due`,
    [s.runId, s.stepId, s.delayMs ?? 0, s.untilMs ?? null],
  );
  if (rows[0]) return rows[0];
  return (
    await tx.query<{ wake_at: Date; due: boolean }>(
      `SELECT wake_at, wake_at <= now() AS due FROM herald_steps WHERE run_id = $1 AND step_id = $2`,
      [s.runId, s.stepId],
    )
  ).rows[0]!;
}

/** Completes a sleep whose time has come (database clock). */
export async function completeDueSleep(tx: Queryable, runId: string, stepId: string): Promise<boolean> {
  const { rowCount } = await tx.query(
    `UPDATE herald_steps SET state = 'completed', finished_at = now(), output = jsonb_build_object('wokeAt', now())
     WHERE run_id = $1 AND step_id = $2 AND state = 'waiting' AND wake_at <= now()`,
    [runId, stepId],
  );
  return rowCount === 1;
}

// ---------------------------------------------------------------------------------------------
// Waiters and run-scoped events

/**
 * Serializes "a wait registers" with "a run-scoped notify stores its event" for one (run, event
 * id), so a notify can never land between the wait's lookback check and its waiter insert.
 */
export async function lockRunEvent(tx: Queryable, runId: string, eventId: string): Promise<void> {
  await tx.query(`SELECT pg_advisory_xact_lock(hashtext('herald.wait'), hashtext($1 || '/' || $2))`, [runId, eventId]);
}

export interface NewWaiter {
  runId: string;
  stepId: string;
  eventId: string;
  url: string;
  headers: Record<string, string[]>;
  timeoutMs: number;
  timeout: string;
  timeoutUrl?: string | null;
  timeoutBody?: Buffer | null;
  timeoutHeaders?: Record<string, string[]> | null;
  step?: unknown;
}

/** Registers a wait: the step (waiting) and its waiter, with the deadline on the database clock. */
export async function insertWaiter(tx: Queryable, w: NewWaiter): Promise<void> {
  await tx.query(
    `WITH s AS (
       INSERT INTO herald_steps (run_id, step_id, type, state, output)
       VALUES ($1, $2, 'wait', 'waiting', jsonb_build_object('eventId', $3::text, 'timeoutDuration', $7::text))
       ON CONFLICT (run_id, step_id) DO NOTHING)
     INSERT INTO herald_waiters (run_id, step_id, event_id, url, headers, deadline_at, timeout, timeout_url,
                                 timeout_body, timeout_headers, step)
     VALUES ($1, $2, $3, $4, $5::jsonb, now() + make_interval(secs => $6::double precision / 1000), $7, $8, $9,
             $10::jsonb, $11::jsonb)
     ON CONFLICT (run_id, step_id) DO NOTHING`,
    [w.runId, w.stepId, w.eventId, w.url, JSON.stringify(w.headers), w.timeoutMs, w.timeout, w.timeoutUrl ?? null,
      w.timeoutBody ?? null, w.timeoutHeaders ? JSON.stringify(w.timeoutHeaders) : null, w.step === undefined ? null : JSON.stringify(w.step)],
  );
}

/** A waiter row: the seed's Waiter fields plus the run and step it belongs to. */
interface WaiterFields {
  run_id: string;
  step_id: string;
  event_id: string;
  url: string;
  headers: Record<string, string[]>;
  deadline: number;
  timeout: string | null;
  timeout_url: string | null;
  timeout_body: Buffer | null;
  timeout_headers: Record<string, string[]> | null;
}

export interface ResumedWaiter extends WaiterFields {
  step: unknown;
  message_id: string;
  run_kind: 'code' | 'http';
  run_created_ms: number;
}

type WaiterSelection =
  | { by: 'event'; eventId: string }
  | { by: 'run'; runId: string; eventId: string }
  | { by: 'due'; limit: number };

/**
 * Locks the http runs that have waiters in the selection (waiters with a `step`), in id order (so
 * two broadcasts cannot deadlock), and returns their ids. A resumed http wait joins its run's history, and additions to
 * one http run's history are serialized on the run row (see appendMessage). The timeout sweep
 * skips runs that are busy; the next sweep takes them.
 */
async function lockHttpWaiterRuns(tx: Queryable, sel: Exclude<WaiterSelection, { by: 'run' }>): Promise<string[]> {
  const waiters =
    sel.by === 'event'
      ? `SELECT run_id FROM herald_waiters WHERE event_id = $1 AND step IS NOT NULL`
      : `SELECT run_id FROM herald_waiters WHERE deadline_at <= now() AND step IS NOT NULL ORDER BY deadline_at LIMIT $1`;
  const { rows } = await tx.query<{ id: string }>(
    `SELECT r.id FROM herald_runs r WHERE r.id IN (${waiters})
     ORDER BY r.id FOR NO KEY UPDATE OF r ${sel.by === 'due' ? 'SKIP LOCKED' : ''}`,
    [sel.by === 'event' ? sel.eventId : sel.limit],
  );
  return rows.map((r) => r.id);
}

/**
 * Resumes waiters, exactly once each: DELETE … RETURNING has one winner per waiter, whether the
 * racers are two notifies or a notify and the timeout sweep. In the same statement each winner's
 * step is completed with the notify body (or as timed out) and its run is queued to continue.
 *
 * The completed step takes a new place (seq) at the end of its run's history: an @upstash/workflow
 * app is sent the history up to the message it delivers, and a wait that registered before a
 * parallel branch's result but resumed after it must come after that result, or no delivery would
 * ever hold both branches and the run would stall. For the same reason an http run is locked
 * while its wait resumes (the run-scoped notify holds the lock already: getRunLocked); a waiter
 * of an http run registered after the lock was taken waits for the next notify.
 */
export async function resumeWaiters(
  tx: Queryable,
  sel: WaiterSelection,
  payload: { body: Buffer; contentType: string | null } | { timeout: true },
): Promise<ResumedWaiter[]> {
  const httpRuns = sel.by === 'run' ? null : await lockHttpWaiterRuns(tx, sel);
  // Only an http run's waiter carries the SDK's step (see insertWaiter): a code run's waiter is
  // resumed unlocked (its history is read by step id, not in order), an http run's only if locked.
  const ofLockedRun = `(step IS NULL OR run_id = ANY($2::text[]))`;
  const where =
    sel.by === 'event'
      ? `event_id = $1 AND ${ofLockedRun}`
      : sel.by === 'run'
        ? `run_id = $1 AND event_id = $2`
        : `id IN (SELECT id FROM herald_waiters WHERE deadline_at <= now() AND ${ofLockedRun}
                  ORDER BY deadline_at LIMIT $1 FOR UPDATE SKIP LOCKED)`;
  const params: unknown[] = sel.by === 'event' ? [sel.eventId, httpRuns] : sel.by === 'run' ? [sel.runId, sel.eventId] : [sel.limit, httpRuns];
  const timedOut = 'timeout' in payload;
  const p = params.length;
  params.push(timedOut ? null : payload.body, timedOut ? null : payload.contentType, timedOut);
  const { rows } = await tx.query<ResumedWaiter>(
    `WITH w AS (
       DELETE FROM herald_waiters WHERE ${where}
       RETURNING run_id, step_id, event_id, url, headers, deadline_at, timeout, timeout_url, timeout_body,
                 timeout_headers, step, id, 'msg_' || replace(gen_random_uuid()::text, '-', '') AS message_id),
     s AS (
       UPDATE herald_steps st SET seq = DEFAULT, state = 'completed', finished_at = now(), attempts = 1,
         output = jsonb_build_object('eventId', w.event_id, 'timeout', $${p + 3}::boolean,
                                     'timeoutDuration', w.timeout, 'messageId', w.message_id, 'step', w.step),
         output_bytes = $${p + 1}::bytea, content_type = $${p + 2}::text
       FROM w WHERE st.run_id = w.run_id AND st.step_id = w.step_id AND st.state = 'waiting'
       RETURNING st.run_id),
     j AS (
       -- A code run is queued to continue (one queued execution per run); an http run gets a
       -- delivery of the wait's message (its step id) to the waiter's url, or timeoutUrl.
       INSERT INTO herald_jobs (kind, payload, key, max_attempts)
       SELECT CASE r.kind WHEN 'http' THEN '${RUN_JOB.http}' ELSE '${RUN_JOB.code}' END,
              CASE r.kind WHEN 'http'
                THEN jsonb_build_object('runId', r.id, 'messageId', w.step_id,
                       'url', CASE WHEN $${p + 3}::boolean THEN coalesce(w.timeout_url, w.url) ELSE w.url END,
                       'headers', CASE WHEN $${p + 3}::boolean THEN w.timeout_headers ELSE w.headers END)
                ELSE jsonb_build_object('runId', r.id) END,
              CASE r.kind WHEN 'http' THEN 'deliver:' || r.id || ':' || w.step_id ELSE 'run:' || r.id END,
              r.max_attempts
       FROM w JOIN herald_runs r ON r.id = w.run_id
       WHERE ${stillRunning('r')}
       ON CONFLICT (key) WHERE state = 'queued' DO UPDATE SET run_at = least(herald_jobs.run_at, now())
       RETURNING id)
     SELECT w.run_id, w.step_id, w.event_id, w.url, w.headers, extract(epoch FROM w.deadline_at)::bigint AS deadline,
            w.timeout, w.timeout_url, w.timeout_body, w.timeout_headers, w.step,
            CASE r.kind WHEN 'http' THEN w.step_id ELSE w.message_id END AS message_id,
            -- Milliseconds as a number: what the answer carries, without a Date parsed per waiter.
            r.kind AS run_kind, floor(extract(epoch FROM r.created_at) * 1000)::float8 AS run_created_ms,
            (SELECT count(*) FROM j) AS queued,
            -- Workers elsewhere are woken in this statement, not in a round trip of its own: an
            -- uncorrelated subquery runs once, and not at all when no run was queued.
            (SELECT pg_notify('${JOBS_CHANNEL}', '') FROM j LIMIT 1) AS woke
     FROM w JOIN herald_runs r ON r.id = w.run_id
     ORDER BY w.id`,
    params,
    { prepare: true },
  );
  return rows.map((r) => {
    if (r.timeout_body && !Buffer.isBuffer(r.timeout_body)) r.timeout_body = Buffer.from(r.timeout_body as Uint8Array);
    r.deadline = Number(r.deadline);
    return r;
  });
}

export interface WaiterRow extends WaiterFields {
  created_at: Date;
}

/** Active waiters, oldest first, for one event id or all. */
export async function listWaiters(db: Queryable, opts: { eventId?: string; runId?: string; limit: number }): Promise<WaiterRow[]> {
  const { rows } = await db.query<WaiterRow>(
    `SELECT run_id, step_id, event_id, url, headers, extract(epoch FROM deadline_at)::bigint AS deadline, timeout,
            timeout_url, timeout_body, timeout_headers, created_at
     FROM herald_waiters
     WHERE ($1::text IS NULL OR event_id = $1) AND ($2::text IS NULL OR run_id = $2)
     ORDER BY id LIMIT $3`,
    [opts.eventId ?? null, opts.runId ?? null, opts.limit],
  );
  return rows.map((r) => ({
    ...r,
    deadline: Number(r.deadline),
    timeout_body: r.timeout_body && !Buffer.isBuffer(r.timeout_body) ? Buffer.from(r.timeout_body as Uint8Array) : r.timeout_body,
  }));
}

export async function waiterCount(db: Queryable): Promise<number> {
  return (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM herald_waiters`)).rows[0]!.n;
}

/** Keeps a run-scoped notify that found no waiter, for the run's next wait on that event id. */
export async function storeRunEvent(
  tx: Queryable,
  e: { runId: string; eventId: string; body: Buffer; contentType: string | null },
): Promise<string> {
  const { rows } = await tx.query<{ message_id: string }>(
    `INSERT INTO herald_run_events (run_id, event_id, body, content_type, message_id)
     VALUES ($1, $2, $3, $4, 'msg_' || replace(gen_random_uuid()::text, '-', ''))
     RETURNING message_id`,
    [e.runId, e.eventId, e.body, e.contentType],
  );
  return rows[0]!.message_id;
}

/** Takes the oldest stored event for (run, event id), if any (the wait's lookback). */
export async function takeRunEvent(
  tx: Queryable,
  runId: string,
  eventId: string,
): Promise<{ body: Buffer; content_type: string | null; message_id: string } | undefined> {
  const { rows } = await tx.query<{ body: Buffer; content_type: string | null; message_id: string }>(
    `DELETE FROM herald_run_events
     WHERE id = (SELECT id FROM herald_run_events WHERE run_id = $1 AND event_id = $2 ORDER BY id LIMIT 1)
     RETURNING body, content_type, message_id`,
    [runId, eventId],
  );
  const r = rows[0];
  if (r && !Buffer.isBuffer(r.body)) r.body = Buffer.from(r.body as Uint8Array);
  return r;
}

/** Records a wait completed from a stored event (lookback), with the event's bytes. */
export async function recordWaitFromEvent(
  tx: Queryable,
  w: { runId: string; stepId: string; eventId: string; timeout: string; body: Buffer; contentType: string | null; messageId: string },
): Promise<StepRow> {
  return recordStep(tx, {
    runId: w.runId,
    stepId: w.stepId,
    type: 'wait',
    output: { eventId: w.eventId, timeout: false, timeoutDuration: w.timeout, messageId: w.messageId },
    outputBytes: w.body,
    contentType: w.contentType,
  });
}
