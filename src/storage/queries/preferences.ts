import type { Queryable, Statement } from '../db.ts';

export type PreferenceChannel = '*' | 'in_app' | 'email' | 'whatsapp';
export const PREFERENCE_CHANNELS: PreferenceChannel[] = ['*', 'in_app', 'email', 'whatsapp'];

export interface PreferenceRow {
  user_id: string;
  channel: PreferenceChannel;
  scope: string;
  enabled: boolean;
  updated_at: Date;
}

export interface QuietHoursRow {
  user_id: string;
  starts: string;
  ends: string;
  timezone: string | null;
}

export async function preferencesOf(db: Queryable, userIds: string[]): Promise<PreferenceRow[]> {
  if (userIds.length === 0) return [];
  const { text, values, prepare } = preferencesStatement(userIds);
  return (await db.query<PreferenceRow>(text, values, { prepare })).rows;
}

/** The statement of preferencesOf, to send together with another (users.ts). */
export const preferencesStatement = (userIds: string[]): Statement => ({
  text: `SELECT user_id, channel, scope, enabled, updated_at FROM herald_preferences WHERE user_id = ANY($1::uuid[]) ORDER BY user_id, channel, scope`,
  values: [userIds],
  prepare: true,
});

export async function setPreference(db: Queryable, userId: string, p: { channel: PreferenceChannel; scope: string; enabled: boolean }): Promise<void> {
  await db.query(
    `INSERT INTO herald_preferences (user_id, channel, scope, enabled) VALUES ($1, $2, $3, $4)
     ON CONFLICT (user_id, channel, scope) DO UPDATE SET enabled = EXCLUDED.enabled, updated_at = now()`,
    [userId, p.channel, p.scope, p.enabled],
  );
}

export async function deletePreference(db: Queryable, userId: string, channel: string, scope: string): Promise<boolean> {
  return (await db.query(`DELETE FROM herald_preferences WHERE user_id = $1 AND channel = $2 AND scope = $3`, [userId, channel, scope])).rowCount > 0;
}

export async function quietHoursOf(db: Queryable, userId: string): Promise<QuietHoursRow | undefined> {
  const { rows } = await db.query<QuietHoursRow>(
    `SELECT user_id, to_char(starts, 'HH24:MI') AS starts, to_char(ends, 'HH24:MI') AS ends, timezone FROM herald_quiet_hours WHERE user_id = $1`,
    [userId],
  );
  return rows[0];
}

export async function setQuietHours(db: Queryable, userId: string, q: { starts: string; ends: string; timezone: string | null }): Promise<void> {
  await db.query(
    `INSERT INTO herald_quiet_hours (user_id, starts, ends, timezone) VALUES ($1, $2::time, $3::time, $4)
     ON CONFLICT (user_id) DO UPDATE SET starts = EXCLUDED.starts, ends = EXCLUDED.ends, timezone = EXCLUDED.timezone, updated_at = now()`,
    [userId, q.starts, q.ends, q.timezone],
  );
}

export async function clearQuietHours(db: Queryable, userId: string): Promise<boolean> {
  return (await db.query(`DELETE FROM herald_quiet_hours WHERE user_id = $1`, [userId])).rowCount > 0;
}

/** Whether Postgres knows the time zone (the quiet-hours arithmetic below runs in SQL). */
export async function isKnownTimezone(db: Queryable, tz: string): Promise<boolean> {
  const { rows } = await db.query<{ ok: boolean }>(`SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = $1) AS ok`, [tz]);
  return rows[0]!.ok;
}

/**
 * For each user now inside their quiet hours, when the window ends — computed by Postgres on the
 * database clock in the user's zone (quiet-hours time zone, else the directory's, else UTC), DST
 * included. A window may cross midnight (22:00–07:00).
 */
export async function quietHolds(db: Queryable, userIds: string[]): Promise<Map<string, Date>> {
  if (userIds.length === 0) return new Map();
  const { rows } = await db.query<{ user_id: string; held_until: Date | null }>(
    `SELECT q.user_id,
            CASE
              WHEN q.starts < q.ends AND l.t >= q.starts AND l.t < q.ends THEN (l.d + q.ends) AT TIME ZONE l.tz
              WHEN q.starts > q.ends AND l.t >= q.starts THEN (l.d + 1 + q.ends) AT TIME ZONE l.tz
              WHEN q.starts > q.ends AND l.t < q.ends THEN (l.d + q.ends) AT TIME ZONE l.tz
            END AS held_until
     FROM herald_quiet_hours q
     LEFT JOIN herald_users u ON u.id = q.user_id
     CROSS JOIN LATERAL (SELECT coalesce(q.timezone, u.timezone, 'UTC') AS tz) z
     CROSS JOIN LATERAL (SELECT z.tz, (now() AT TIME ZONE z.tz)::date AS d, (now() AT TIME ZONE z.tz)::time AS t) l
     WHERE q.user_id = ANY($1::uuid[])`,
    [userIds],
    { prepare: true },
  );
  return new Map(rows.filter((r) => r.held_until).map((r) => [r.user_id, r.held_until!]));
}
