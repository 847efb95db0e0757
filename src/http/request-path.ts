/**
 * The path of a request URL as the client sent it, without parsing a URL object (these run on every
 * request, before routing). The server's URL parsing has only resolved dot segments and
 * percent-encoded what must be.
 */

/** The path and query, undecoded (what a bound signature covers). */
export function pathAndQueryOf(url: string): string {
  const start = url.indexOf('/', url.indexOf('://') + 3);
  if (start < 0) return '/';
  const hash = url.indexOf('#', start);
  return url.slice(start, hash < 0 ? undefined : hash);
}

/**
 * The path as the router matches it: without the query, percent-decoded as Hono decodes it, so
 * `/api/notifications/%65mit` is the emit route here as it is there.
 */
export function routedPathOf(url: string): string {
  const full = pathAndQueryOf(url);
  const query = full.indexOf('?');
  const path = query < 0 ? full : full.slice(0, query);
  if (!path.includes('%')) return path;
  try {
    return decodeURI(path);
  } catch {
    return path; // malformed escapes: the router keeps them as they are too
  }
}
