import type { Plan } from '../rules/plan.ts';
import type { Queryable } from '../storage/db.ts';
import { insertEventNotifications } from '../storage/queries/notifications.ts';

/**
 * The in-app channel: a row per recipient in `notifications`, written in the transaction that
 * processes the events. The same statement, for any number of events, marks them processed with
 * their row counts, so the inbox rows and the marks commit together (every event passed is marked,
 * including those without in-app rows). Returns the rows inserted per event id.
 */
export function deliverInApp(tx: Queryable, plans: Plan[]): Promise<Map<string, number>> {
  return insertEventNotifications(tx, plans.map((p) => ({ eventId: p.eventId, rows: p.inApp })));
}
