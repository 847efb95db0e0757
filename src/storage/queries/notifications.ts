import type { Queryable } from '../db.ts';
import type { InAppNotification } from '../../rules/plan.ts';
import { uuidv7 } from '../../ids.ts';

/** One event's in-app rows (an expansion batch carries many events). */
export interface EventNotifications {
  eventId: string;
  rows: InAppNotification[];
}

/**
 * Inserts in-app notifications as the herald_engine role (RLS applies to it too, through its own
 * policy), in one multi-row statement for any number of events. A row whose dedupe key exists is
 * skipped, so processing an event twice inserts nothing the second time. Returns the number of
 * rows inserted per event id.
 */
export async function insertEventNotifications(db: Queryable, events: EventNotifications[]): Promise<Map<string, number>> {
  const rows = events.flatMap((e) => e.rows.map((r) => ({ ...r, eventId: e.eventId })));
  const counts = new Map(events.map((e) => [e.eventId, 0]));
  if (rows.length === 0) return counts;
  // Both are transaction-local; the engine policies require the flag as well as the role.
  await db.query(`SELECT set_config('role', 'herald_engine', true), set_config('herald.actor', 'engine', true)`, [], {
    prepare: true,
  });
  const { rows: inserted } = await db.query<{ event_id: string }>(
    `INSERT INTO notifications (id, user_id, tenant_id, title, body, type, action_url, data, event_id, dedupe_key)
     SELECT t.id, t.user_id, t.tenant_id, t.title, t.body, t.type, t.action_url, t.data::jsonb, t.event_id, t.dedupe_key
     FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::uuid[], $10::text[])
       AS t(id, user_id, tenant_id, title, body, type, action_url, data, event_id, dedupe_key)
     ON CONFLICT (dedupe_key) DO NOTHING
     RETURNING event_id::text`,
    [
      rows.map(() => uuidv7()),
      rows.map((r) => r.userId),
      rows.map((r) => r.tenantId),
      rows.map((r) => r.title),
      rows.map((r) => r.body),
      rows.map((r) => r.type),
      rows.map((r) => r.actionUrl),
      rows.map((r) => JSON.stringify(r.data)),
      rows.map((r) => r.eventId),
      rows.map((r) => r.dedupeKey),
    ],
    { prepare: true },
  );
  await db.exec(`RESET ROLE; SELECT set_config('herald.actor', '', true)`);
  for (const r of inserted) counts.set(r.event_id, (counts.get(r.event_id) ?? 0) + 1);
  return counts;
}

/** One event's rows (see insertEventNotifications). Returns the number inserted. */
export async function insertNotifications(db: Queryable, eventId: string, rows: InAppNotification[]): Promise<number> {
  return (await insertEventNotifications(db, [{ eventId, rows }])).get(eventId) ?? 0;
}
