import { LeaseLostError, NonRetriableError } from '../errors.ts';
import type { JobHandler } from '../jobs/worker.ts';
import type { CompiledRules } from '../rules/compile.ts';
import type { Queryable } from '../storage/db.ts';
import { getEvent, getEvents } from '../storage/queries/events.ts';
import { BATCHED_KIND, enqueueJobs } from '../storage/queries/jobs.ts';
import { expandEvent, expandEvents } from './expand.ts';

/** Workflow mode's expansion job: an accepted event is stored with one, and a worker expands it. */
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
  await expandEvent(tx, rules, { id: event.id, type: event.type, ctx: event.ctx });
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
