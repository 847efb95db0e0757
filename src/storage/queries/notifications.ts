import type { Queryable } from '../db.ts';
import type { InAppNotification } from '../../rules/plan.ts';
import { uuidv7 } from '../../ids.ts';

/**
 * Inserts in-app notifications as the herald_engine role (RLS applies to it too, through its own
 * policy), in one multi-row statement. A row whose dedupe key exists is skipped, so processing an
 * event twice inserts nothing the second time. Returns the number of rows inserted.
 */
export async function insertNotifications(db: Queryable, eventId: string, rows: InAppNotification[]): Promise<number> {
  if (rows.length === 0) return 0;
  // Both are transaction-local; the engine policies require the flag as well as the role.
  await db.query(`SELECT set_config('role', 'herald_engine', true), set_config('herald.actor', 'engine', true)`);
  const { rowCount } = await db.query(
    `INSERT INTO notifications (id, user_id, tenant_id, title, body, type, action_url, data, event_id, dedupe_key)
     SELECT t.id, t.user_id, t.tenant_id, t.title, t.body, t.type, t.action_url, t.data::jsonb, $9, t.dedupe_key
     FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $10::text[])
       AS t(id, user_id, tenant_id, title, body, type, action_url, data, dedupe_key)
     ON CONFLICT (dedupe_key) DO NOTHING`,
    [
      rows.map(() => uuidv7()),
      rows.map((r) => r.userId),
      rows.map((r) => r.tenantId),
      rows.map((r) => r.title),
      rows.map((r) => r.body),
      rows.map((r) => r.type),
      rows.map((r) => r.actionUrl),
      rows.map((r) => JSON.stringify(r.data)),
      eventId,
      rows.map((r) => r.dedupeKey),
    ],
  );
  await db.query(`RESET ROLE`);
  await db.query(`SELECT set_config('herald.actor', '', true)`);
  return rowCount;
}
