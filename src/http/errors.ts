import type { Context } from 'hono';
import { HttpError, OverloadedError, ValidationError } from '../errors.ts';
import { TemplateError } from '../rules/templates.ts';
import { isClientAbort, logClientAbort } from './client-abort.ts';
import type { AppEnv } from './context.ts';
import { databaseUnavailable, refusalResponse } from './unavailable.ts';

/**
 * Error bodies: herald's own API answers `{ok:false, error}`; the QStash-compatible API under /v2
 * answers `{error}`, the shape Upstash clients parse.
 */
export function errorBody(c: Context, error: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return c.req.path.startsWith('/v2/') ? { error } : { ok: false, error, ...extra };
}

/** The one place errors become responses. 5xx bodies never carry internals; the log does. */
export function errorResponse(err: Error, c: Context<AppEnv>): Response {
  if (err instanceof HttpError) {
    for (const [k, v] of Object.entries(err.headers)) c.header(k, v);
    return c.json(errorBody(c, err.message), err.status);
  }
  if (err instanceof ValidationError) return c.json(errorBody(c, err.message, { field: err.field }), 400);
  if (err instanceof TemplateError) {
    // A template failed on this event's data (e.g. the render limit): the event is the cause.
    c.get('engine')?.log.warn({ requestId: c.get('requestId'), err: err.message }, 'template render failed');
    return c.json({ ok: false, error: 'a notification template could not be rendered with this ctx' }, 400);
  }
  // An outage or an overload is not a bug: 503 / 429 with Retry-After, a rate-limited warning.
  const unavailable = databaseUnavailable(err);
  if (unavailable) return refusalResponse(c, unavailable);
  if (err instanceof OverloadedError) return refusalResponse(c, err);
  if (isClientAbort(err, c)) {
    logClientAbort(c, err);
    return c.json(errorBody(c, 'the request body was not received completely'), 400);
  }
  const log = c.get('engine')?.log;
  log?.error({ requestId: c.get('requestId'), err: err.message, stack: err.stack, kind: err.name }, 'request failed');
  return c.json(errorBody(c, 'internal error', { requestId: c.get('requestId') }), 500);
}
