import { randomUUID } from 'node:crypto';
import { Hono } from 'hono';
import { coerceError } from '../errors.ts';
import type { Engine } from '../engine.ts';
import type { AppEnv } from './context.ts';
import { errorBody, errorResponse } from './errors.ts';
import { channelWebhookRoutes } from './routes/channel-webhooks.ts';
import { deliveryRoutes } from './routes/deliveries.ts';
import { emitRoutes } from './routes/emit.ts';
import { preferenceRoutes } from './routes/preferences.ts';
import { healthRoutes } from './routes/health.ts';
import { inboxRoutes } from './routes/inbox.ts';
import { metricsRoutes } from './routes/metrics.ts';
import { notifyRoutes } from './routes/notify.ts';
import { qstashRoutes } from './routes/qstash.ts';
import { dlqRoutes } from './routes/qstash-dlq.ts';
import { bearerToken } from './middleware/bearer-token.ts';
import { bodyLimit } from './middleware/body-limit.ts';
import { withEmitShedding } from './middleware/shed.ts';
import { userRoutes } from './routes/users.ts';
import { workflowRoutes } from './routes/workflows.ts';

/** The HTTP surface. Routes only translate HTTP to engine calls; no business logic lives here. */
export function createApp(engine: Engine) {
  const app = new Hono<AppEnv>();
  app.use(async (c, next) => {
    const started = performance.now();
    c.set('engine', engine);
    const given = c.req.header('x-request-id');
    c.set('requestId', given && /^[\w-]{1,64}$/.test(given) ? given : randomUUID());
    c.header('x-request-id', c.get('requestId'));
    await next();
    // The path only: query strings can carry tokens and never reach the log.
    if (engine.log.isLevelEnabled('debug')) engine.log.debug(
      { requestId: c.get('requestId'), method: c.req.method, path: c.req.path, status: c.res.status, ms: +(performance.now() - started).toFixed(2) },
      'request',
    );
  });
  app.use(
    bodyLimit({
      maxSize: engine.settings.maxBodyBytes,
      onError: (c) => c.json(errorBody(c, `request body exceeds ${engine.settings.maxBodyBytes} bytes`), 413),
    }),
  );
  app.route('/', healthRoutes);
  app.route('/', emitRoutes);
  app.route('/', inboxRoutes);
  app.route('/', userRoutes);
  app.route('/', workflowRoutes);
  app.route('/', preferenceRoutes);
  app.route('/', deliveryRoutes);
  app.route('/', channelWebhookRoutes);
  // The QStash-compatible surface (notify, waiters, HTTP workflows): QSTASH_TOKEN, as a bearer
  // token or ?qstash_token= as Upstash accepts it.
  app.use('/v2/*', bearerToken({ token: (s) => s.qstashToken, env: 'QSTASH_TOKEN', query: 'qstash_token' }));
  app.route('/', notifyRoutes(engine.settings.notifyRateLimit));
  app.route('/', qstashRoutes);
  app.route('/', dlqRoutes);
  app.route('/', metricsRoutes);
  app.notFound((c) => c.json(errorBody(c, `no route for ${c.req.method} ${c.req.path}`), 404));
  app.onError((err, c) => errorResponse(coerceError(err), c));
  // Emits are shed under overload before routing (the cheapest refusal: middleware/shed.ts).
  app.fetch = withEmitShedding(engine, app.fetch);
  return app;
}

export type HeraldApp = ReturnType<typeof createApp>;
