import { deliverInApp } from '../channels/in-app.ts';
import type { CompiledRules } from '../rules/compile.ts';
import { ruleFor } from '../rules/compile.ts';
import { coalescingDirectory } from '../rules/coalescing-directory.ts';
import { planEvent, type Plan } from '../rules/plan.ts';
import type { Queryable } from '../storage/db.ts';
import { deliveryJob, insertDeliveries } from '../storage/queries/deliveries.ts';
import { enqueueJobs } from '../storage/queries/jobs.ts';
import { directoryOn } from '../storage/queries/users.ts';

/**
 * An event's expansion: the rules plan it (recipients, preferences, templates) and its effects are
 * written in the caller's transaction — inbox rows, "processed" marks, and email, WhatsApp and
 * webhook deliveries with a send job each. Direct mode expands in the emit's group commit
 * (intake/direct-writer.ts); workflow mode in the `event.expand` job (expand-job.ts).
 */

/** Expands one event. */
export async function expandEvent(
  tx: Queryable,
  rules: CompiledRules,
  event: { id: string; type: string; ctx: Record<string, unknown> },
): Promise<{ plan: Plan; inserted: number; deliveries: number }> {
  const plan = await planEvent(rules, ruleFor(rules, event.type), event.id, event.ctx, directoryOn(tx));
  const { inserted, deliveries } = await commitEffects(tx, rules, [{ event, plan }]);
  return { plan, inserted: inserted.get(event.id) ?? 0, deliveries };
}

/**
 * Plans events together (one coalescing directory: their users and preferences read in one round
 * trip) and writes their effects with a few set-based statements, in the caller's transaction.
 * Any event's failure throws, for the caller to run them one by one. Returns the in-app rows
 * inserted per event id.
 */
export async function expandEvents(
  tx: Queryable,
  rules: CompiledRules,
  events: { id: string; type: string; ctx: Record<string, unknown> }[],
): Promise<Map<string, number>> {
  const compiled = events.map((e) => ruleFor(rules, e.type));
  const directory = coalescingDirectory(directoryOn(tx));
  // allSettled: no plan may still be using the transaction when a failure rolls it back.
  const settled = await Promise.allSettled(events.map((e, i) => planEvent(rules, compiled[i]!, e.id, e.ctx, directory)));
  const failed = settled.find((s) => s.status === 'rejected');
  if (failed) throw failed.reason;
  const plans = settled.map((s) => (s as PromiseFulfilledResult<Plan>).value);
  return (await commitEffects(tx, rules, plans.map((plan, i) => ({ event: events[i]!, plan })))).inserted;
}

/**
 * Writes the planned effects of one or more events in the caller's transaction: their inbox rows
 * and "processed" marks (one statement), and their email, WhatsApp and webhook deliveries with a
 * send job each.
 */
async function commitEffects(
  tx: Queryable,
  rules: CompiledRules,
  planned: { event: { id: string; type: string }; plan: Plan }[],
): Promise<{ inserted: Map<string, number>; deliveries: number }> {
  const inserted = await deliverInApp(tx, planned.map((p) => p.plan));
  const created = [];
  for (const { event, plan } of planned) {
    created.push(...(await insertDeliveries(tx, event, plan.deliveries, rules.delivery.maxAttempts)));
  }
  await enqueueJobs(tx, created.map(deliveryJob));
  return { inserted, deliveries: created.length };
}
