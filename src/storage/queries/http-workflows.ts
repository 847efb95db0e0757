import type { Queryable } from '../db.ts';
import { JOBS_CHANNEL } from './jobs.ts';
import { deliveryKey, RUN_JOB, isRunningById } from './runs.ts';

/**
 * HTTP workflows (the QStash protocol of @upstash/workflow): a run's history is the ordered list
 * of messages published to it. Each message is a `herald_steps` row whose step_id is the message
 * id, with the body exactly as published in output_bytes; deliveries are `workflow.deliver` jobs,
 * one per message, keyed by it.
 */

export const newMessageId = () => `msg_${crypto.randomUUID().replace(/-/g, '')}`;

/** Run-level configuration from the trigger, applied to every delivery of the run. */
export interface HttpRunConfig {
  /** User headers to add to every delivery (the trigger's Upstash-Forward-*, prefix removed). */
  forwardHeaders: Record<string, string>;
  retries: number;
  /** Upstash-Retry-Delay: the delay before each retry, an expression over `retried` (ms). */
  retryDelay?: string;
  failureUrl?: string;
  /** Headers of the failure callback's delivery (from Upstash-Failure-Callback-*). */
  failureHeaders?: Record<string, string>;
  label?: string;
  /** Upstash-Flow-Control-Key/Value: limits on this run's deliveries, shared by all runs of the key. */
  flowControl?: { key: string; parallelism?: number; rate?: number; periodMs: number };
  /** Started by POST /v2/trigger: waits for the SDK's own Init publish (two-phase trigger). */
  restTrigger?: boolean;
  /** A run started by context.invoke: where its outcome goes when it ends. */
  invoker?: { runId: string; url: string; headers: Record<string, string[]>; step: Record<string, unknown> };
}

export interface MessageRow {
  step_id: string;
  type: string;
  state: 'completed' | 'failed' | 'waiting';
  output: Record<string, unknown> | null;
  output_bytes: Buffer | null;
}

const toBuffer = (b: Buffer | Uint8Array | null) => (b && !Buffer.isBuffer(b) ? Buffer.from(b.buffer, b.byteOffset, b.byteLength) : b);

/**
 * Creates an HTTP run with its initial message and queues the first delivery; returns false when
 * a run with this id already exists (a deduplicated trigger).
 */
export async function insertHttpRun(
  tx: Queryable,
  r: { id: string; url: string; body: Buffer; contentType: string | null; config: HttpRunConfig; messageId: string; runAtMs: number | null },
): Promise<{ created: boolean; created_at: Date }> {
  // A REST trigger's first delivery tells the SDK it came from an unknown SDK, so it re-triggers.
  const { rows } = await tx.query<{ created_at: Date }>(
    `INSERT INTO herald_runs (id, kind, workflow, input_bytes, config, max_attempts)
     VALUES ($1, 'http', $2, $3, $4::jsonb, $5)
     ON CONFLICT (id) DO NOTHING
     RETURNING created_at`,
    [r.id, r.url, r.body, JSON.stringify(r.config), r.config.retries + 1],
  );
  if (!rows[0]) {
    const existing = await tx.query<{ created_at: Date }>(`SELECT created_at FROM herald_runs WHERE id = $1`, [r.id]);
    return { created: false, created_at: existing.rows[0]!.created_at };
  }
  await appendMessage(tx, {
    runId: r.id, messageId: r.messageId, type: 'init', body: r.body,
    output: { destination: r.url, contentType: r.contentType }, maxAttempts: r.config.retries + 1, runAtMs: r.runAtMs,
    extra: r.config.restTrigger ? { unknownSdk: true } : undefined,
  });
  return { created: true, created_at: rows[0].created_at };
}

/**
 * The second phase of a REST trigger: the SDK publishes its own Init for the run herald created.
 * Its configuration joins the run's (the REST trigger's explicit settings win) and the initial
 * message is delivered again, now as a normal workflow delivery.
 */
export async function adoptSdkTrigger(tx: Queryable, runId: string, sdkConfig: HttpRunConfig): Promise<{ messageId: string; url: string } | undefined> {
  const { rows } = await tx.query<{ config: HttpRunConfig; max_attempts: number; workflow: string }>(
    `SELECT config, max_attempts, workflow FROM herald_runs WHERE id = $1 AND kind = 'http' AND ${isRunningById()} FOR UPDATE`,
    [runId],
  );
  const run = rows[0];
  if (!run?.config.restTrigger) return undefined;
  const { restTrigger: _done, ...rest } = run.config;
  const config: HttpRunConfig = {
    ...sdkConfig,
    ...rest,
    forwardHeaders: { ...sdkConfig.forwardHeaders, ...rest.forwardHeaders },
    failureUrl: rest.failureUrl ?? sdkConfig.failureUrl,
    failureHeaders: rest.failureUrl ? rest.failureHeaders : sdkConfig.failureHeaders,
  };
  await tx.query(`UPDATE herald_runs SET config = $2::jsonb, updated_at = now() WHERE id = $1`, [runId, JSON.stringify(config)]);
  const init = await tx.query<{ step_id: string }>(`SELECT step_id FROM herald_steps WHERE run_id = $1 ORDER BY seq LIMIT 1`, [runId]);
  const messageId = init.rows[0]!.step_id;
  await tx.query(
    `INSERT INTO herald_jobs (kind, payload, key, max_attempts)
     VALUES ('${RUN_JOB.http}', jsonb_build_object('runId', $1::text, 'messageId', $2::text, 'url', $3::text), $4, $5)
     ON CONFLICT (key) WHERE state = 'queued' DO NOTHING`,
    [runId, messageId, run.workflow, `${deliveryKey(runId, messageId)}:sdk`, run.max_attempts],
  );
  await tx.query(`SELECT pg_notify('${JOBS_CHANNEL}', '')`);
  return { messageId, url: run.workflow };
}

/** Appends a published message to a run's history and queues its delivery (at `runAtMs`, or now). */
export async function appendMessage(
  tx: Queryable,
  m: {
    runId: string; messageId: string; type: string; body: Buffer; output: Record<string, unknown>; maxAttempts: number; runAtMs: number | null;
    /** Extra fields for the delivery job's payload. */
    extra?: Record<string, unknown>;
  },
): Promise<void> {
  // The run row is locked before the message takes its place (seq) in the history, so the places
  // of one run's messages follow the order their transactions commit in. Otherwise a message could
  // commit after one placed behind it, and the deliveries of both would each miss the other: after
  // parallel branches, the SDK would never be sent a history with every branch's result.
  await tx.query(
    `WITH run AS (SELECT id FROM herald_runs WHERE id = $1 FOR NO KEY UPDATE),
     s AS (
       INSERT INTO herald_steps (run_id, step_id, type, state, output, output_bytes, attempts, finished_at)
       SELECT $1::text, $2::text, $3::text, 'completed', $4::jsonb, $5::bytea, 1, now() FROM run)
     INSERT INTO herald_jobs (kind, payload, key, max_attempts, run_at)
     SELECT '${RUN_JOB.http}', jsonb_build_object('runId', $1::text, 'messageId', $2::text, 'url', $6::text) || $10::jsonb, $7::text, $8::int,
            coalesce(to_timestamp($9::double precision / 1000), now())
     FROM run`,
    [m.runId, m.messageId, m.type, JSON.stringify(m.output), m.body, m.output.destination ?? null, deliveryKey(m.runId, m.messageId),
      m.maxAttempts, m.runAtMs, JSON.stringify(m.extra ?? {})],
  );
  await tx.query(`SELECT pg_notify('${JOBS_CHANNEL}', '')`);
}

/** The run's completed messages in order, up to and including `upTo` (all when omitted). */
export async function getMessages(db: Queryable, runId: string, upTo?: string): Promise<MessageRow[]> {
  const { rows } = await db.query<MessageRow>(
    `SELECT step_id, type, state, output, output_bytes
     FROM herald_steps
     WHERE run_id = $1 AND state = 'completed'
       AND ($2::text IS NULL OR seq <= (SELECT seq FROM herald_steps WHERE run_id = $1 AND step_id = $2))
     ORDER BY seq`,
    [runId, upTo ?? null],
  );
  return rows.map((r) => ({ ...r, output_bytes: toBuffer(r.output_bytes) }));
}

export interface HttpRunFilter {
  workflowRunIds?: string[];
  /** Prefix of the workflow URL, or the exact URL with `urlExact`. */
  workflowUrl?: string;
  urlExact?: boolean;
  state?: 'running' | 'completed' | 'failed' | 'cancelled';
  label?: string;
  fromMs?: number;
  toMs?: number;
  /** Keyset cursor: runs created before this (created_at ms, id). */
  before?: { createdAt: string; id: string };
  limit: number;
}

export interface HttpRunRow {
  id: string;
  workflow: string;
  state: string;
  result: unknown;
  error: string | null;
  config: HttpRunConfig;
  created_at: Date;
  finished_at: Date | null;
  /** created_at with microseconds, for keyset cursors. */
  cursor: string;
}

/** HTTP runs matching the QStash filters, newest first. */
export async function findHttpRuns(db: Queryable, f: HttpRunFilter): Promise<HttpRunRow[]> {
  const { rows } = await db.query<HttpRunRow>(
    `SELECT id, workflow, state, result, error, config, created_at, finished_at,
            to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS cursor
     FROM herald_runs
     WHERE kind = 'http'
       AND ($1::text[] IS NULL OR id = ANY($1))
       AND ($2::text IS NULL OR CASE WHEN $3 THEN workflow = $2 ELSE starts_with(workflow, $2) END)
       AND ($4::text IS NULL OR state = $4)
       AND ($5::text IS NULL OR config->>'label' = $5)
       AND ($6::double precision IS NULL OR created_at >= to_timestamp($6 / 1000))
       AND ($7::double precision IS NULL OR created_at <= to_timestamp($7 / 1000))
       AND ($8::timestamptz IS NULL OR (created_at, id) < ($8::timestamptz, $9::text))
     ORDER BY created_at DESC, id DESC
     LIMIT $10`,
    [f.workflowRunIds ?? null, f.workflowUrl ?? null, f.urlExact === true, f.state ?? null, f.label ?? null, f.fromMs ?? null,
      f.toMs ?? null, f.before?.createdAt ?? null, f.before?.id ?? null, f.limit],
  );
  return rows;
}

/**
 * When a run started by `context.invoke` ends, its invoker gets the `Invoke` step it waits for:
 * `out` = JSON of `{body, isFailed, isCanceled}`, delivered to the invoker's URL. Called from every
 * way a run ends (in the transaction that ends it).
 */
export async function reportToInvoker(tx: Queryable, runId: string): Promise<void> {
  const { rows } = await tx.query<{ state: string; result: unknown; config: HttpRunConfig }>(
    `SELECT state, result, config FROM herald_runs WHERE id = $1 AND kind = 'http' AND config ? 'invoker'`,
    [runId],
  );
  const run = rows[0];
  if (!run?.config.invoker) return;
  const inv = run.config.invoker;
  const { rows: parent } = await tx.query<{ state: string; max_attempts: number }>(
    `SELECT state, max_attempts FROM herald_runs WHERE id = $1`,
    [inv.runId],
  );
  if (parent[0]?.state !== 'running') return;
  const out = JSON.stringify({
    body: run.state === 'completed' ? JSON.stringify(run.result) : undefined,
    isFailed: run.state === 'failed',
    isCanceled: run.state === 'cancelled',
  });
  const step = { ...inv.step, out };
  delete (step as { targetStep?: unknown }).targetStep;
  await appendMessage(tx, {
    runId: inv.runId, messageId: newMessageId(), type: 'Invoke', body: Buffer.from(JSON.stringify(step)),
    output: { destination: inv.url, invokedRunId: runId }, maxAttempts: parent[0].max_attempts, runAtMs: null,
  });
}
