import type { IncomingMessage } from 'node:http';
import { Hono } from 'hono';
import type { AppEnv } from '../context.ts';
import { signed } from '../middleware/signed.ts';

/**
 * True once the client's connection has closed (it gave up): an emit still waiting for its write
 * is then dropped instead of written for nobody. Only a request from a socket has one
 * (@hono/node-server passes the Node request as `env.incoming`); `app.request()` in tests has none.
 */
function clientGone(env: unknown): (() => boolean) | undefined {
  const socket = (env as { incoming?: IncomingMessage } | undefined)?.incoming?.socket;
  return socket ? () => socket.destroyed : undefined;
}

/** The seed's emit endpoint (shed under overload before routing: middleware/shed.ts), and its dry run. */
export const emitRoutes = new Hono<AppEnv>()
  .post('/api/notifications/emit', signed, async (c) => {
    const outcome = await c.get('engine').emit(c.get('rawBody'), c.get('idempotencyKey'), { abandoned: clientGone(c.env) });
    if (outcome.replayed) c.header('Idempotent-Replayed', 'true');
    return c.json(outcome.body, outcome.status as 200);
  })
  .post('/api/notifications/dry-run', signed, async (c) => c.json(await c.get('engine').dryRun(c.get('rawBody'))));
