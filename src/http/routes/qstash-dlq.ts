import { Hono, type Context } from 'hono';
import { HttpError, ValidationError } from '../../errors.ts';
import { deleteDlq, listDlq, lockDlqEntries, reviveRun, setFailureCallbackState, type DlqFilter, type DlqRow } from '../../storage/queries/dlq.ts';
import type { HttpRunConfig } from '../../storage/queries/http-workflows.ts';
import { getRun } from '../../storage/queries/runs.ts';
import { queueFailureCallback } from '../../workflow/http/failure.ts';
import { newRunId } from '../../workflow/start.ts';
import type { AppEnv } from '../context.ts';
import { cursorParam, intParam, isTextId, textListParam, textParam, unixMsParam } from '../params.ts';

/**
 * The workflow dead-letter list (client.dlq): failed HTTP runs with the endpoint's last answer;
 * resume (a new run from the failed step), restart (a new run from the start), retry the failure
 * callback, delete.
 */
export const dlqRoutes = new Hono<AppEnv>();

const CALLBACK_STATE: Record<string, string> = { pending: 'CALLBACK_INPROGRESS', delivered: 'CALLBACK_SUCCESS', failed: 'CALLBACK_FAIL' };

function present(d: DlqRow) {
  const config = d.config as unknown as HttpRunConfig;
  return {
    dlqId: d.id,
    messageId: d.message_id,
    url: d.url,
    method: 'POST',
    header: Object.fromEntries(Object.entries(config.forwardHeaders ?? {}).map(([k, v]) => [k, [v]])),
    body: (d.input_bytes ?? Buffer.alloc(0)).toString('utf8'),
    maxRetries: config.retries,
    notBefore: 0,
    createdAt: d.created_at.getTime(),
    callerIP: '',
    workflowRunId: d.run_id,
    workflowCreatedAt: d.run_created_at.getTime(),
    workflowUrl: d.workflow,
    responseStatus: d.response_status,
    responseHeader: d.response_headers,
    responseBody: (d.response_body ?? Buffer.alloc(0)).toString('utf8'),
    error: d.error,
    ...(d.failure_callback ? { failureCallback: d.failure_callback, failureCallbackInfo: { state: CALLBACK_STATE[d.failure_callback_state ?? ''] } } : {}),
    ...(config.label ? { label: config.label } : {}),
  };
}

function dlqFilter(c: Context<AppEnv>, fallback: number): DlqFilter {
  return {
    ids: textListParam([...(c.req.queries('dlqIds') ?? []), ...(c.req.queries('dlqId') ?? [])], 'dlqId'),
    workflowRunId: textParam(c.req.query('workflowRunId'), 'workflowRunId'),
    url: textParam(c.req.query('url'), 'url') ?? textParam(c.req.query('workflowUrl'), 'workflowUrl'),
    responseStatus: intParam(c.req.query('responseStatus'), 'responseStatus', 0, 999),
    fromMs: unixMsParam(c.req.query('fromDate'), 'fromDate'),
    toMs: unixMsParam(c.req.query('toDate'), 'toDate'),
    before: cursorParam(c.req.query('cursor'), isTextId),
    limit: intParam(c.req.query('count'), 'count', 1, 1000) ?? fallback,
  };
}

/** A DLQ id in the path: storable text (an empty one cannot reach here, the route needs a segment). */
const dlqIdParam = (raw: string) => textParam(raw, 'dlqId') ?? raw;

const nextCursor = (rows: DlqRow[], limit: number) => {
  const last = rows[limit - 1];
  return rows.length > limit && last ? Buffer.from(JSON.stringify([last.cursor, last.id])).toString('base64url') : undefined;
};

dlqRoutes.get('/v2/dlq', async (c) => {
  const f = dlqFilter(c, 100);
  const rows = await listDlq(c.get('engine').db, { ...f, limit: f.limit + 1 });
  return c.json({ messages: rows.slice(0, f.limit).map(present), cursor: nextCursor(rows, f.limit) });
});

const revive = (mode: 'resume' | 'restart') => async (c: Context<AppEnv>) => {
  const f = dlqFilter(c, 50);
  const retriesRaw = c.req.header('upstash-retries');
  if (retriesRaw !== undefined && !/^\d{1,2}$/.test(retriesRaw)) throw new ValidationError('Upstash-Retries must be 0 to 99');
  const { db } = c.get('engine');
  const rows = await listDlq(db, { ...f, limit: f.limit + 1 });
  if (f.ids && rows.length === 0) throw new HttpError(404, 'no such DLQ entry');
  const listed = rows.slice(0, f.limit);
  const workflowRuns = await db.transaction(async (tx) => {
    // The entries' locks first, in one order; one revived or deleted meanwhile is skipped.
    const present = await lockDlqEntries(tx, listed.map((r) => r.id));
    const out = [];
    for (const entry of listed) {
      if (!present.has(entry.id)) continue;
      const run = await reviveRun(tx, entry, mode, newRunId(), retriesRaw === undefined ? undefined : Number(retriesRaw));
      out.push({ workflowRunId: run.id, workflowCreatedAt: run.created_at.getTime() });
    }
    return out;
  });
  if (f.ids && workflowRuns.length === 0) throw new HttpError(404, 'no such DLQ entry');
  return c.json({ workflowRuns, cursor: nextCursor(rows, f.limit) });
};
dlqRoutes.post('/v2/workflows/dlq/resume', revive('resume'));
dlqRoutes.post('/v2/workflows/dlq/restart', revive('restart'));

dlqRoutes.post('/v2/workflows/dlq/callback/:dlqId', async (c) => {
  const { db } = c.get('engine');
  const [entry] = await listDlq(db, { ids: [dlqIdParam(c.req.param('dlqId'))], limit: 1 });
  if (!entry) throw new HttpError(404, 'no such DLQ entry');
  if (!entry.failure_callback) throw new HttpError(400, 'this run has no failure callback');
  await db.transaction(async (tx) => {
    const run = await getRun(tx, entry.run_id);
    if (!run) throw new HttpError(404, 'the run of this DLQ entry is gone');
    await setFailureCallbackState(tx, run.id, 'pending');
    await queueFailureCallback(tx, run, new Error(entry.error));
  });
  return c.json({ ok: true });
});

const remove = async (c: Context<AppEnv>) => {
  const rawSingle = c.req.param('dlqId');
  const single = rawSingle === undefined ? undefined : dlqIdParam(rawSingle);
  const f = single ? { ids: [single], limit: 1 } : dlqFilter(c, 100);
  const { db } = c.get('engine');
  const rows = await listDlq(db, { ...f, limit: f.limit + 1 });
  const deleted = await db.transaction((tx) => deleteDlq(tx, rows.slice(0, f.limit).map((r) => r.id)));
  if (single && deleted === 0) throw new HttpError(404, 'no such DLQ entry');
  return c.json({ deleted, cursor: nextCursor(rows, f.limit) });
};
dlqRoutes.delete('/v2/workflows/dlq', remove);
dlqRoutes.delete('/v2/workflows/dlq/:dlqId', remove);
