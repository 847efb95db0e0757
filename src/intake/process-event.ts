import { deliverInApp } from '../channels/in-app.ts';
import { LeaseLostError, NonRetriableError } from '../errors.ts';
import type { JobHandler } from '../jobs/worker.ts';
import type { CompiledRules } from '../rules/compile.ts';
import { planEvent, type Plan } from '../rules/plan.ts';
import type { Queryable } from '../storage/db.ts';
import { deliveryJob, insertDeliveries } from '../storage/queries/deliveries.ts';
import { getEvent, getEvents } from '../storage/queries/events.ts';
import { BATCHED_KIND, enqueueJobs } from '../storage/queries/jobs.ts';
import { directoryOn } from '../storage/queries/users.ts';
import { ruleFor } from '../rules/compile.ts';
import { coalescingDirectory } from '../rules/coalescing-directory.ts';

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
  const { inserted, deliveries } = await commitEffects(tx, rules, [{ event, plan }]);
  return { plan, inserted: inserted.get(event.id) ?? 0, deliveries };
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

export const EXPAND_EVENT_JOB = BATCHED_KIND;

/**
 * The events an `event.expand` job covers: `{eventId}` (one event: direct retries, step.send,
 * split jobs) or `{eventIds}` (every event of one group commit).
 */
export function eventIdsOf(payload: Record<string, unknown>): string[] {
  const ids = Array.isArray(payload.eventIds) ? payload.eventIds : [payload.eventId];
  if (ids.length === 0 || !ids.every((id): id is string => typeof id === 'string')) {
    throw new NonRetriableError('event.expand job without event ids');
  }
  return ids;
}

/**
 * The `event.expand` job handler. A job of one group commit expands all its events in one
 * transaction; if that fails, the job is split into one job per event (in the transaction that
 * completes it), so a bad event fails alone with its own error and its neighbours go on.
 */
export function expandEventsHandler(rules: CompiledRules): JobHandler {
  return {
    async run(payload, ctx) {
      const ids = eventIdsOf(payload);
      if (ids.length === 1) {
        return ctx.commit((tx) => expandStoredEvent(tx, rules, { eventId: ids[0] }), { complete: true });
      }
      try {
        await ctx.commit((tx) => expandStoredEvents(tx, rules, [payload]), { complete: true });
      } catch (err) {
        if (err instanceof LeaseLostError) throw err;
        await ctx.commit(
          (tx) => enqueueJobs(tx, ids.map((eventId) => ({ kind: EXPAND_EVENT_JOB, payload: { eventId } }))),
          { complete: true },
        );
      }
    },
    batch: (tx, payloads) => expandStoredEvents(tx, rules, payloads),
  };
}

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

/**
 * Many `event.expand` jobs in one transaction (the worker's batch path): the events are read in
 * one query, planned together against a coalescing directory, and their inbox rows, deliveries and
 * "processed" marks written with a few set-based statements. Anything unusual (a missing event, an
 * unknown type) throws, and the worker then runs the batch's jobs one by one, where each gets its
 * own error, retry and failure record.
 */
export async function expandStoredEvents(tx: Queryable, rules: CompiledRules, payloads: Record<string, unknown>[]): Promise<void> {
  const ids = payloads.flatMap(eventIdsOf);
  const found = await getEvents(tx, ids);
  if (found.length !== new Set(ids).size) throw new NonRetriableError('an event of this batch no longer exists');
  const events = found.filter((e) => !e.processed_at);
  if (events.length === 0) return;
  await expandEvents(tx, rules, events);
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
