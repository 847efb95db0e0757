import type { Context } from 'hono';
import { HttpError, ValidationError } from '../errors.ts';
import { ConfigError } from '../rules/compile.ts';
import { TemplateError } from '../rules/templates.ts';
import type { AppEnv } from './context.ts';

/** The one place errors become responses. 5xx bodies never carry internals; the log does. */
export function errorResponse(err: Error, c: Context<AppEnv>): Response {
  if (err instanceof HttpError) {
    for (const [k, v] of Object.entries(err.headers)) c.header(k, v);
    return c.json({ ok: false, error: err.message }, err.status);
  }
  if (err instanceof ValidationError) return c.json({ ok: false, error: err.message, field: err.field }, 400);
  if (err instanceof TemplateError) {
    // A template failed on this event's data (e.g. the render limit): the event is the cause.
    c.var.engine?.log.warn({ requestId: c.var.requestId, err: err.message }, 'template render failed');
    return c.json({ ok: false, error: 'a notification template could not be rendered with this ctx' }, 400);
  }
  const log = c.var.engine?.log;
  log?.error({ requestId: c.var.requestId, err: err.message, stack: err.stack, kind: err.name }, 'request failed');
  if (err instanceof ConfigError) return c.json({ ok: false, error: 'internal error', requestId: c.var.requestId }, 500);
  return c.json({ ok: false, error: 'internal error', requestId: c.var.requestId }, 500);
}
