import { deliverInApp } from '../channels/in-app.ts';
import { NonRetriableError } from '../errors.ts';
import type { CompiledRules } from '../rules/compile.ts';
import { planEvent, type Plan } from '../rules/plan.ts';
import type { Queryable } from '../storage/db.ts';
import { deliveryJob, insertDeliveries } from '../storage/queries/deliveries.ts';
import { getEvent, markEventProcessed } from '../storage/queries/events.ts';
import { enqueueJobs } from '../storage/queries/jobs.ts';
import { directoryOn } from '../storage/queries/users.ts';
import { ruleFor } from '../rules/compile.ts';

/**
 * Expands an event into its effects and delivers them, inside the caller's transaction. Direct
 * mode calls it in the emit request; workflow mode calls it from the `event.expand` job.
 */
export async function processEvent(
  tx: Queryable,
  rules: CompiledRules,
  event: { id: string; type: string; ctx: Record<string, unknown> },
): Promise<{ plan: Plan; inserted: number; deliveries: number }> {
  const plan = await planEvent(rules, ruleFor(rules, event.type), event.id, event.ctx, directoryOn(tx));
  const inserted = await deliverInApp(tx, plan);
  // Email, WhatsApp and webhook deliveries commit with the inbox rows; their sends are jobs.
  const created = await insertDeliveries(tx, event, plan.deliveries, rules.delivery.maxAttempts);
  await enqueueJobs(tx, created.map(deliveryJob));
  await markEventProcessed(tx, event.id, inserted);
  return { plan, inserted, deliveries: created.length };
}

export const EXPAND_EVENT_JOB = 'event.expand';

/** The `event.expand` job: expand a stored event (once; a re-run after a crash inserts nothing new). */
export async function expandStoredEvent(tx: Queryable, rules: CompiledRules, payload: Record<string, unknown>) {
  const eventId = payload.eventId;
  if (typeof eventId !== 'string') throw new NonRetriableError('event.expand job without an eventId');
  const event = await getEvent(tx, eventId);
  if (!event) throw new NonRetriableError(`event ${eventId} no longer exists`);
  if (event.processed_at) return;
  if (!rules.rules.has(event.type)) {
    throw new NonRetriableError(`no rule for event type "${event.type}" (was it removed from the config?)`);
  }
  await processEvent(tx, rules, { id: event.id, type: event.type, ctx: event.ctx });
}
