/**
 * Workflow runs (herald_runs): the row, how a run starts (its first execution queued with it),
 * how it is read and listed. How a run ends lives in run-end.ts, its recorded steps in steps.ts:
 * this file is what every other workflow query file builds on (the job kinds, the job keys,
 * and isRunningById(), the planner workaround that run-end.ts, waiters.ts and http-workflows.ts
 * put in their statements), so it imports none of them.
 */
import type { Queryable } from '../db.ts';
import { JOBS_CHANNEL } from './jobs.ts';

/** Job kinds that execute a run, by run kind (http runs are delivered over the QStash protocol). */
export const RUN_JOB = { code: 'workflow.run', http: 'workflow.deliver' } as const;

/**
 * Job keys of a run's executions, in TypeScript and as SQL over column expressions (waiters.ts
 * queues them in a statement): one queued execution per code run; one queued delivery per (http
 * run, message), message ids repeating across runs revived from the DLQ.
 */
export const runJobKey = (runId: string) => `run:${runId}`;
export const runJobKeySql = (runIdSql: string) => `'run:' || ${runIdSql}`;
export const deliveryKey = (runId: string, messageId: string) => `deliver:${runId}:${messageId}`;
export const deliveryKeySql = (runIdSql: string, messageIdSql: string) => `'deliver:' || ${runIdSql} || ':' || ${messageIdSql}`;

export type RunState = 'running' | 'completed' | 'failed' | 'cancelled';

/**
 * "The run is still running", in a form no index matches, for statements that find a run by its
 * id. Written `state = 'running'`, it also matches herald_runs_state_idx (state, created_at), and
 * when the statistics saw few running runs (a quiet system analyzed with every run ended, or a
 * young one) the planner ties that index with the primary key and may take it: it then walks every
 * running run to find one. A burst of 3,000 running runs made each finish read ~830 index entries
 * (4 ms instead of 0.1). The id lookup is always the plan wanted.
 */
export const isRunningById = (alias = '') => `${alias ? `${alias}.` : ''}state || '' = 'running'`;

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

/** The run by id: shared with getRunAndSteps (steps.ts), which sends it beside the steps. */
export const GET_RUN = `SELECT ${RUN_COLUMNS} FROM herald_runs WHERE id = $1`;

export async function getRun(db: Queryable, id: string): Promise<RunRow | undefined> {
  return (await db.query<RunRow>(GET_RUN, [id], { prepare: true })).rows[0];
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
