import type { Queryable } from '../db.ts';

export const JOBS_CHANNEL = 'herald_jobs';

export interface ClaimedJob {
  id: number;
  kind: string;
  payload: Record<string, unknown>;
  attempts: number;
  max_attempts: number;
}

/** Enqueues a job and wakes workers when the surrounding transaction commits. */
export async function enqueueJob(
  db: Queryable,
  job: { kind: string; payload: unknown; maxAttempts?: number; delayMs?: number },
): Promise<number> {
  const { rows } = await db.query<{ id: number }>(
    `WITH j AS (
       INSERT INTO herald_jobs (kind, payload, max_attempts, run_at)
       VALUES ($1, $2::jsonb, $3, now() + make_interval(secs => $4::double precision / 1000))
       RETURNING id)
     SELECT j.id, pg_notify('${JOBS_CHANNEL}', '') FROM j`,
    [job.kind, JSON.stringify(job.payload), job.maxAttempts ?? 20, job.delayMs ?? 0],
  );
  return rows[0]!.id;
}

/**
 * Claims up to `limit` due jobs: queued ones, and running ones whose lease expired (their worker
 * died). SKIP LOCKED lets many workers claim concurrently without waiting on each other.
 */
export async function claimJobs(db: Queryable, workerId: string, limit: number, leaseMs: number): Promise<ClaimedJob[]> {
  const { rows } = await db.query<ClaimedJob>(
    `WITH due AS (
       SELECT id FROM herald_jobs
       WHERE (state = 'queued' AND run_at <= now()) OR (state = 'running' AND locked_until < now())
       ORDER BY run_at, id
       LIMIT $2
       FOR UPDATE SKIP LOCKED)
     UPDATE herald_jobs j
     SET state = 'running', locked_by = $1, attempts = j.attempts + 1,
         locked_until = now() + make_interval(secs => $3::double precision / 1000)
     FROM due WHERE j.id = due.id
     RETURNING j.id, j.kind, j.payload, j.attempts, j.max_attempts`,
    [workerId, limit, leaseMs],
  );
  return rows;
}

const FENCE = `id = $1 AND locked_by = $2 AND attempts = $3 AND state = 'running'`;

/** Deletes a finished job, only if this worker still holds its lease. Returns false if it lost it. */
export async function completeJob(db: Queryable, job: ClaimedJob, workerId: string): Promise<boolean> {
  return (await db.query(`DELETE FROM herald_jobs WHERE ${FENCE}`, [job.id, workerId, job.attempts])).rowCount === 1;
}

/** Requeues a failed job after `delayMs`, or marks it failed for good. Fenced like completeJob. */
export async function failJob(
  db: Queryable,
  job: ClaimedJob,
  workerId: string,
  opts: { error: string; delayMs: number; permanent: boolean },
): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE herald_jobs SET
       state = CASE WHEN $4 OR attempts >= max_attempts THEN 'failed' ELSE 'queued' END,
       run_at = now() + make_interval(secs => $5::double precision / 1000),
       last_error = $6, locked_by = NULL, locked_until = NULL
     WHERE ${FENCE}`,
    [job.id, workerId, job.attempts, opts.permanent, opts.delayMs, opts.error.slice(0, 4000)],
  );
  return rowCount === 1;
}

/** Extends the leases of jobs this worker is still running. */
export async function extendLeases(db: Queryable, ids: number[], workerId: string, leaseMs: number): Promise<void> {
  if (ids.length === 0) return;
  await db.query(
    `UPDATE herald_jobs SET locked_until = now() + make_interval(secs => $3::double precision / 1000)
     WHERE id = ANY($1::bigint[]) AND locked_by = $2 AND state = 'running'`,
    [ids, workerId, leaseMs],
  );
}

export async function jobCounts(db: Queryable): Promise<Record<string, number>> {
  const { rows } = await db.query<{ state: string; n: number }>(
    `SELECT state, count(*)::int AS n FROM herald_jobs GROUP BY state`,
  );
  return Object.fromEntries(rows.map((r) => [r.state, r.n]));
}
