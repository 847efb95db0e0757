import type { Queryable } from '../db.ts';
import { keyTakeover } from './idempotency.ts';

export interface EventRow {
  id: string;
  type: string;
  ctx: Record<string, unknown>;
  tenant_id: string | null;
  processed_at: Date | null;
}

export async function insertEvent(
  db: Queryable,
  e: { id: string; type: string; ctx: unknown; tenantId: string | null; mode: 'workflow' | 'direct' },
): Promise<void> {
  await db.query(`INSERT INTO herald_events (id, type, ctx, tenant_id, mode) VALUES ($1, $2, $3::jsonb, $4, $5)`, [
    e.id,
    e.type,
    JSON.stringify(e.ctx),
    e.tenantId,
    e.mode,
  ]);
}

/** An event to store, with its idempotency key (if any) and its body's hash. */
export interface IncomingEvent {
  id: string;
  type: string;
  ctx: Record<string, unknown>;
  tenantId: string | null;
  key: string | null;
  /** With a key only. */
  bodySha256: string | null;
}

/**
 * The common start of both writers' statements: their input rows (one JSON document: cheaper to
 * build in Node than parallel arrays), the claim of their idempotency keys — a key already taken
 * (a duplicate, or one in flight in the other writer, which the statement then waits for) is not
 * claimed, unless it expired or was abandoned — and the events whose claim succeeded or that have
 * no key. Keys are claimed in key order, so two flushes claiming the same keys cannot deadlock.
 * `$2` is the keys' TTL in hours. The writers keep one key per statement (a statement cannot claim
 * a key twice).
 */
function storeEvents(mode: 'workflow' | 'direct', claimAs: 'pending' | 'done', extraColumns = ''): string {
  return `WITH input AS (
       SELECT * FROM json_to_recordset($1::json)
         AS t(id uuid, type text, ctx jsonb, "tenantId" uuid, key text, "bodySha256" text, response json${extraColumns})),
     keys AS (
       INSERT INTO herald_idempotency_keys AS k (key, body_sha256, state, status, response)
       SELECT key, "bodySha256", '${claimAs}', ${claimAs === 'done' ? '200, response' : 'NULL, NULL'}
       FROM input WHERE key IS NOT NULL ORDER BY key
       ON CONFLICT (key) DO UPDATE SET body_sha256 = EXCLUDED.body_sha256, state = EXCLUDED.state,
         status = EXCLUDED.status, response = EXCLUDED.response, created_at = now()
       WHERE ${keyTakeover('$2')}
       RETURNING key),
     events AS (
       INSERT INTO herald_events (id, type, ctx, tenant_id, mode)
       SELECT id, type, ctx, "tenantId", '${mode}' FROM input
       WHERE key IS NULL OR key IN (SELECT key FROM keys)
       RETURNING id)`;
}
const STORE_DIRECT_EVENTS = storeEvents('direct', 'pending');

/**
 * Direct mode's statement (see intake/direct-writer.ts): many events and the claims of their keys,
 * in the flush's transaction. A key is claimed 'pending' and completed with the response later in
 * the same transaction, so no other request ever sees it pending. Returns the ids of the events
 * that were stored.
 */
export async function insertDirectEvents(db: Queryable, events: IncomingEvent[], ttlHours: number): Promise<Set<string>> {
  const { rows } = await db.query<{ ids: string[] | null }>(
    `${STORE_DIRECT_EVENTS}
     SELECT array_agg(id::text) AS ids FROM events`,
    [JSON.stringify(events), ttlHours],
    { prepare: true },
  );
  return new Set(rows[0]?.ids ?? []);
}

export async function getEvent(db: Queryable, id: string): Promise<EventRow | undefined> {
  return (
    await db.query<EventRow>(`SELECT id, type, ctx, tenant_id, processed_at FROM herald_events WHERE id = $1`, [id])
  ).rows[0];
}

export async function getEvents(db: Queryable, ids: string[]): Promise<EventRow[]> {
  return (
    await db.query<EventRow>(
      `SELECT id, type, ctx, tenant_id, processed_at FROM herald_events WHERE id = ANY($1::uuid[])`,
      [ids],
      { prepare: true },
    )
  ).rows;
}

/** A run an event starts, its id chosen up front so the emit's response can name it. */
export interface IncomingRun {
  id: string;
  /** The key of its first execution job (runJobKey). */
  jobKey: string;
  workflow: string;
  maxAttempts: number;
}

/** A workflow-mode event ready to store, with the response to keep for its key. */
export interface IncomingWorkflowEvent extends IncomingEvent {
  response: Record<string, unknown>;
  /** The code workflows it starts (absent when none is subscribed to its type). */
  runs?: IncomingRun[];
}

/** One expansion job for all the events a statement stored (`$3` its kind). */
const EXPANSION_JOB = `
     job AS (
       INSERT INTO herald_jobs (kind, payload)
       SELECT $3, jsonb_build_object('eventIds', jsonb_agg(id)) FROM events HAVING count(*) > 0
       RETURNING 1)`;

/** The events and their expansion job. */
const STORE_WORKFLOW_EVENTS = `${storeEvents('workflow', 'done')},${EXPANSION_JOB}
     SELECT array_agg(id::text) AS ids FROM events`;

/**
 * The same, plus the code runs the events start and their first execution jobs (`$4` their kind):
 * a run is inserted only with its event (a duplicate's runs are not), its input is the event's
 * ctx and its tenant the event's, as a run started in a transaction of its own would have.
 */
const STORE_WORKFLOW_EVENTS_WITH_RUNS = `${storeEvents('workflow', 'done', ', runs json')},${EXPANSION_JOB},
     new_runs AS (
       SELECT r.*, i.ctx, i.id AS event_id, i."tenantId"
       FROM input i JOIN events e ON e.id = i.id
         CROSS JOIN json_to_recordset(i.runs) AS r(id text, "jobKey" text, workflow text, "maxAttempts" int)),
     started AS (
       INSERT INTO herald_runs (id, kind, workflow, input, event_id, tenant_id, max_attempts)
       SELECT id, 'code', workflow, ctx, event_id, "tenantId", "maxAttempts" FROM new_runs
       RETURNING 1),
     run_jobs AS (
       INSERT INTO herald_jobs (kind, payload, key, max_attempts)
       SELECT $4, jsonb_build_object('runId', id), "jobKey", "maxAttempts" FROM new_runs
       RETURNING 1)
     SELECT array_agg(id::text) AS ids FROM events`;

/**
 * The group-commit writer's statement: many events, their idempotency keys (claimed 'done' with
 * the response, since the response is known up front), one expansion job for all of them and the
 * runs of the workflows they start (each with its first execution job), in one statement and so
 * one transaction. Returns the ids of the events that were stored (see storeEvents for those that
 * are not).
 */
export async function insertWorkflowEvents(
  db: Queryable,
  events: IncomingWorkflowEvent[],
  opts: { jobKind: string; runJobKind: string; ttlHours: number },
): Promise<Set<string>> {
  // Most batches start no run: they keep the shorter statement.
  const withRuns = events.some((e) => e.runs?.length);
  const { rows } = await db.query<{ ids: string[] | null }>(
    withRuns ? STORE_WORKFLOW_EVENTS_WITH_RUNS : STORE_WORKFLOW_EVENTS,
    withRuns
      ? [JSON.stringify(events), opts.ttlHours, opts.jobKind, opts.runJobKind]
      : [JSON.stringify(events), opts.ttlHours, opts.jobKind],
    { prepare: true },
  );
  return new Set(rows[0]?.ids ?? []);
}
