import type { Queryable } from '../db.ts';
import { JOBS_CHANNEL } from './jobs.ts';
import { newMessageId } from './http-workflows.ts';
import { deliveryKey, RUN_JOB } from './runs.ts';

export interface DlqRow {
  id: string;
  run_id: string;
  message_id: string;
  url: string;
  response_status: number;
  response_headers: Record<string, string[]>;
  response_body: Buffer | null;
  error: string;
  failure_callback: string | null;
  failure_callback_state: string | null;
  created_at: Date;
  cursor: string;
  // from the run
  workflow: string;
  run_created_at: Date;
  config: Record<string, unknown>;
  input_bytes: Buffer | null;
}

export interface DlqFilter {
  ids?: string[];
  workflowRunId?: string;
  url?: string;
  responseStatus?: number;
  fromMs?: number;
  toMs?: number;
  before?: { createdAt: string; id: string };
  limit: number;
}

const toBuffer = (b: Buffer | Uint8Array | null) => (b && !Buffer.isBuffer(b) ? Buffer.from(b.buffer, b.byteOffset, b.byteLength) : b);

export async function insertDlq(
  tx: Queryable,
  e: { runId: string; messageId: string; url: string; status: number; headers: Record<string, string[]>; body: Buffer | null; error: string; failureCallback: string | null },
): Promise<string> {
  const { rows } = await tx.query<{ id: string }>(
    `INSERT INTO herald_dlq (id, run_id, message_id, url, response_status, response_headers, response_body, error,
                             failure_callback, failure_callback_state)
     VALUES ('dlq_' || replace(gen_random_uuid()::text, '-', ''), $1, $2, $3, $4, $5::jsonb, $6, $7, $8,
             CASE WHEN $8::text IS NULL THEN NULL ELSE 'pending' END)
     RETURNING id`,
    [e.runId, e.messageId, e.url, e.status, JSON.stringify(e.headers), e.body, e.error.slice(0, 4000), e.failureCallback],
  );
  return rows[0]!.id;
}

export async function listDlq(db: Queryable, f: DlqFilter): Promise<DlqRow[]> {
  const { rows } = await db.query<DlqRow>(
    `SELECT d.*, to_char(d.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS cursor,
            r.workflow, r.created_at AS run_created_at, r.config, r.input_bytes
     FROM herald_dlq d JOIN herald_runs r ON r.id = d.run_id
     WHERE ($1::text[] IS NULL OR d.id = ANY($1))
       AND ($2::text IS NULL OR d.run_id = $2)
       AND ($3::text IS NULL OR d.url = $3)
       AND ($4::int IS NULL OR d.response_status = $4)
       AND ($5::double precision IS NULL OR d.created_at >= to_timestamp($5 / 1000))
       AND ($6::double precision IS NULL OR d.created_at <= to_timestamp($6 / 1000))
       AND ($7::timestamptz IS NULL OR (d.created_at, d.id) < ($7::timestamptz, $8::text))
     ORDER BY d.created_at DESC, d.id DESC
     LIMIT $9`,
    [f.ids ?? null, f.workflowRunId ?? null, f.url ?? null, f.responseStatus ?? null, f.fromMs ?? null, f.toMs ?? null,
      f.before?.createdAt ?? null, f.before?.id ?? null, f.limit],
  );
  return rows.map((r) => ({ ...r, response_body: toBuffer(r.response_body), input_bytes: toBuffer(r.input_bytes) }));
}

/**
 * Locks these DLQ entries for the transaction, in id order, and returns the ones still there.
 * Every transaction that removes entries (revive, delete) calls this before anything else, so
 * two of them take the same rows in the same order: no deadlock (a revival used to lock its
 * entries newest first, after writing each new run, and a delete in whatever order its scan
 * met them: 500 "deadlock detected"). An entry removed meanwhile is absent from the answer, so
 * it is revived once, never twice.
 */
export async function lockDlqEntries(tx: Queryable, ids: string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const { rows } = await tx.query<{ id: string }>(`SELECT id FROM herald_dlq WHERE id = ANY($1) ORDER BY id FOR UPDATE`, [ids]);
  return new Set(rows.map((r) => r.id));
}

export async function deleteDlq(tx: Queryable, ids: string[]): Promise<number> {
  const present = await lockDlqEntries(tx, ids);
  if (present.size === 0) return 0;
  const { rows } = await tx.query<{ id: string }>(`DELETE FROM herald_dlq WHERE id = ANY($1) RETURNING id`, [[...present]]);
  return rows.length;
}

export async function setFailureCallbackState(tx: Queryable, runId: string, state: 'delivered' | 'failed' | 'pending'): Promise<void> {
  await tx.query(`UPDATE herald_dlq SET failure_callback_state = $2 WHERE run_id = $1 AND failure_callback IS NOT NULL`, [runId, state]);
}

/**
 * A new run from a dead-lettered one: `resume` copies the history up to and including the failed
 * message and delivers that message again; `restart` keeps only the initial payload. The DLQ entry
 * is removed. Returns the new run. The caller holds the entry's lock (`lockDlqEntries`), taken
 * before this transaction wrote anything.
 */
export async function reviveRun(
  tx: Queryable,
  entry: DlqRow,
  mode: 'resume' | 'restart',
  newRunId: string,
  retries: number | undefined,
): Promise<{ id: string; created_at: Date }> {
  const config = { ...entry.config, ...(retries === undefined ? {} : { retries }) };
  const maxAttempts = Number((config as { retries?: number }).retries ?? 3) + 1;
  const { rows } = await tx.query<{ id: string; created_at: Date }>(
    `INSERT INTO herald_runs (id, kind, workflow, input_bytes, config, max_attempts)
     VALUES ($1, 'http', $2, $3, $4::jsonb, $5) RETURNING id, created_at`,
    [newRunId, entry.workflow, entry.input_bytes, JSON.stringify(config), maxAttempts],
  );
  // Copy in order (the identity column keeps it), up to the failed message or just the first.
  await tx.query(
    `INSERT INTO herald_steps (run_id, step_id, type, state, output, output_bytes, content_type, wake_at, attempts, error, started_at, finished_at)
     SELECT $1, step_id, type, state, output, output_bytes, content_type, wake_at, attempts, error, started_at, finished_at
     FROM herald_steps
     WHERE run_id = $2 AND state = 'completed'
       AND seq <= CASE WHEN $4 THEN (SELECT min(seq) FROM herald_steps WHERE run_id = $2)
                       ELSE (SELECT seq FROM herald_steps WHERE run_id = $2 AND step_id = $3) END
     ORDER BY seq`,
    [newRunId, entry.run_id, entry.message_id, mode === 'restart'],
  );
  const { rows: last } = await tx.query<{ step_id: string; url: string | null }>(
    `SELECT step_id, output->>'destination' AS url FROM herald_steps WHERE run_id = $1 ORDER BY seq DESC LIMIT 1`,
    [newRunId],
  );
  const messageId = last[0]?.step_id ?? newMessageId();
  await tx.query(
    `INSERT INTO herald_jobs (kind, payload, key, max_attempts)
     VALUES ('${RUN_JOB.http}', jsonb_build_object('runId', $1::text, 'messageId', $2::text, 'url', $3::text), $4, $5)`,
    [newRunId, messageId, mode === 'restart' ? entry.workflow : entry.url, deliveryKey(newRunId, messageId), maxAttempts],
  );
  await tx.query(`SELECT pg_notify('${JOBS_CHANNEL}', '')`);
  await tx.query(`DELETE FROM herald_dlq WHERE id = $1`, [entry.id]);
  return rows[0]!;
}
