import { createHash } from 'node:crypto';
import { createMiddleware } from 'hono/factory';
import { HttpError } from '../../errors.ts';
import { IDEMPOTENCY_KEY_RE } from '../../intake/emit.ts';
import { isSeedEmit, verifyRequestSignature, verifySignature } from '../../signing.ts';
import type { AppEnv } from '../context.ts';
import { pathAndQueryOf } from '../request-path.ts';

/**
 * Server-to-server authentication for emit, the dry run and the directory API. Verifies the raw
 * bytes before anything parses them; a failure is a bare 401 and the reason goes to the log only.
 *
 * `POST /api/notifications/emit` keeps seed 004's body-only signature (or Standard Webhooks); every
 * other route this guards verifies a signature bound to its timestamp, method, path (as sent, with
 * the query) and body (src/signing.ts), so this middleware is safe on any new route by default.
 *
 * Also derives the idempotency key: Idempotency-Key header, else the Standard Webhooks
 * webhook-id, else the body's hash (emit's body-only x-signature carries no timestamp), so a
 * replayed legacy request is a no-op instead of a second notification.
 */
export const signed = createMiddleware<AppEnv>(async (c, next) => {
  const engine = c.get('engine');
  const requestId = c.get('requestId');
  const raw = Buffer.from(await c.req.arrayBuffer());
  c.set('rawBody', raw);
  const explicitKey = c.req.header('idempotency-key');
  // Checked as sent (before the internal "key:" prefix), so the documented 1-255 holds exactly
  // and an empty header is an error rather than one key shared by every caller that sends it.
  const checkKey = () => {
    if (explicitKey !== undefined && !IDEMPOTENCY_KEY_RE.test(explicitKey)) {
      throw new HttpError(400, 'Idempotency-Key must be 1-255 printable ASCII characters');
    }
  };
  if (engine.settings.signingDisabled) {
    checkKey();
    engine.log.warn({ requestId }, 'REQUEST_SIGNING_DISABLED=1: accepting an unsigned request (development only)');
    c.set('idempotencyKey', explicitKey !== undefined ? `key:${explicitKey}` : undefined);
    return next();
  }
  const common = {
    headers: (name: string) => c.req.header(name),
    body: raw,
    secrets: engine.settings.signingSecrets,
    nowSeconds: Math.floor(Date.now() / 1000),
  };
  // Which route this is comes from the routed path (c.req.path, as the router matched it); what a
  // bound signature covers is the path as sent, query included.
  const result = isSeedEmit(c.req.method, c.req.path)
    ? verifySignature(common)
    : verifyRequestSignature({ ...common, method: c.req.method, path: pathAndQueryOf(c.req.url) });
  if (!result.ok) {
    engine.log.warn({ requestId, path: c.req.path, reason: result.reason }, 'rejected request signature');
    throw new HttpError(401, 'unauthorized');
  }
  checkKey();
  c.set(
    'idempotencyKey',
    explicitKey !== undefined
      ? `key:${explicitKey}`
      : result.scheme === 'standard-webhooks'
        ? `wh:${result.webhookId}`
        : `xsig:${createHash('sha256').update(raw).digest('hex')}`,
  );
  return next();
});
