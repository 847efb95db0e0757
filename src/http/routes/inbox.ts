import { Hono } from 'hono';
import { HttpError, ValidationError } from '../../errors.ts';
import { isUuid } from '../../ids.ts';
import { asUserOneStatement } from '../../inbox/as-user.ts';
import {
  changeState,
  countUnread,
  deleteNotification,
  getNotification,
  listNotifications,
  markAllRead,
  type NotificationRow,
  type StateChange,
} from '../../storage/queries/inbox.ts';
import type { AppEnv } from '../context.ts';
import { jwtUser } from '../middleware/jwt-user.ts';
import { cursorParam, textParam } from '../params.ts';

const notFound = () => new HttpError(404, 'notification not found');

/** Cursor: the last row's (created_at with microseconds, id), opaque to clients. */
const encodeCursor = (r: NotificationRow & { cursor_ts?: string }) =>
  Buffer.from(JSON.stringify([r.cursor_ts, r.id])).toString('base64url');

function limitParam(raw: string | undefined): number {
  if (raw === undefined) return 20;
  if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > 100) {
    throw new ValidationError('limit must be a whole number from 1 to 100', 'limit');
  }
  return Number(raw);
}

function boolParam(raw: string | undefined, name: string): boolean {
  if (raw === undefined || raw === 'false' || raw === '0') return false;
  if (raw === 'true' || raw === '1' || raw === '') return true;
  throw new ValidationError(`${name} must be true or false`, name);
}

const present = ({ cursor_ts: _omit, ...row }: NotificationRow & { cursor_ts?: string }) => row;

/** Another user's id must be indistinguishable from a missing one: both are 404. */
function idParam(raw: string): string {
  if (!isUuid(raw)) throw notFound();
  return raw.toLowerCase();
}

/** The end-user inbox. Every query runs as the user under Row Level Security, identity and statement in one round trip (asUserOneStatement). */
export const inboxRoutes = new Hono<AppEnv>()
  .get('/api/notifications', jwtUser, async (c) => {
    const limit = limitParam(c.req.query('limit'));
    const filter = {
      unreadOnly: boolParam(c.req.query('unread'), 'unread'),
      archived: boolParam(c.req.query('archived'), 'archived'),
      type: textParam(c.req.query('type'), 'type') ?? null,
      before: cursorParam(c.req.query('cursor'), isUuid) ?? null,
      limit: limit + 1,
    };
    const rows = await asUserOneStatement(c.get('engine').db, c.get('claims'), (tx) => listNotifications(tx, c.get('claims').sub, filter));
    const page = rows.slice(0, limit);
    const nextCursor = rows.length > limit ? encodeCursor(page.at(-1)!) : null;
    return c.json({ ok: true, items: page.map(present), nextCursor });
  })
  .get('/api/notifications/unread-count', jwtUser, async (c) => {
    const badge = await asUserOneStatement(c.get('engine').db, c.get('claims'), (tx) => countUnread(tx, c.get('claims').sub));
    return c.json({ ok: true, ...badge });
  })
  .post('/api/notifications/read-all', jwtUser, async (c) => {
    const type = textParam(c.req.query('type'), 'type') ?? null;
    const updated = await asUserOneStatement(c.get('engine').db, c.get('claims'), (tx) => markAllRead(tx, c.get('claims').sub, type));
    return c.json({ ok: true, updated });
  })
  .get('/api/notifications/:id', jwtUser, async (c) => {
    const id = idParam(c.req.param('id'));
    const row = await asUserOneStatement(c.get('engine').db, c.get('claims'), (tx) => getNotification(tx, id));
    if (!row) throw notFound();
    return c.json({ ok: true, notification: present(row) });
  })
  .post('/api/notifications/:id/:action{read|unread|archive|unarchive}', jwtUser, async (c) => {
    const id = idParam(c.req.param('id'));
    const change = c.req.param('action') as StateChange;
    const row = await asUserOneStatement(c.get('engine').db, c.get('claims'), (tx) => changeState(tx, id, change));
    if (!row) throw notFound();
    return c.json({ ok: true, notification: present(row) });
  })
  .delete('/api/notifications/:id', jwtUser, async (c) => {
    const id = idParam(c.req.param('id'));
    const deleted = await asUserOneStatement(c.get('engine').db, c.get('claims'), (tx) => deleteNotification(tx, id));
    if (!deleted) throw notFound();
    return c.json({ ok: true, deleted: true });
  });
