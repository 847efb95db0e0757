import { createMiddleware } from 'hono/factory';
import { HttpError } from '../../errors.ts';
import { isUuid } from '../../ids.ts';
import type { UserClaims } from '../../inbox/as-user.ts';
import type { AppEnv } from '../context.ts';
import { bearerCredentials } from './bearer-token.ts';
import { verifyHs256 } from './hs256.ts';

const unauthorized = () => new HttpError(401, 'unauthorized', { 'WWW-Authenticate': 'Bearer' });

/** End-user authentication: an HS256 JWT signed with JWT_SECRET whose `sub` is the user's uuid. */
export const jwtUser = createMiddleware<AppEnv>(async (c, next) => {
  const engine = c.get('engine');
  const requestId = c.get('requestId');
  const secret = engine.settings.jwtSecret;
  if (!secret) throw new HttpError(503, 'the inbox API is disabled: set JWT_SECRET');
  const token = bearerCredentials(c.req.header('authorization') ?? '');
  if (token === undefined || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token)) {
    engine.log.info({ requestId }, 'missing or malformed bearer token');
    throw unauthorized();
  }
  let payload: Record<string, unknown>;
  try {
    payload = verifyHs256(token, secret);
  } catch (err) {
    engine.log.info({ requestId, reason: (err as Error).message }, 'rejected bearer token');
    throw unauthorized();
  }
  if (!isUuid(payload.sub)) {
    engine.log.info({ requestId }, 'bearer token sub is not a uuid');
    throw unauthorized();
  }
  c.set('claims', { ...payload, sub: payload.sub.toLowerCase() } as UserClaims);
  return next();
});
