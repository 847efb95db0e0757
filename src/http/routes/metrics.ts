import { Hono } from 'hono';
import type { AppEnv } from '../context.ts';

/** Prometheus exposition. Counts only, no payloads; protect it at the network edge if needed. */
export const metricsRoutes = new Hono<AppEnv>();
metricsRoutes.get('/metrics', async (c) => {
  const { registry } = c.get('engine').metrics;
  return c.body(await registry.metrics(), 200, { 'content-type': registry.contentType });
});
