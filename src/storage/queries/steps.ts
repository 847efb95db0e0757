/**
 * A run's recorded steps (herald_steps), its history: how each kind of step is recorded exactly
 * once (a `run` step fenced by its execution's lease, a sleep with its wake time), and the read
 * every execution of a code run starts with, to replay it. A wait's step is written with its
 * waiter (waiters.ts) or from a kept event (run-events.ts).
 */
import type { Queryable, Statement } from '../db.ts';
import { fencedJob, fenceValues, type JobFence } from './jobs.ts';
import { GET_RUN, type RunRow } from './runs.ts';

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
 * A run and its recorded steps in one round trip and one snapshot (what every execution of a code
 * run reads first, to replay it).
 */
export async function getRunAndSteps(db: Queryable, id: string): Promise<{ run: RunRow | undefined; steps: StepRow[] }> {
  const [run, steps] = await db.pipeline([
    { text: GET_RUN, values: [id], prepare: true },
    { text: GET_STEPS, values: [id], prepare: true },
  ]);
  return { run: run!.rows[0] as RunRow | undefined, steps: (steps!.rows as unknown as StepRow[]).map(normalizeBytes) };
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
  const [, started] = await db.pipeline([
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
