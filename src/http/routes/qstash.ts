import { Hono, type Context } from 'hono';
import { HttpError } from '../../errors.ts';
import { ValidationError } from '../../errors.ts';
import { findHttpRuns, getMessages, insertHttpRun, newMessageId, type HttpRunFilter } from '../../storage/queries/http-workflows.ts';
import { endHttpRun } from '../../storage/queries/run-end.ts';
import { newRunId } from '../../workflow/start.ts';
import { getRun } from '../../storage/queries/runs.ts';
import { cancelRun } from '../../storage/queries/run-end.ts';
import { QSTASH_STATE_TO_RUN, runLog } from '../../workflow/http/logs.ts';
import { rawSteps } from '../../workflow/http/history.ts';
import { dueAtMs, parseBatch, publishBatch, runConfig } from '../../workflow/http/publish.ts';
import { parseWaitRequest, registerHttpWait } from '../../workflow/http/wait.ts';
import { checkEventId } from '../../workflow/notify.ts';
import type { AppEnv } from '../context.ts';
import { cursorParam, intParam, isTextId, textListParam, textParam, unixMsParam } from '../params.ts';

const RUN_ID_RE = /^[\w.:-]{1,256}$/;
const runIdParam = (raw: string) => {
  if (!RUN_ID_RE.test(raw)) throw new HttpError(404, 'workflow run not found');
  return raw;
};
/**
 * The destination URL written after a prefix (`/v2/publish/https://app/wf?x=1`), as QStash takes
 * it: verbatim, or percent-decoded when the client encoded it whole; herald's own `qstash_token`
 * query parameter is not part of it.
 */
function destinationAfter(requestUrl: string, prefix: string): string {
  const u = new URL(requestUrl);
  u.searchParams.delete('qstash_token');
  let dest = u.pathname.slice(prefix.length);
  if (/^https?%3A/i.test(dest)) dest = decodeURIComponent(dest);
  return dest + (u.search === '?' ? '' : u.search);
}

const bytes = async (c: { req: { arrayBuffer(): Promise<ArrayBuffer> } }) => Buffer.from(await c.req.arrayBuffer());

/**
 * The QStash endpoints @upstash/workflow's serve() and Client call, so an unmodified workflow app
 * runs with QSTASH_URL pointing at herald. See docs/QSTASH.md for what is covered.
 */
export const qstashRoutes = new Hono<AppEnv>();

/** Publish messages: a run's trigger (Upstash-Workflow-Init) or its next steps. */
qstashRoutes.post('/v2/batch', async (c) => {
  const messages = parseBatch(await bytes(c));
  const results = await c.get('engine').db.transaction((tx) => publishBatch(tx, messages));
  return c.json(results, 201);
});

/**
 * Publish one message to the URL that follows /v2/publish/ (the SDK submits context.call results
 * this way): the same semantics as a batch of one, with the request's own headers and body.
 */
qstashRoutes.post('/v2/publish/*', async (c) => {
  const destination = destinationAfter(c.req.url, '/v2/publish/');
  const headers: Record<string, string> = {};
  c.req.raw.headers.forEach((v, k) => (headers[k] = v));
  delete headers.authorization;
  const [message] = parseBatch(Buffer.from(JSON.stringify([{ destination, headers, body: (await bytes(c)).toString('utf8') }])));
  const [result] = await c.get('engine').db.transaction((tx) => publishBatch(tx, [message!]));
  return c.json(result, 201);
});

/**
 * The REST trigger (POST /v2/trigger/{url}): starts a run without the SDK's Client. The first
 * delivery is marked as coming from an unknown SDK, and the app's SDK re-triggers it (two-phase).
 */
qstashRoutes.post('/v2/trigger/*', async (c) => {
  const destination = destinationAfter(c.req.url, '/v2/trigger/');
  const [message] = parseBatch(Buffer.from(JSON.stringify([{ destination, headers: {}, body: '' }])));
  const headers: Record<string, string> = {};
  c.req.raw.headers.forEach((v, k) => (headers[k] = v));
  const runId = headers['upstash-workflow-runid'] || newRunId();
  if (!/^[\w.:-]{1,256}$/.test(runId)) throw new ValidationError('Upstash-Workflow-RunId is not a valid run id');
  const config = { ...runConfig(headers), restTrigger: true };
  const body = await bytes(c);
  const created = await c.get('engine').db.transaction((tx) =>
    insertHttpRun(tx, {
      id: runId, url: message!.destination, body, contentType: headers['content-type'] ?? null,
      config, messageId: newMessageId(), runAtMs: dueAtMs(headers),
    }),
  );
  if (!created.created) throw new HttpError(409, `workflow run ${runId} already exists`);
  return c.json({ workflowRunId: runId, workflowCreatedAt: created.created_at.getTime() });
});

/** A waitForEvent of an HTTP workflow (undocumented in QStash, used by the SDK). */
qstashRoutes.post('/v2/wait/:eventId', async (c) => {
  const eventId = checkEventId(c.req.param('eventId'));
  const runId = c.req.header('upstash-workflow-runid');
  if (!runId || !RUN_ID_RE.test(runId)) throw new HttpError(400, 'Upstash-Workflow-RunId header is missing or invalid');
  const wait = parseWaitRequest(await bytes(c));
  const outcome = await c.get('engine').db.transaction((tx) => registerHttpWait(tx, runId, eventId, wait));
  return c.json({ ok: true, outcome }, 200);
});

/** The run's history (the SDK's lazy fetch); 404 once the run has ended. */
qstashRoutes.get('/v2/workflows/runs/:id', async (c) => {
  const id = runIdParam(c.req.param('id'));
  const run = await getRun(c.get('engine').db, id);
  if (!run || run.kind !== 'http' || run.state !== 'running') throw new HttpError(404, `workflow run ${id} not found or ended`);
  return c.json(rawSteps(await getMessages(c.get('engine').db, id)));
});

/**
 * Ends a run: `?cancel=false` with the workflow's result as the body (the SDK's "finished"), or a
 * cancel (`?cancel=true`, or no parameter: the documented cancel).
 */
qstashRoutes.delete('/v2/workflows/runs/:id', async (c) => {
  const id = runIdParam(c.req.param('id'));
  const finish = c.req.query('cancel') === 'false';
  const raw = await bytes(c);
  let result: unknown = null;
  if (finish && raw.length > 0) {
    const text = raw.toString('utf8');
    try {
      result = JSON.parse(text);
    } catch {
      result = text;
    }
  }
  const outcome = await c.get('engine').db.transaction((tx) =>
    endHttpRun(tx, id, finish ? { state: 'completed', result } : { state: 'cancelled' }),
  );
  if (outcome === 'not-found') throw new HttpError(404, `workflow run ${id} not found`);
  if (outcome === 'ended') c.get('engine').metrics.runsFinished.inc({ state: finish ? 'completed' : 'cancelled' });
  return c.json({}, 200);
});

/** The QStash run filters from a query string (bulk cancel, logs). */
function runFilter(c: { req: { query(k: string): string | undefined; queries(k: string): string[] | undefined } }, max: number, fallback: number): HttpRunFilter {
  const stateRaw = c.req.query('state');
  const state = stateRaw ? QSTASH_STATE_TO_RUN[stateRaw] : undefined;
  if (stateRaw && !state) throw new ValidationError(`state must be one of ${Object.keys(QSTASH_STATE_TO_RUN).join(', ')}`, 'state');
  return {
    workflowRunIds: textListParam([...(c.req.queries('workflowRunIds') ?? []), ...(c.req.queries('workflowRunId') ?? [])], 'workflowRunId'),
    workflowUrl: textParam(c.req.query('workflowUrl'), 'workflowUrl'),
    urlExact: c.req.query('workflowUrlExactMatch') === 'true',
    state,
    label: textParam(c.req.query('label'), 'label'),
    fromMs: unixMsParam(c.req.query('fromDate'), 'fromDate'),
    toMs: unixMsParam(c.req.query('toDate'), 'toDate'),
    before: cursorParam(c.req.query('cursor'), isTextId),
    limit: intParam(c.req.query('count'), 'count', 1, max) ?? fallback,
  };
}

/** Bulk cancel (client.cancel): by ids, by filters, or all (up to `count`, default 100). */
qstashRoutes.delete('/v2/workflows/runs', async (c) => {
  const filter = { ...runFilter(c, 1000, 100), state: 'running' as const };
  const cancelled = await c.get('engine').db.transaction(async (tx) => {
    let n = 0;
    for (const run of await findHttpRuns(tx, filter)) if ((await cancelRun(tx, run.id)).outcome === 'cancelled') n++;
    return n;
  });
  if (cancelled) c.get('engine').metrics.runsFinished.inc({ state: 'cancelled' }, cancelled);
  return c.json({ cancelled });
});

/** Run logs (client.logs calls /v2/workflows/events?groupBy=workflowRunId). */
const logs = async (c: Context<AppEnv>) => {
  const filter = runFilter(c, 100, 10);
  const rows = await findHttpRuns(c.get('engine').db, { ...filter, limit: filter.limit + 1 });
  const page = rows.slice(0, filter.limit);
  const runs = await Promise.all(page.map(async (r) => runLog(r, await getMessages(c.get('engine').db, r.id))));
  const last = page.at(-1);
  const cursor = rows.length > filter.limit && last ? Buffer.from(JSON.stringify([last.cursor, last.id])).toString('base64url') : undefined;
  return c.json({ cursor, runs });
};
qstashRoutes.get('/v2/workflows/events', logs);
qstashRoutes.get('/v2/workflows/logs', logs);

/** The signing keys (the SDK's dev-mode probe asks for them). */
qstashRoutes.get('/v2/keys', (c) => {
  const keys = c.get('engine').settings.qstashSigningKeys;
  if (!keys) throw new HttpError(404, 'no signing keys configured (QSTASH_CURRENT_SIGNING_KEY)');
  return c.json(keys);
});
