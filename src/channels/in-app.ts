import type { Plan } from '../rules/plan.ts';
import type { Queryable } from '../storage/db.ts';
import { insertNotifications } from '../storage/queries/notifications.ts';

/**
 * The in-app channel: a row per recipient in `notifications`, written in the transaction that
 * processes the event, so the inbox row and the event's "processed" mark commit together.
 */
export function deliverInApp(tx: Queryable, plan: Plan): Promise<number> {
  return insertNotifications(tx, plan.eventId, plan.inApp);
}
