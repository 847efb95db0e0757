import { Hono } from 'hono';
import { HttpError, ValidationError } from '../../errors.ts';
import { parseJsonObject } from '../../intake/parse-body.ts';
import { getRun, listRuns, type RunRow, type RunState } from '../../storage/queries/runs.ts';
import { cancelRun } from '../../storage/queries/run-end.ts';
import { getSteps, type StepRow } from '../../storage/queries/steps.ts';
import { listWaiters, type WaiterRow } from '../../storage/queries/waiters.ts';
import { checkEventId, waiterView } from '../../workflow/notify.ts';
import { startCodeRun } from '../../workflow/start.ts';
import type { AppEnv } from '../context.ts';
import { bearerToken } from '../middleware/bearer-token.ts';
import { cursorParam, isTextId, textParam } from '../params.ts';

const STATES: RunState[] = ['running', 'completed', 'failed', 'cancelled'];
const RUN_ID_RE = /^[\w.:-]{1,256}$/;

const presentRun = (r: RunRow) => ({
  workflowRunId: r.id,
  kind: r.kind,
  workflow: r.workflow,
  state: r.state,
  input: r.input,
  result: r.result,
  error: r.error,
  eventId: r.event_id,
  tenantId: r.tenant_id,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
  finishedAt: r.finished_at,
});

const presentStep = (s: StepRow) => ({
  stepId: s.step_id,
  type: s.type,
  state: s.state,
  output: s.output_missing ? undefined : s.output,
  // A wait's event body, exactly as notified (base64), with its content type.
  body: s.output_bytes ? s.output_bytes.toString('base64') : undefined,
  contentType: s.content_type ?? undefined,
  wakeAt: s.wake_at ?? undefined,
  attempts: s.attempts,
  error: s.error ?? undefined,
  startedAt: s.started_at,
  finishedAt: s.finished_at,
  durationMs: s.finished_at ? s.finished_at.getTime() - s.started_at.getTime() : undefined,
});

const presentWaiter = (w: WaiterRow) => ({ ...waiterView(w), workflowRunId: w.run_id, stepId: w.step_id, eventId: w.event_id, createdAt: w.created_at });

function limitParam(raw: string | undefined, max: number): number {
  if (raw === undefined) return 50;
  if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > max) throw new ValidationError(`limit must be a whole number from 1 to ${max}`, 'limit');
  return Number(raw);
}

function runIdParam(raw: string): string {
  if (!RUN_ID_RE.test(raw)) throw new HttpError(404, 'workflow run not found');
  return raw;
}

/** The admin API (bearer ADMIN_TOKEN): start runs, inspect them and their steps, cancel, waiters. */
export const workflowRoutes = new Hono<AppEnv>();
workflowRoutes.use('/api/workflows/*', bearerToken({ token: (s) => s.adminToken, env: 'ADMIN_TOKEN' }));

workflowRoutes.get('/api/workflows', (c) => {
  const { byName } = c.get('engine').rules.workflows;
  return c.json({
    workflows: [...byName.values()].map((w) => ({
      name: w.name,
      description: w.definition.description,
      on: w.definition.on === undefined ? [] : [w.definition.on].flat(),
      retries: w.maxAttempts - 1,
    })),
  });
});

workflowRoutes.get('/api/workflows/runs', async (c) => {
  const state = c.req.query('state');
  if (state !== undefined && !STATES.includes(state as RunState)) {
    throw new ValidationError(`state must be one of ${STATES.join(', ')}`, 'state');
  }
  const limit = limitParam(c.req.query('limit'), 500);
  const rows = await listRuns(c.get('engine').db, {
    state: state as RunState | undefined,
    workflow: textParam(c.req.query('workflow'), 'workflow'),
    limit: limit + 1,
    before: cursorParam(c.req.query('cursor'), isTextId),
  });
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return c.json({
    runs: page.map(presentRun),
    nextCursor: rows.length > limit && last ? Buffer.from(JSON.stringify([last.cursor, last.id])).toString('base64url') : null,
  });
});

workflowRoutes.get('/api/workflows/runs/:id', async (c) => {
  const { db } = c.get('engine');
  const id = runIdParam(c.req.param('id'));
  const run = await getRun(db, id);
  if (!run) throw new HttpError(404, 'workflow run not found');
  const [steps, waiters] = await Promise.all([getSteps(db, id), listWaiters(db, { runId: id, limit: 1000 })]);
  return c.json({ run: presentRun(run), steps: steps.map(presentStep), waiters: waiters.map(presentWaiter) });
});

workflowRoutes.post('/api/workflows/runs/:id/cancel', async (c) => {
  const id = runIdParam(c.req.param('id'));
  const out = await c.get('engine').db.transaction((tx) => cancelRun(tx, id));
  if (out.outcome === 'not-found') throw new HttpError(404, 'workflow run not found');
  if (out.outcome === 'ended') throw new HttpError(409, `workflow run ${id} already ended (${out.state})`);
  c.get('engine').metrics.runsFinished.inc({ state: 'cancelled' });
  return c.json({ ok: true, workflowRunId: id, state: 'cancelled' });
});

workflowRoutes.get('/api/workflows/waiters', async (c) => {
  const raw = c.req.query('eventId');
  const eventId = raw === undefined ? undefined : checkEventId(raw);
  const rows = await listWaiters(c.get('engine').db, { eventId, limit: limitParam(c.req.query('limit'), 1000) });
  return c.json({ waiters: rows.map(presentWaiter) });
});

workflowRoutes.post('/api/workflows/:name/runs', async (c) => {
  const engine = c.get('engine');
  const wf = engine.rules.workflows.byName.get(c.req.param('name'));
  if (!wf) throw new HttpError(404, `no workflow named "${c.req.param('name')}" in the config`);
  const raw = Buffer.from(await c.req.arrayBuffer());
  let input: unknown = raw.length === 0 ? {} : parseJsonObject(raw);
  const schema = wf.definition.schema;
  if (schema) {
    const parsed = schema.safeParse(input);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      const field = issue.path.join('.') || '(input)';
      throw new ValidationError(`input.${field}: ${issue.message}`, `input.${field}`);
    }
    input = parsed.data;
  }
  const started = await engine.db.transaction((tx) => startCodeRun(tx, wf, input));
  return c.json(started, 201);
});
