import { Hono } from 'hono';
import type { AppEnv } from '../context.ts';
import { signed } from '../middleware/signed.ts';

/** The seed's emit endpoint, and its dry run. */
export const emitRoutes = new Hono<AppEnv>()
  .post('/api/notifications/emit', signed, async (c) => {
    const outcome = await c.get('engine').emit(c.get('rawBody'), c.get('idempotencyKey'));
    if (outcome.replayed) c.header('Idempotent-Replayed', 'true');
    return c.json(outcome.body, outcome.status as 200);
  })
  .post('/api/notifications/dry-run', signed, async (c) => c.json(await c.get('engine').dryRun(c.get('rawBody'))));
