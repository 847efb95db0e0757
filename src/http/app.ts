import { randomUUID } from 'node:crypto';
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { coerceError } from '../errors.ts';
import type { Engine } from '../engine.ts';
import type { AppEnv } from './context.ts';
import { errorResponse } from './errors.ts';
import { emitRoutes } from './routes/emit.ts';
import { healthRoutes } from './routes/health.ts';
import { inboxRoutes } from './routes/inbox.ts';
import { userRoutes } from './routes/users.ts';

/** The HTTP surface. Routes only translate HTTP to engine calls; no business logic lives here. */
export function createApp(engine: Engine) {
  const app = new Hono<AppEnv>();
  app.use(async (c, next) => {
    const started = performance.now();
    c.set('engine', engine);
    const given = c.req.header('x-request-id');
    c.set('requestId', given && /^[\w-]{1,64}$/.test(given) ? given : randomUUID());
    c.header('x-request-id', c.var.requestId);
    await next();
    // The path only: query strings can carry tokens and never reach the log.
    engine.log.debug(
      { requestId: c.var.requestId, method: c.req.method, path: c.req.path, status: c.res.status, ms: +(performance.now() - started).toFixed(2) },
      'request',
    );
  });
  app.use(
    bodyLimit({
      maxSize: engine.settings.maxBodyBytes,
      onError: (c) => c.json({ ok: false, error: `request body exceeds ${engine.settings.maxBodyBytes} bytes` }, 413),
    }),
  );
  app.route('/', healthRoutes);
  app.route('/', emitRoutes);
  app.route('/', inboxRoutes);
  app.route('/', userRoutes);
  app.notFound((c) => c.json({ ok: false, error: `no route for ${c.req.method} ${c.req.path}` }, 404));
  app.onError((err, c) => errorResponse(coerceError(err), c));
  return app;
}

export type HeraldApp = ReturnType<typeof createApp>;
