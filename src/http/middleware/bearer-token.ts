import { createHash, timingSafeEqual } from 'node:crypto';
import { createMiddleware } from 'hono/factory';
import type { Settings } from '../../config/settings.ts';
import { HttpError } from '../../errors.ts';
import type { AppEnv } from '../context.ts';

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/** Constant-time token comparison (hashing first makes the lengths equal). */
export function tokenMatches(given: string, expected: string): boolean {
  return timingSafeEqual(digest(given), digest(expected));
}

/**
 * The token of an `Authorization: Bearer <token>` header, or undefined. The auth-scheme is
 * case-insensitive (RFC 7235 §2.1: `bearer` and `BEARER` are Bearer) and one or more spaces follow
 * it; every bearer-token API (the inbox's JWT, the admin API, /v2) reads its header through this.
 */
export const bearerCredentials = (header: string): string | undefined => /^Bearer\s+(\S+)$/i.exec(header.trim())?.[1];

/**
 * A shared-secret bearer token from the settings: `Authorization: Bearer <token>`, or (when
 * `query` names it) a query parameter, as QStash's `?qstash_token=`. A failure is a bare 401;
 * the log says why, never with the token. An unset token closes the API (401 for everyone).
 */
export function bearerToken(opts: { token: (s: Readonly<Settings>) => string | undefined; env: string; query?: string }) {
  return createMiddleware<AppEnv>(async (c, next) => {
    const engine = c.get('engine');
    const requestId = c.get('requestId');
    const expected = opts.token(engine.settings);
    const header = c.req.header('authorization');
    const given = header !== undefined ? bearerCredentials(header) : opts.query ? c.req.query(opts.query) : undefined;
    let reason: string | undefined;
    if (!expected) reason = `${opts.env} is not set, so this API is closed`;
    else if (given === undefined || given === '') reason = header !== undefined ? 'malformed Authorization header' : 'no token';
    else if (!tokenMatches(given, expected)) reason = 'wrong token';
    if (reason) {
      engine.log.warn({ requestId, path: c.req.path, reason }, 'rejected API token');
      throw new HttpError(401, 'unauthorized', { 'WWW-Authenticate': 'Bearer' });
    }
    await next();
  });
}
