import { Hono } from 'hono';
import type { AppEnv } from '../context.ts';

export const healthRoutes = new Hono<AppEnv>()
  // Liveness: the process answers.
  .get('/healthz', (c) => c.json({ ok: true }))
  // Readiness: the database answers and the schema is migrated.
  .get('/readyz', async (c) => {
    try {
      await c.get('engine').db.query(`SELECT 1 FROM herald_migrations LIMIT 1`);
      return c.json({ ok: true, database: c.get('engine').db.kind });
    } catch (err) {
      c.get('engine').log.warn({ err: (err as Error).message }, 'readiness check failed');
      return c.json({ ok: false, error: 'database unavailable' }, 503);
    }
  });
