import type { Plan } from '../rules/plan.ts';
import type { Queryable } from '../storage/db.ts';
import { insertEventNotifications } from '../storage/queries/notifications.ts';

/**
 * The in-app channel: a row per recipient in `notifications`, written in the transaction that
 * processes the events (one statement for any number of them), so the inbox rows and the events'
 * "processed" marks commit together. Returns the rows inserted per event id.
 */
export function deliverInApp(tx: Queryable, plans: Plan[]): Promise<Map<string, number>> {
  return insertEventNotifications(tx, plans.map((p) => ({ eventId: p.eventId, rows: p.inApp })));
}
