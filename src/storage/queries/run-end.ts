/**
 * How a run ends (herald_runs.state leaves 'running'): finished by its code or its last delivery,
 * cancelled, or ended by the SDK, each in one statement with what the run leaves behind (waiters,
 * kept events, queued executions and deliveries), and a run started by context.invoke reporting
 * to its invoker. endHttpRun lives here, not in http-workflows.ts, because every ending drops the
 * run's work and reports to the invoker: with it there, http-workflows.ts and this file would
 * import each other.
 */
import type { Queryable } from '../db.ts';
import { reportToInvoker } from './http-workflows.ts';
import { fencedJob, fenceValues, type JobFence } from './jobs.ts';
import { RUN_JOB, runJobKey, isRunningById, type RunState } from './runs.ts';

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
       WHERE id = $1 AND ${isRunningById()}
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
       WHERE id = $1 AND kind = 'code' AND ${isRunningById()} AND EXISTS (SELECT 1 FROM done)
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
       WHERE id = $1 AND ${isRunningById()} RETURNING id)
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

/** Ends an HTTP run as the SDK asks (DELETE /v2/workflows/runs/{id}): its result is the body. */
export async function endHttpRun(
  tx: Queryable,
  runId: string,
  outcome: { state: 'completed'; result: unknown } | { state: 'cancelled' },
): Promise<'ended' | 'not-found' | 'already-ended'> {
  const { rows } = await tx.query<{ updated: boolean }>(
    `WITH u AS (
       UPDATE herald_runs SET state = $2, result = $3::jsonb, finished_at = now(), updated_at = now()
       WHERE id = $1 AND ${isRunningById()} RETURNING id)
     SELECT EXISTS (SELECT 1 FROM u) AS updated FROM herald_runs WHERE id = $1`,
    [runId, outcome.state, outcome.state === 'completed' ? JSON.stringify(outcome.result ?? null) : null],
  );
  if (!rows[0]) return 'not-found';
  if (!rows[0].updated) return 'already-ended';
  // Waiters, kept events and deliveries not yet made go; the delivery in flight (the SDK's own
  // call) finishes normally.
  await dropRunWork(tx, runId);
  return 'ended';
}
