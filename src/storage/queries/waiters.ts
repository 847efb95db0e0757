/**
 * Waiters (herald_waiters): a run waiting for an event id, until a notify resumes it or its
 * deadline passes. Resuming is the delicate part (resumeWaiters): exactly once per waiter, the
 * step completed and the run queued to continue in the same statement, and an http run locked so
 * its history keeps the order its deliveries need.
 */
import type { Queryable } from '../db.ts';
import { JOBS_CHANNEL } from './jobs.ts';
import { deliveryKeySql, RUN_JOB, runJobKeySql, isRunningById } from './runs.ts';

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
              CASE r.kind WHEN 'http' THEN ${deliveryKeySql('r.id', 'w.step_id')} ELSE ${runJobKeySql('r.id')} END,
              r.max_attempts
       FROM w JOIN herald_runs r ON r.id = w.run_id
       WHERE ${isRunningById('r')}
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
