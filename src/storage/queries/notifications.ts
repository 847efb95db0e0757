import type { Queryable } from '../db.ts';
import { uuidv7 } from '../../ids.ts';

/** One in-app notification row to insert, as the rules plan it (rules/plan.ts re-exports it). */
export interface InAppNotification {
  userId: string;
  tenantId: string | null;
  title: string;
  body: string | null;
  type: string;
  actionUrl: string | null;
  data: Record<string, unknown>;
  /** `${eventId}:in_app:${userId}`: re-processing the same event inserts nothing new. */
  dedupeKey: string;
}

/** One event's in-app rows (an expansion batch carries many events). */
export interface EventNotifications {
  eventId: string;
  rows: InAppNotification[];
}

/**
 * Inserts the events' in-app notifications and marks the events processed, each with the number
 * of rows it inserted, in one statement for any number of events (the round trip of an expansion
 * batch's effects). It runs as the herald_engine role: RLS applies to the engine too, through its
 * own policy. A row whose dedupe key exists is skipped, so processing an event twice inserts
 * nothing the second time. Returns the number of rows inserted per event id.
 */
export async function insertEventNotifications(db: Queryable, events: EventNotifications[]): Promise<Map<string, number>> {
  const rows = events.flatMap((e) => e.rows.map((r) => ({ ...r, eventId: e.eventId })));
  const counts = new Map(events.map((e) => [e.eventId, 0]));
  if (events.length === 0) return counts;
  // The role switch, the statement and the switch back travel together (one round trip). Events
  // without rows are marked by the same statement: its insert then inserts nothing.
  // The settings are transaction-local; the engine policies require the flag as well as the role.
  const results = await db.pipeline([
    { text: `SELECT set_config('role', 'herald_engine', true), set_config('herald.actor', 'engine', true)`, values: [], prepare: true },
    {
      // The rows travel as one JSON document: JSON.stringify is native, where ten parallel text
      // arrays were escaped element by element in JS (pg's arrayString was ~12 µs per row).
      text: `WITH new_rows AS (
       INSERT INTO notifications (id, user_id, tenant_id, title, body, type, action_url, data, event_id, dedupe_key)
       SELECT t.id, t.user_id, t.tenant_id, t.title, t.body, t.type, t.action_url, t.data, t.event_id, t.dedupe_key
       FROM json_to_recordset($1::json) AS t(id uuid, user_id uuid, tenant_id uuid, title text, body text, type text,
         action_url text, data jsonb, event_id uuid, dedupe_key text)
       ON CONFLICT (dedupe_key) DO NOTHING
       RETURNING event_id
     ), per_event AS (
       SELECT event_id, count(*)::int AS n FROM new_rows GROUP BY event_id
     ), marked AS (
       -- Runs although nothing reads it (a data-modifying WITH always runs to completion).
       UPDATE herald_events e SET processed_at = now(), inserted = coalesce(p.n, 0)
       FROM unnest($2::uuid[]) AS t(id) LEFT JOIN per_event p ON p.event_id = t.id
       WHERE e.id = t.id
     )
     SELECT event_id::text, n FROM per_event`,
      values: [
        JSON.stringify(
          rows.map((r) => ({
            id: uuidv7(),
            user_id: r.userId,
            tenant_id: r.tenantId,
            title: r.title,
            body: r.body,
            type: r.type,
            action_url: r.actionUrl,
            data: r.data,
            event_id: r.eventId,
            dedupe_key: r.dedupeKey,
          })),
        ),
        [...counts.keys()],
      ],
      prepare: true,
    },
    { text: `RESET ROLE`, values: [], prepare: true },
    { text: `SELECT set_config('herald.actor', '', true)`, values: [], prepare: true },
  ]);
  for (const r of results[1]!.rows as { event_id: string; n: number }[]) counts.set(r.event_id, r.n);
  return counts;
}

/** One event's rows (see insertEventNotifications). Returns the number inserted. */
export async function insertNotifications(db: Queryable, eventId: string, rows: InAppNotification[]): Promise<number> {
  return (await insertEventNotifications(db, [{ eventId, rows }])).get(eventId) ?? 0;
}
