import type { Queryable, Statement } from '../db.ts';
import { preferencesOf, preferencesStatement, quietHolds, type PreferenceRow } from './preferences.ts';
import { endpointsFor } from './webhook-endpoints.ts';

export interface DirectoryUserInput {
  tenantId: string;
  email?: string | null;
  phone?: string | null;
  locale?: string | null;
  timezone?: string | null;
  name?: string | null;
}

/**
 * A recipient as the rules see it: a directory entry, or a bare id named in the ctx. Defined here
 * (storage reads it) and re-exported by rules/types.ts, the public name.
 */
export interface Recipient {
  id: string;
  tenantId: string | null;
  email: string | null;
  phone: string | null;
  locale: string | null;
  timezone: string | null;
  name: string | null;
  /** false when the id came from the ctx and has no directory entry. */
  inDirectory: boolean;
}

interface UserRow {
  id: string;
  tenant_id: string;
  email: string | null;
  phone: string | null;
  locale: string | null;
  timezone: string | null;
  name: string | null;
  created_at: Date;
  updated_at: Date;
}

const COLUMNS = 'id, tenant_id, email, phone, locale, timezone, name, created_at, updated_at';

/** The largest tenant a single `to.tenant()` selection expands to; beyond it, use topics (later). */
export const MAX_TENANT_FANOUT = 10_000;

export const toRecipient = (r: UserRow): Recipient => ({
  id: r.id,
  tenantId: r.tenant_id,
  email: r.email,
  phone: r.phone,
  locale: r.locale,
  timezone: r.timezone,
  name: r.name,
  inDirectory: true,
});

export const toApiUser = (r: UserRow) => ({
  id: r.id,
  tenantId: r.tenant_id,
  email: r.email,
  phone: r.phone,
  locale: r.locale,
  timezone: r.timezone,
  name: r.name,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

export async function upsertUser(db: Queryable, id: string, u: DirectoryUserInput): Promise<{ row: UserRow; created: boolean }> {
  const { rows } = await db.query<UserRow & { created: boolean }>(
    `INSERT INTO herald_users AS u (id, tenant_id, email, phone, locale, timezone, name)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id, email = EXCLUDED.email,
       phone = EXCLUDED.phone, locale = EXCLUDED.locale, timezone = EXCLUDED.timezone,
       name = EXCLUDED.name, updated_at = now()
     RETURNING ${COLUMNS}, (xmax = 0) AS created`,
    [id, u.tenantId, u.email ?? null, u.phone ?? null, u.locale ?? null, u.timezone ?? null, u.name ?? null],
  );
  const { created, ...row } = rows[0]!;
  return { row, created };
}

export async function getUser(db: Queryable, id: string): Promise<UserRow | undefined> {
  return (await db.query<UserRow>(`SELECT ${COLUMNS} FROM herald_users WHERE id = $1`, [id])).rows[0];
}

export async function deleteUser(db: Queryable, id: string): Promise<boolean> {
  return (await db.query(`DELETE FROM herald_users WHERE id = $1`, [id])).rowCount > 0;
}

export async function findUsers(db: Queryable, ids: string[]): Promise<Recipient[]> {
  if (ids.length === 0) return [];
  const { text, values, prepare } = findUsersStatement(ids);
  return (await db.query<UserRow>(text, values, { prepare })).rows.map(toRecipient);
}

const findUsersStatement = (ids: string[]): Statement => ({
  text: `SELECT ${COLUMNS} FROM herald_users WHERE id = ANY($1::uuid[])`,
  values: [ids],
  prepare: true,
});

/**
 * The users with these ids and their preferences, in one round trip: the rules plan nearly every
 * recipient's channels against its preferences right after finding it (the batch directory).
 */
export async function findUsersWithPreferences(
  db: Queryable,
  ids: string[],
): Promise<{ users: Recipient[]; preferences: PreferenceRow[] }> {
  if (ids.length === 0) return { users: [], preferences: [] };
  const [users, preferences] = await db.pipeline([findUsersStatement(ids), preferencesStatement(ids)]);
  return {
    users: (users!.rows as unknown as UserRow[]).map(toRecipient),
    preferences: preferences!.rows as unknown as PreferenceRow[],
  };
}

export async function tenantMembers(db: Queryable, tenantId: string): Promise<Recipient[]> {
  const { rows } = await db.query<UserRow>(
    `SELECT ${COLUMNS} FROM herald_users WHERE tenant_id = $1 ORDER BY id LIMIT ${MAX_TENANT_FANOUT}`,
    [tenantId],
  );
  return rows.map(toRecipient);
}

/**
 * The recipient directory as the rules see it, read through `db` (a pool or a transaction), with
 * what the channel planner needs: preferences, quiet hours, webhook subscriptions.
 */
export const directoryOn = (db: Queryable) => ({
  findUsers: (ids: string[]) => findUsers(db, ids),
  findUsersWithPreferences: (ids: string[]) => findUsersWithPreferences(db, ids),
  tenantMembers: (tenantId: string) => tenantMembers(db, tenantId),
  preferences: (ids: string[]) => preferencesOf(db, ids),
  quietHolds: (ids: string[]) => quietHolds(db, ids),
  webhookEndpoints: (type: string, tenantId: string | null) => endpointsFor(db, type, tenantId),
});
