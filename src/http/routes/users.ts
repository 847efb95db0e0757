import { Hono } from 'hono';
import { z } from 'zod';
import { HttpError, ValidationError } from '../../errors.ts';
import { isUuid } from '../../ids.ts';
import { parseJsonObject } from '../../intake/parse-body.ts';
import { deleteUser, getUser, toApiUser, upsertUser } from '../../storage/queries/users.ts';
import type { AppEnv } from '../context.ts';
import { signed } from '../middleware/signed.ts';

const validTimezone = (tz: string) => {
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
};

const optional = <T extends z.ZodType>(t: T) => t.nullish();
const userBody = z.object({
  tenantId: z.string().uuid(),
  email: optional(z.string().email().max(320)),
  phone: optional(z.string().regex(/^\+?[0-9 ()-]{5,24}$/, 'expected a phone number such as +5491155551234')),
  locale: optional(z.string().regex(/^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$/, 'expected a BCP 47 tag such as es or es-AR')),
  timezone: optional(z.string().max(64).refine(validTimezone, 'expected an IANA time zone such as America/Argentina/Buenos_Aires')),
  name: optional(z.string().max(200)),
});

function userId(raw: string): string {
  if (!isUuid(raw)) throw new ValidationError('the user id in the path must be a uuid', 'id');
  return raw.toLowerCase();
}

/** The recipient directory, kept in sync by the app's backend (signed like emit). */
export const userRoutes = new Hono<AppEnv>()
  .put('/api/users/:id', signed, async (c) => {
    const id = userId(c.req.param('id'));
    const parsed = userBody.safeParse(parseJsonObject(c.get('rawBody')));
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      const field = issue.path.map(String).join('.') || 'body';
      throw new ValidationError(`${field}: ${issue.message}`, field);
    }
    const { row, created } = await upsertUser(c.get('engine').db, id, parsed.data);
    return c.json({ ok: true, user: toApiUser(row) }, created ? 201 : 200);
  })
  .get('/api/users/:id', signed, async (c) => {
    const row = await getUser(c.get('engine').db, userId(c.req.param('id')));
    if (!row) throw new HttpError(404, 'user not found');
    return c.json({ ok: true, user: toApiUser(row) });
  })
  .delete('/api/users/:id', signed, async (c) => {
    if (!(await deleteUser(c.get('engine').db, userId(c.req.param('id'))))) throw new HttpError(404, 'user not found');
    return c.json({ ok: true, deleted: true });
  });
