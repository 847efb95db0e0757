import { Hono } from 'hono';
import { HttpError } from '../../errors.ts';
import { listWaiters } from '../../storage/queries/waiters.ts';
import { broadcastNotify, checkEventId, runNotify, waiterView, type NotifyBody } from '../../workflow/notify.ts';
import type { AppEnv } from '../context.ts';
import { createRateLimiter } from '../rate-limit.ts';

/**
 * The notify API of Upstash Workflow (seed 000), wire-compatible: the same paths, the same
 * NotifyResponse and Waiter shapes, `{error}` bodies. Bodies pass through byte for byte.
 */
export function notifyRoutes(rateLimit: number) {
  const limiter = createRateLimiter(rateLimit);
  const app = new Hono<AppEnv>();
  // Authentication of /v2/* is in app.ts (shared with the rest of the QStash surface).
  app.use('/v2/notify/*', async (_c, next) => {
    limiter.take();
    await next();
  });

  const body = async (c: { req: { arrayBuffer(): Promise<ArrayBuffer>; header(n: string): string | undefined } }): Promise<NotifyBody> => ({
    body: Buffer.from(await c.req.arrayBuffer()),
    contentType: c.req.header('content-type') ?? null,
  });

  app.post('/v2/notify/:eventId', async (c) => {
    const engine = c.get('engine');
    const eventId = checkEventId(c.req.param('eventId'));
    const payload = await body(c);
    const results = await engine.db.transaction((tx) => broadcastNotify(tx, eventId, payload));
    engine.metrics.notifies.inc({ kind: 'broadcast', result: results.length ? 'delivered' : 'no-waiter' });
    return c.json(results, 201);
  });

  app.post('/v2/notify/:workflowRunId/:eventId', async (c) => {
    const engine = c.get('engine');
    const runId = c.req.param('workflowRunId');
    if (!/^[\w.:-]{1,256}$/.test(runId)) throw new HttpError(400, 'invalid workflow run id');
    const eventId = checkEventId(c.req.param('eventId'));
    const out = await runNotify(engine.db, runId, eventId, await body(c));
    engine.metrics.notifies.inc({ kind: 'run', result: out.outcome });
    switch (out.outcome) {
      case 'not-found':
        throw new HttpError(404, `workflow run ${runId} not found`);
      case 'ended':
        throw new HttpError(404, `workflow run ${runId} is not running (it is ${out.state}); a notify can no longer reach it`);
      case 'delivered':
        return c.json(out.results, 201);
      case 'stored':
        // No waiter yet: kept for the run's next wait on this event id. One entry, without a waiter.
        return c.json(
          [{ messageId: out.messageId, deduplicated: false, error: '', workflowRunId: out.workflowRunId, workflowCreatedAt: out.workflowCreatedAt }],
          201,
        );
    }
  });

  app.get('/v2/waiters/:eventId', async (c) => {
    const eventId = checkEventId(c.req.param('eventId'));
    const rows = await listWaiters(c.get('engine').db, { eventId, limit: 1000 });
    return c.json(rows.map((w) => ({ ...waiterView(w), workflowRunId: w.run_id })));
  });
  return app;
}
