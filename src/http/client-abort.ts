import type { IncomingMessage } from 'node:http';
import type { Context } from 'hono';
import type { AppEnv } from './context.ts';

/**
 * A request whose client went away, or whose framing Node's HTTP parser refused (a malformed
 * chunk, a body shorter than its Content-Length followed by a hang-up): reading the body fails
 * with Node's "aborted" (ECONNRESET) or a parser error. That is the client's doing, not herald's,
 * and anyone can send it unauthenticated: logged at debug without a stack, never as an error line
 * (one fuzz run wrote 202 of them).
 *
 * Both must hold: the error is a connection/stream error, and the request's own socket is gone
 * (when the server says so: @hono/node-server passes the IncomingMessage as `c.env.incoming`). An
 * ECONNRESET from somewhere else — Postgres, an outbound call — while the client is still there
 * stays a logged 5xx.
 */
const ABORT_CODES = new Set(['ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ERR_STREAM_PREMATURE_CLOSE', 'ERR_STREAM_DESTROYED']);

export function isClientAbort(err: Error, c: Context<AppEnv>): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  const shaped = (typeof code === 'string' && (ABORT_CODES.has(code) || code.startsWith('HPE_'))) || err.message === 'aborted';
  if (!shaped) return false;
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
  if (!incoming) return true;
  return incoming.destroyed || incoming.aborted || incoming.socket?.destroyed !== false;
}

/** The debug line for a client abort (no stack: there is no herald code to point at). */
export function logClientAbort(c: Context<AppEnv>, err: Error): void {
  const log = c.get('engine')?.log;
  if (!log?.isLevelEnabled('debug')) return;
  log.debug({ requestId: c.get('requestId'), method: c.req.method, path: c.req.path, reason: err.message, code: (err as NodeJS.ErrnoException).code }, 'client aborted the request');
}
