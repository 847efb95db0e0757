import type { Context, MiddlewareHandler } from 'hono';
import { bodyLimit as streamingBodyLimit } from 'hono/body-limit';

/**
 * Hono's bodyLimit, without its cost on every request. Hono's reads `c.req.raw.body`, and on
 * @hono/node-server touching `body` turns the lightweight request into a full web Request (a
 * ReadableStream over the socket, an AbortController): ~100 µs of CPU and its garbage per request,
 * even for a GET. A request with a Content-Length is checked from the header, and its body is then
 * read directly from the socket (node-server's fast path); a request off the socket with neither
 * Content-Length nor Transfer-Encoding has no body (HTTP/1.1 framing, enforced by Node's parser).
 * A chunked body — or any request not from a socket (app.request) — is counted while it streams,
 * by Hono's.
 */
export function bodyLimit(opts: { maxSize: number; onError: (c: Context) => Response | Promise<Response> }): MiddlewareHandler {
  const streaming = streamingBodyLimit(opts);
  return async (c, next) => {
    const chunked = c.req.header('transfer-encoding') !== undefined;
    const length = c.req.header('content-length');
    const fromSocket = (c.env as { incoming?: unknown } | undefined)?.incoming !== undefined;
    if (chunked || !fromSocket) return streaming(c, next);
    if (length === undefined) return next();
    return Number(length) > opts.maxSize ? opts.onError(c) : next();
  };
}
