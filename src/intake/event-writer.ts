import { createGroupCommit, type GroupCommit } from '../storage/group-commit.ts';
import type { Db } from '../storage/db.ts';
import { insertWorkflowEvents, type IncomingWorkflowEvent } from '../storage/queries/events.ts';
import { BATCH_JOBS_CHANNEL } from '../storage/queries/jobs.ts';
import { EXPAND_EVENT_JOB } from './process-event.ts';

/** Resolves true when the event was stored, false when its idempotency key was already taken. */
export type EventWriter = GroupCommit<IncomingWorkflowEvent, boolean>;

/**
 * Workflow mode's hot path: concurrent emits are group-committed, many events (with their keys and
 * expansion jobs) per statement. Two writers on a Postgres server keep both of its cores busy;
 * PGlite has a single connection, so one.
 */
export function createEventWriter(db: Db, opts: { ttlHours: number; maxBatch: number }): EventWriter {
  return createGroupCommit<IncomingWorkflowEvent, boolean>({
    maxBatch: opts.maxBatch,
    writers: db.kind === 'pglite' ? 1 : 2,
    conflictKey: (e) => e.key ?? undefined,
    async flush(events) {
      const stored = await insertWorkflowEvents(db, events, { jobKind: EXPAND_EVENT_JOB, ttlHours: opts.ttlHours });
      // Only expansion jobs were queued: the batch channel lets a busy worker batch them up.
      if (stored.size > 0) db.wake(BATCH_JOBS_CHANNEL);
      return events.map((e) => stored.has(e.id));
    },
  });
}
