import { Hono, type Context } from 'hono';
import { z } from 'zod';
import type { Engine } from '../../engine.ts';
import { HttpError, ValidationError } from '../../errors.ts';
import { isUuid } from '../../ids.ts';
import { asUser } from '../../inbox/as-user.ts';
import { parseJsonObject } from '../../intake/parse-body.ts';
import type { Queryable } from '../../storage/db.ts';
import {
  clearQuietHours,
  deletePreference,
  isKnownTimezone,
  PREFERENCE_CHANNELS,
  preferencesOf,
  quietHoursOf,
  setPreference,
  setQuietHours,
  type PreferenceChannel,
} from '../../storage/queries/preferences.ts';
import type { AppEnv } from '../context.ts';
import { jwtUser } from '../middleware/jwt-user.ts';
import { signed } from '../middleware/signed.ts';
import { textParam } from '../params.ts';

const HHMM = /^([01]\d|2[0-3]):[0-5]\d$/;
const preference = z.object({
  channel: z.enum(PREFERENCE_CHANNELS as [PreferenceChannel, ...PreferenceChannel[]]),
  scope: z.string().min(1).max(200).default('*'),
  enabled: z.boolean(),
});
const quietHours = z.object({
  starts: z.string().regex(HHMM, 'expected HH:MM (24-hour), e.g. 22:00'),
  ends: z.string().regex(HHMM, 'expected HH:MM (24-hour), e.g. 07:00'),
  timezone: z.string().max(64).nullish(),
});
const changes = z.object({
  preferences: z.array(preference).max(200).optional(),
  /** null clears quiet hours; absent leaves them as they are. */
  quietHours: quietHours.nullable().optional(),
});

function parse<T extends z.ZodType>(schema: T, raw: Buffer): z.infer<T> {
  const parsed = schema.safeParse(parseJsonObject(raw));
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path.map(String).join('.') || 'body';
    throw new ValidationError(`${field}: ${issue.message}`, field);
  }
  return parsed.data;
}

/** The scopes a preference can name: '*', an event type, or 'category:<name>' from the config. */
function scopes(engine: Engine): Set<string> {
  const out = new Set(['*']);
  for (const [type, r] of engine.rules.rules) {
    out.add(type);
    if (r.source.category) out.add(`category:${r.source.category}`);
  }
  return out;
}

async function validate(engine: Engine, body: z.infer<typeof changes>) {
  const known = scopes(engine);
  body.preferences?.forEach((p, i) => {
    if (!known.has(p.scope)) throw new ValidationError(`preferences.${i}.scope: "${p.scope}" is not '*', an event type or 'category:<name>' of this config`, `preferences.${i}.scope`);
  });
  const q = body.quietHours;
  if (q) {
    if (q.starts === q.ends) throw new ValidationError('quietHours: starts and ends must differ', 'quietHours');
    if (q.timezone && !(await isKnownTimezone(engine.db, q.timezone))) {
      throw new ValidationError('quietHours.timezone: expected an IANA time zone such as America/Argentina/Buenos_Aires', 'quietHours.timezone');
    }
  }
}

async function apply(tx: Queryable, userId: string, body: z.infer<typeof changes>) {
  for (const p of body.preferences ?? []) await setPreference(tx, userId, p);
  if (body.quietHours === null) await clearQuietHours(tx, userId);
  else if (body.quietHours) await setQuietHours(tx, userId, { ...body.quietHours, timezone: body.quietHours.timezone ?? null });
}

async function read(tx: Queryable, userId: string) {
  const [prefs, quiet] = await Promise.all([preferencesOf(tx, [userId]), quietHoursOf(tx, userId)]);
  return {
    preferences: prefs.map((p) => ({ channel: p.channel, scope: p.scope, enabled: p.enabled, updatedAt: p.updated_at })),
    quietHours: quiet ? { starts: quiet.starts, ends: quiet.ends, timezone: quiet.timezone } : null,
  };
}

const options = (engine: Engine) => ({ channels: PREFERENCE_CHANNELS, scopes: [...scopes(engine)] });

async function removeOne(c: Context<AppEnv>, run: <T>(fn: (tx: Queryable) => Promise<T>) => Promise<T>, userId: string) {
  const channel = c.req.query('channel') ?? '';
  const rawScope = c.req.query('scope');
  const scope = rawScope === undefined ? '*' : (textParam(rawScope, 'scope', 200) ?? '');
  if (!PREFERENCE_CHANNELS.includes(channel as PreferenceChannel)) throw new ValidationError(`channel must be one of ${PREFERENCE_CHANNELS.join(', ')}`, 'channel');
  if (!(await run((tx) => deletePreference(tx, userId, channel, scope)))) throw new HttpError(404, 'no such preference');
  return c.json({ ok: true, deleted: true });
}

/**
 * Notification preferences. End users read and change their own with their JWT, under Row Level
 * Security like the inbox; the app's backend sets anyone's through the signed directory API.
 */
export const preferenceRoutes = new Hono<AppEnv>()
  .get('/api/preferences', jwtUser, async (c) => {
    const engine = c.get('engine');
    const claims = c.get('claims');
    return c.json({ ok: true, ...(await asUser(engine.db, claims, (tx) => read(tx, claims.sub))), ...options(engine) });
  })
  .put('/api/preferences', jwtUser, async (c) => {
    const engine = c.get('engine');
    const claims = c.get('claims');
    const body = parse(changes, Buffer.from(await c.req.arrayBuffer()));
    await validate(engine, body);
    const out = await asUser(engine.db, claims, async (tx) => {
      await apply(tx, claims.sub, body);
      return read(tx, claims.sub);
    });
    return c.json({ ok: true, ...out });
  })
  .delete('/api/preferences', jwtUser, (c) => removeOne(c, (fn) => asUser(c.get('engine').db, c.get('claims'), fn), c.get('claims').sub))
  .get('/api/users/:id/preferences', signed, async (c) => {
    const id = userIdParam(c.req.param('id'));
    return c.json({ ok: true, userId: id, ...(await read(c.get('engine').db, id)), ...options(c.get('engine')) });
  })
  .put('/api/users/:id/preferences', signed, async (c) => {
    const id = userIdParam(c.req.param('id'));
    const body = parse(changes, c.get('rawBody'));
    await validate(c.get('engine'), body);
    const out = await c.get('engine').db.transaction(async (tx) => {
      await apply(tx, id, body);
      return read(tx, id);
    });
    return c.json({ ok: true, userId: id, ...out });
  });

function userIdParam(raw: string): string {
  if (!isUuid(raw)) throw new ValidationError('the user id in the path must be a uuid', 'id');
  return raw.toLowerCase();
}
