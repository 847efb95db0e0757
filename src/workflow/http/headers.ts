/**
 * Headers of the QStash protocol that herald reads from published messages, and the user headers
 * it forwards. A trigger's `Upstash-Forward-X: v` becomes `X: v` on every delivery of the run,
 * minus hop-by-hop headers, which would break the delivery request itself.
 */
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer',
  'transfer-encoding', 'upgrade', 'host', 'content-length', 'accept-encoding', 'expect',
]);
const FORWARD_PREFIX = 'upstash-forward-';

/** Lower-cased headers of a published message (the qstash client sends a plain object). */
export function lowerHeaders(h: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (h && typeof h === 'object') {
    for (const [k, v] of Object.entries(h as Record<string, unknown>)) {
      if (typeof v === 'string') out[k.toLowerCase()] = v;
      else if (Array.isArray(v) && typeof v[0] === 'string') out[k.toLowerCase()] = v.join(', ');
    }
  }
  return out;
}

/** The `Upstash-Forward-*` headers, prefix removed, hop-by-hop ones and CR/LF values dropped. */
export function forwardedHeaders(h: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) {
    if (!k.startsWith(FORWARD_PREFIX)) continue;
    const name = k.slice(FORWARD_PREFIX.length);
    if (!name || HOP_BY_HOP.has(name) || name === 'content-type' || /[\r\n\0]/.test(v)) continue;
    out[name] = v;
  }
  return out;
}

const FAILURE_PREFIX = 'upstash-failure-callback-';

/**
 * Headers for the failure callback, from the trigger's `Upstash-Failure-Callback-*`: QStash turns
 * `…-Forward-X` into `X` and any other `…-Y` into `Upstash-Y` on the callback's delivery.
 */
export function failureCallbackHeaders(h: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) {
    if (!k.startsWith(FAILURE_PREFIX) || /[\r\n\0]/.test(v)) continue;
    const rest = k.slice(FAILURE_PREFIX.length);
    const name = rest.startsWith('forward-') ? rest.slice('forward-'.length) : `upstash-${rest}`;
    if (!name || HOP_BY_HOP.has(name) || name === 'content-type') continue;
    out[name] = v;
  }
  return out;
}
