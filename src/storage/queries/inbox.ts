import type { Queryable } from '../db.ts';

/**
 * End-user inbox queries. They run only inside `asUser()` (inbox/as-user.ts): role herald_user with
 * the user's claims set for the transaction, so RLS decides what is visible. The explicit
 * `user_id = $1` filters repeat the policy for the planner (leading index column), not for safety.
 */

export interface NotificationRow {
  id: string;
  user_id: string;
  tenant_id: string | null;
  title: string;
  body: string | null;
  type: string;
  action_url: string | null;
  data: Record<string, unknown>;
  read_at: Date | null;
  seen_at: Date | null;
  archived_at: Date | null;
  created_at: Date;
}

const COLUMNS = 'id, user_id, tenant_id, title, body, type, action_url, data, read_at, seen_at, archived_at, created_at';

export interface ListFilter {
  unreadOnly: boolean;
  archived: boolean;
  type: string | null;
  before: { createdAt: string; id: string } | null;
  limit: number;
}

/** Newest first, keyset-paginated on (created_at, id). */
export async function listNotifications(
  db: Queryable,
  userId: string,
  f: ListFilter,
): Promise<(NotificationRow & { cursor_ts: string })[]> {
  const { rows } = await db.query<NotificationRow & { cursor_ts: string }>(
    `SELECT ${COLUMNS},
       to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS cursor_ts
     FROM notifications
     WHERE user_id = $1
       AND ($2::boolean IS FALSE OR read_at IS NULL)
       AND (archived_at IS NOT NULL) = $3::boolean
       AND ($4::text IS NULL OR type = $4)
       AND ($5::timestamptz IS NULL OR (created_at, id) < ($5::timestamptz, $6::uuid))
     ORDER BY created_at DESC, id DESC
     LIMIT $7`,
    [userId, f.unreadOnly, f.archived, f.type, f.before?.createdAt ?? null, f.before?.id ?? null, f.limit],
    { prepare: true },
  );
  return rows;
}

/**
 * The unread badge counts up to this many; above it the badge reads "99+". One more row than the
 * cap is looked at, so 99 is exact and 100 or more is "capped". The count walks the partial
 * unread index, so its cost is bounded by the cap, not the inbox: at 10 M rows a cap of 1,000
 * (~3,000 unread per user) cost 0.55 / 2.6 ms p50 / p99, where 100 rows cost a tenth of the reads.
 */
export const UNREAD_CAP = 99;

/** The badge's statement ($2 = UNREAD_CAP + 1); bench/cases/inbox.ts times this same text in SQL. */
export const COUNT_UNREAD_SQL = `SELECT count(*)::int AS n FROM (
       SELECT 1 FROM notifications WHERE user_id = $1 AND read_at IS NULL AND archived_at IS NULL LIMIT $2
     ) s`;

/** Unread count for the badge: exact up to UNREAD_CAP, else `{count: UNREAD_CAP, capped: true}`. */
export async function countUnread(db: Queryable, userId: string): Promise<{ count: number; capped: boolean }> {
  const { rows } = await db.query<{ n: number }>(COUNT_UNREAD_SQL, [userId, UNREAD_CAP + 1], { prepare: true });
  const n = rows[0]!.n;
  return n > UNREAD_CAP ? { count: UNREAD_CAP, capped: true } : { count: n, capped: false };
}

export async function getNotification(db: Queryable, id: string): Promise<NotificationRow | undefined> {
  return (await db.query<NotificationRow>(`SELECT ${COLUMNS} FROM notifications WHERE id = $1`, [id])).rows[0];
}

export type StateChange = 'read' | 'unread' | 'archive' | 'unarchive';

const SET: Record<StateChange, string> = {
  read: 'read_at = coalesce(read_at, now())',
  unread: 'read_at = NULL',
  archive: 'archived_at = coalesce(archived_at, now())',
  unarchive: 'archived_at = NULL',
};

/** Changes one notification's state; undefined when it is absent or not the caller's (RLS). */
export async function changeState(db: Queryable, id: string, change: StateChange): Promise<NotificationRow | undefined> {
  return (await db.query<NotificationRow>(`UPDATE notifications SET ${SET[change]} WHERE id = $1 RETURNING ${COLUMNS}`, [id]))
    .rows[0];
}

/** Marks every unread, unarchived notification (optionally of one type) read. Returns how many. */
export async function markAllRead(db: Queryable, userId: string, type: string | null): Promise<number> {
  return (
    await db.query(
      `UPDATE notifications SET read_at = now()
       WHERE user_id = $1 AND read_at IS NULL AND archived_at IS NULL AND ($2::text IS NULL OR type = $2)`,
      [userId, type],
    )
  ).rowCount;
}

export async function deleteNotification(db: Queryable, id: string): Promise<boolean> {
  return (await db.query(`DELETE FROM notifications WHERE id = $1`, [id])).rowCount === 1;
}
