import type { Queryable, Statement } from '../db.ts';

export const JOBS_CHANNEL = 'herald_jobs';
/**
 * Wake-ups for batchable work only (event expansion: after each group commit, and for every
 * expansion job enqueued otherwise). A worker that is already running a loaded batch lets them
 * accumulate and takes once that batch ends, so a busy worker takes a few large batches instead of
 * one small batch per group commit.
 */
export const BATCH_JOBS_CHANNEL = 'herald_jobs_batch';

/**
 * The job kind whose work runs in a worker's batch lanes (taken many at a time, see takeJobs):
 * event expansion. Enqueuing one announces it on BATCH_JOBS_CHANNEL; every other kind on
 * JOBS_CHANNEL, which only the single-job claim listens to.
 */
export const BATCHED_KIND = 'event.expand';
const channelFor = (kind: string) => (kind === BATCHED_KIND ? BATCH_JOBS_CHANNEL : JOBS_CHANNEL);

export interface ClaimedJob {
  id: number;
  kind: string;
  key: string | null;
  payload: Record<string, unknown>;
  attempts: number;
  max_attempts: number;
}

export interface NewJob {
  kind: string;
  payload: unknown;
  /**
   * Debounce key: at most one queued job per key (a second enqueue is a no-op), and a job is not
   * claimed while another with its key is running — e.g. `run:<id>`, so a run never executes twice
   * at once and a resume requested mid-execution runs right after.
   */
  key?: string;
  maxAttempts?: number;
  delayMs?: number;
  /** An absolute due time (unix ms), e.g. a sleep's wake-up read from the database clock. */
  runAtMs?: number;
}

/**
 * Enqueues a job and wakes workers when the surrounding transaction commits. With a key that is
 * already queued, the queued job stays and becomes due at the earlier of the two times.
 */
export async function enqueueJob(db: Queryable, job: NewJob): Promise<void> {
  await db.query(
    `WITH j AS (
       INSERT INTO herald_jobs (kind, payload, key, max_attempts, run_at)
       VALUES ($1, $2::jsonb, $3, $4, coalesce(to_timestamp($6::double precision / 1000),
                                               now() + make_interval(secs => $5::double precision / 1000)))
       ON CONFLICT (key) WHERE state = 'queued' DO UPDATE SET run_at = least(herald_jobs.run_at, excluded.run_at)
       RETURNING id)
     SELECT pg_notify($7, '') FROM j`,
    [job.kind, JSON.stringify(job.payload), job.key ?? null, job.maxAttempts ?? 20, job.delayMs ?? 0, job.runAtMs ?? null, channelFor(job.kind)],
  );
}

/** Enqueues many jobs in one statement, with at most one wake-up per channel (see enqueueJob). */
export async function enqueueJobs(db: Queryable, jobs: NewJob[]): Promise<void> {
  if (jobs.length === 0) return;
  if (jobs.length === 1) return enqueueJob(db, jobs[0]!);
  await db.query(
    `WITH j AS (
       INSERT INTO herald_jobs (kind, payload, key, max_attempts, run_at)
       SELECT t.kind, t.payload::jsonb, t.key, t.max_attempts,
              coalesce(to_timestamp(t.run_at_ms / 1000), now() + make_interval(secs => t.delay_ms / 1000))
       FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::double precision[], $6::double precision[])
         AS t(kind, payload, key, max_attempts, delay_ms, run_at_ms)
       ON CONFLICT (key) WHERE state = 'queued' DO UPDATE SET run_at = least(herald_jobs.run_at, excluded.run_at)
       RETURNING id)
     SELECT pg_notify(ch, '') FROM unnest($7::text[]) AS ch WHERE EXISTS (SELECT 1 FROM j)`,
    [
      jobs.map((j) => j.kind),
      jobs.map((j) => JSON.stringify(j.payload)),
      jobs.map((j) => j.key ?? null),
      jobs.map((j) => j.maxAttempts ?? 20),
      jobs.map((j) => j.delayMs ?? 0),
      jobs.map((j) => j.runAtMs ?? null),
      [...new Set(jobs.map((j) => channelFor(j.kind)))],
    ],
  );
}

/**
 * Which jobs a claim may take: up to `limit`; of `onlyKind` if given; never the fresh (never
 * attempted) jobs of `leaveFreshOf`, which its batch lane takes (see takeJobs).
 */
export interface ClaimLimits {
  leaveFreshOf: string | null;
  onlyKind?: string;
  /** Only jobs queued up to this id (see newestJobId). */
  maxId?: number;
  limit: number;
}

/** Due jobs, oldest first; a job whose key is already running waits for that one to finish. */
const dueJobs = (kindTest: string, limit: string) => `
  SELECT j.id FROM herald_jobs j
  WHERE j.state = 'queued' AND j.run_at <= now() AND ${kindTest}
    AND (j.key IS NULL OR NOT EXISTS (
      SELECT 1 FROM herald_jobs r WHERE r.key = j.key AND r.state = 'running'))
  ORDER BY j.run_at, j.id
  LIMIT ${limit}
  FOR UPDATE SKIP LOCKED`;

const CLAIMED_COLUMNS = 'j.id, j.kind, j.key, j.payload, j.attempts, j.max_attempts';

/**
 * Sent with the claim, in its round trip and implicit transaction. The claim must walk the queue
 * index in order and stop after `limit` jobs; planned with statistics from when the queue was
 * young or nearly empty (or as a generic plan, which prices `LIMIT $2` as a tenth of the table),
 * Postgres instead reads every due job with a bitmap scan and sorts them, so each claim costs in
 * proportion to the backlog (the ordered scan's cost does not grow with it) — exactly when a
 * backlog needs claims to be cheap.
 */
const CLAIM_PLAN_SETTINGS: Statement = {
  text: `SELECT set_config('enable_bitmapscan', 'off', true), set_config('enable_seqscan', 'off', true),
           set_config('enable_sort', 'off', true)`,
  values: [],
  prepare: true,
};

/**
 * Claims due jobs with a lease (each is then run alone, outside any transaction). SKIP LOCKED
 * lets many workers claim concurrently without waiting on each other.
 */
export async function claimJobs(db: Queryable, workerId: string, leaseMs: number, limits: ClaimLimits): Promise<ClaimedJob[]> {
  const [, claimed] = await db.pipeline(claimStatements(workerId, leaseMs, limits));
  return claimed!.rows as unknown as ClaimedJob[];
}

/** What claimJobs sends: the planner settings, then the claim (exported for a test of its plan). */
export function claimStatements(workerId: string, leaseMs: number, limits: ClaimLimits): [Statement, Statement] {
  const claim: Statement = {
    text: `UPDATE herald_jobs j
     SET state = 'running', locked_by = $1, attempts = j.attempts + 1,
         locked_until = now() + make_interval(secs => $3::double precision / 1000)
     WHERE j.id IN (${dueJobs(
       `($4::text IS NULL OR j.kind <> $4 OR j.attempts > 0) AND ($5::text IS NULL OR j.kind = $5)
        AND ($6::bigint IS NULL OR j.id <= $6)`,
       '$2',
     )})
     RETURNING ${CLAIMED_COLUMNS}`,
    values: [workerId, limits.limit, leaseMs, limits.leaveFreshOf, limits.onlyKind ?? null, limits.maxId ?? null],
    prepare: true,
  };
  return [CLAIM_PLAN_SETTINGS, claim];
}

/** The id of the newest job in the queue (0 when it is empty). */
export async function newestJobId(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ id: number }>(`SELECT coalesce(max(id), 0)::bigint AS id FROM herald_jobs`);
  return Number(rows[0]!.id);
}

/**
 * Claims these jobs with a lease if they are queued and nobody holds them: the jobs of a batch
 * that rolled back, to be run one by one.
 */
export async function claimJobsById(db: Queryable, workerId: string, leaseMs: number, ids: number[]): Promise<ClaimedJob[]> {
  const { rows } = await db.query<ClaimedJob>(
    `UPDATE herald_jobs j
     SET state = 'running', locked_by = $1, attempts = j.attempts + 1,
         locked_until = now() + make_interval(secs => $3::double precision / 1000)
     WHERE j.id IN (SELECT id FROM herald_jobs WHERE id = ANY($2::bigint[]) AND state = 'queued' FOR UPDATE SKIP LOCKED)
     RETURNING ${CLAIMED_COLUMNS}`,
    [workerId, ids, leaseMs],
    { prepare: true },
  );
  return rows.sort((a, b) => a.id - b.id);
}

/**
 * The batch lane's claim: takes up to `limit` due jobs of `kind` by deleting them inside the
 * caller's transaction, which then does their work. The transaction's row locks are the lease —
 * other workers skip the rows, and if the transaction (or its process) dies, the rollback puts the
 * jobs back as they were. Claim, lease check and completion are thus one statement and one commit,
 * where the lease path takes three statements and two commits.
 *
 * Only fresh jobs (attempts = 0) are taken this way: a rollback leaves no trace, so a job that
 * failed, or was caught in a process that died, goes through the lease path, whose attempts are
 * committed before the work and so bound its retries (see the worker's first batch turn).
 */
export async function takeJobs(tx: Queryable, kind: string, limit: number): Promise<ClaimedJob[]> {
  const { rows } = await tx.query<ClaimedJob>(
    `DELETE FROM herald_jobs j WHERE j.id IN (${dueJobs('j.kind = $1 AND j.attempts = 0', '$2')})
     RETURNING ${CLAIMED_COLUMNS}`,
    [kind, limit],
    { prepare: true },
  );
  return rows.sort((a, b) => a.id - b.id);
}

/**
 * Sent with the BEGIN of a batch transaction. A batch reads and writes its rows by primary key
 * (jobs, events, users, preferences), through prepared statements whose generic plan Postgres
 * fixes after five runs — with the statistics of that moment. A young or freshly emptied table
 * looks tiny then, the plan becomes a sequential scan (or a hash join over one), and it stays
 * while the table grows: bench/profile.ts found herald_events scanned whole ~0.7 times per batch.
 * With sequential scans priced out, every plan is an index lookup, whatever the statistics say.
 */
export const BATCH_TRANSACTION_SETTINGS: Statement = { text: 'SET LOCAL enable_seqscan = off', values: [], prepare: true };

/** What proves a worker still holds a job: its lease on this attempt. */
export interface JobFence {
  jobId: number;
  workerId: string;
  attempts: number;
}

/** The job row while `fence` holds, its three values at `$n`, `$n+1`, `$n+2` (see fenceValues). */
export const fencedJob = (n: number) => `id = $${n} AND locked_by = $${n + 1} AND attempts = $${n + 2} AND state = 'running'`;
export const fenceValues = (f: JobFence) => [f.jobId, f.workerId, f.attempts];
/** The fence of `job`'s current attempt, claimed by `workerId`. */
export const fenceOf = (job: ClaimedJob, workerId: string): JobFence => ({ jobId: job.id, workerId, attempts: job.attempts });

const FENCE = fencedJob(1);

/**
 * Locks the job row if this worker still holds this attempt's lease: one row if it does, none if
 * it lost it. (A statement, for a transaction to send with its first one: see withFirstStatement.)
 */
export const holdsLeaseStatement = (job: ClaimedJob, workerId: string): Statement => ({
  text: `SELECT 1 FROM herald_jobs WHERE ${FENCE} FOR UPDATE`,
  values: fenceValues(fenceOf(job, workerId)),
  prepare: true,
});

/** Deletes a finished job, only if this worker still holds its lease: rowCount 1 if it did, 0 if not. */
export const completeJobStatement = (job: ClaimedJob, workerId: string): Statement => ({
  text: `DELETE FROM herald_jobs WHERE ${FENCE}`,
  values: fenceValues(fenceOf(job, workerId)),
  prepare: true,
});

/** Deletes a finished job, only if this worker still holds its lease. Returns false if it lost it. */
export async function completeJob(db: Queryable, job: ClaimedJob, workerId: string): Promise<boolean> {
  const { text, values, prepare } = completeJobStatement(job, workerId);
  return (await db.query(text, values, { prepare })).rowCount === 1;
}

/**
 * A job that goes back to the queue (a retry, a defer, a rescued lease) while its key has a queued
 * job again — queued while it ran, which is intended: a run resumed mid-execution runs again right
 * after — would make two queued jobs of one key, which the key's unique index refuses (23505). It
 * merges into the queued one instead: its own row goes, and the queued job keeps the earlier of the
 * two due times and the larger attempt count, so the retry budget still bounds the key's work.
 * Sound because a keyed job means "process the state of <key>" (run a workflow's replay, send a
 * delivery, deliver a message): one execution does what both asked for, and every handler already
 * re-reads that state (and waits for a not_before) since delivery is at least once. graphile-worker
 * instead strips the key from the running job and keeps both; here the key also keeps two
 * executions of a run apart (a queued job is not claimed while its key runs), so it must stay.
 *
 * A queued job inserted by a transaction that has not committed yet is not seen: the requeue then
 * waits on the key's index and fails with 23505 when that transaction commits, and is tried again
 * now that the job is visible (retryingTwinRace; the rescue runs again next round).
 */
const TWIN_OF = (me: string, and = 'true') => `
  SELECT q.id FROM herald_jobs q, ${me}
  WHERE q.key = ${me}.key AND q.state = 'queued' AND q.id <> ${me}.id AND ${and}
  FOR UPDATE OF q`;

/**
 * Runs `requeue` (a failJob or deferJob in its own transaction) again when it hit the race
 * described above: a twin committed while it ran. The next try sees the twin and merges into it.
 */
export async function retryingTwinRace<T>(requeue: () => Promise<T>, tries = 3): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await requeue();
    } catch (err) {
      if (attempt >= tries || (err as { code?: unknown } | null)?.code !== '23505') throw err;
    }
  }
}

/**
 * The statement that sends this worker's claimed job (fenced like completeJob) back to the queue,
 * due after `delayMs` ($4), or fails it for good where `givesUp` holds; a job whose key is queued
 * again merges into that job instead (see TWIN_OF). Returns one row with the job's new state, or
 * none if the lease was lost. `attempts` is what the job's count becomes; `error` sets last_error.
 */
const requeueSql = (o: { attempts: string; givesUp: string; error?: string }) => {
  const due = `now() + make_interval(secs => $4::double precision / 1000)`;
  const setError = o.error ? `, last_error = ${o.error}` : '';
  return `WITH me AS (
       SELECT id, key, ${o.attempts} AS attempts, (${o.givesUp}) AS gives_up FROM herald_jobs WHERE ${FENCE} FOR UPDATE),
     twin AS (${TWIN_OF('me', 'NOT me.gives_up')}),
     merged AS (
       UPDATE herald_jobs q SET run_at = least(q.run_at, ${due}), attempts = greatest(q.attempts, me.attempts)${setError}
       FROM twin, me WHERE q.id = twin.id
       RETURNING 'queued'::text AS state),
     merged_away AS (DELETE FROM herald_jobs j USING me WHERE j.id = me.id AND EXISTS (SELECT 1 FROM merged)),
     requeued AS (
       UPDATE herald_jobs j SET state = CASE WHEN me.gives_up THEN 'failed' ELSE 'queued' END, run_at = ${due},
         attempts = me.attempts${setError}, locked_by = NULL, locked_until = NULL
       FROM me WHERE j.id = me.id AND NOT EXISTS (SELECT 1 FROM twin)
       RETURNING j.state)
     SELECT state FROM requeued UNION ALL SELECT state FROM merged`;
};

/** A failed attempt: retried after the delay, or failed for good ($5: permanent, or no attempts left). */
const FAIL_JOB = requeueSql({ attempts: 'attempts', givesUp: '$5::boolean OR attempts >= max_attempts', error: '$6' });
/** An attempt that did not run: requeued without counting it. */
const DEFER_JOB = requeueSql({ attempts: 'attempts - 1', givesUp: 'false' });

/**
 * Requeues a failed job after `delayMs`, or marks it failed for good (permanent, or out of
 * attempts). Fenced like completeJob. Returns the new state, or undefined if the lease was lost.
 */
export async function failJob(
  db: Queryable,
  job: ClaimedJob,
  workerId: string,
  opts: { error: string; delayMs: number; permanent: boolean },
): Promise<'queued' | 'failed' | undefined> {
  const { rows } = await db.query<{ state: 'queued' | 'failed' }>(FAIL_JOB, [
    ...fenceValues(fenceOf(job, workerId)),
    opts.delayMs,
    opts.permanent,
    opts.error.slice(0, 4000),
  ]);
  return rows[0]?.state;
}

/**
 * Puts a claimed job back in the queue for later without counting the attempt (it did not run:
 * e.g. its flow-control slot was busy). Returns false if the lease was lost.
 */
export async function deferJob(db: Queryable, job: ClaimedJob, workerId: string, delayMs: number): Promise<boolean> {
  const { rows } = await db.query(DEFER_JOB, [...fenceValues(fenceOf(job, workerId)), delayMs]);
  return rows.length === 1;
}

/** Extends the leases of jobs this worker is still running (heartbeat). */
export async function extendLeases(db: Queryable, ids: number[], workerId: string, leaseMs: number): Promise<void> {
  if (ids.length === 0) return;
  await db.query(
    `UPDATE herald_jobs SET locked_until = now() + make_interval(secs => $3::double precision / 1000)
     WHERE id = ANY($1::bigint[]) AND locked_by = $2 AND state = 'running'`,
    [ids, workerId, leaseMs],
    { prepare: true },
  );
}

/**
 * Maintenance: jobs whose lease expired (their worker died or hung) go back to the queue. Their
 * attempt count already includes the lost attempt; the next claim fails them if none are left.
 * One whose key is queued again merges into that job (see TWIN_OF), so a single such job cannot
 * make the whole sweep fail on the key's unique index. (Two expired jobs of one key, which the
 * claim's key check should never let happen, merge into the oldest.)
 */
export async function rescueExpiredJobs(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `WITH expired AS (
       SELECT id, key, attempts FROM herald_jobs WHERE state = 'running' AND locked_until < now()
       ORDER BY locked_until LIMIT 1000 FOR UPDATE SKIP LOCKED),
     keyed AS (SELECT key, min(id) AS first_id, max(attempts) AS attempts FROM expired WHERE key IS NOT NULL GROUP BY key),
     twins AS (
       SELECT q.id, q.key FROM herald_jobs q
       WHERE q.state = 'queued' AND q.key IN (SELECT key FROM keyed)
       FOR UPDATE OF q),
     stays AS (
       SELECT e.id, k.attempts FROM expired e LEFT JOIN keyed k ON k.key = e.key
       WHERE e.key IS NULL OR (e.id = k.first_id AND NOT EXISTS (SELECT 1 FROM twins t WHERE t.key = e.key))),
     merged AS (
       UPDATE herald_jobs q SET attempts = greatest(q.attempts, k.attempts), run_at = least(q.run_at, now()),
         last_error = coalesce(q.last_error, 'lease expired (worker lost)')
       FROM twins t JOIN keyed k ON k.key = t.key WHERE q.id = t.id),
     merged_away AS (
       DELETE FROM herald_jobs j WHERE j.id IN (SELECT id FROM expired) AND j.id NOT IN (SELECT id FROM stays)
       RETURNING 1),
     requeued AS (
       UPDATE herald_jobs j SET state = 'queued', locked_by = NULL, locked_until = NULL,
         attempts = greatest(j.attempts, coalesce(s.attempts, 0)),
         last_error = coalesce(j.last_error, 'lease expired (worker lost)')
       FROM stays s WHERE j.id = s.id
       RETURNING 1)
     SELECT (SELECT count(*) FROM requeued)::int + (SELECT count(*) FROM merged_away)::int AS n`,
  );
  return rows[0]!.n;
}

export async function jobCounts(db: Queryable): Promise<Record<string, number>> {
  const { rows } = await db.query<{ state: string; n: number }>(
    `SELECT state, count(*)::int AS n FROM herald_jobs GROUP BY state`,
  );
  return Object.fromEntries(rows.map((r) => [r.state, r.n]));
}
