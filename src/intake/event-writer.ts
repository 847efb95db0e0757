import { createGroupCommit, type GroupCommit, type GroupCommitOptions } from '../storage/group-commit.ts';
import type { Db } from '../storage/db.ts';
import { insertWorkflowEvents, type IncomingWorkflowEvent } from '../storage/queries/events.ts';
import { BATCH_JOBS_CHANNEL, JOBS_CHANNEL } from '../storage/queries/jobs.ts';
import { RUN_JOB } from '../storage/queries/runs.ts';
import { EXPAND_EVENT_JOB } from '../expansion/expand-job.ts';

/** Resolves true when the event was stored, false when its idempotency key was already taken. */
export type EventWriter = GroupCommit<IncomingWorkflowEvent, boolean>;

/** The intake queue's bounds (see group-commit.ts), shared by both writers. */
export type WriterBounds = Pick<GroupCommitOptions<unknown, unknown>, 'maxQueued' | 'maxWaitMs' | 'flushTimeoutMs'>;

/**
 * Workflow mode's hot path: concurrent emits are group-committed, many events (with their keys,
 * one expansion job, and the runs of the workflows they start) per statement. Two writers on a
 * Postgres server keep both of its cores busy; PGlite has a single connection, so one.
 */
export function createEventWriter(db: Db, opts: { ttlHours: number; maxBatch: number; bounds?: WriterBounds }): EventWriter {
  return createGroupCommit<IncomingWorkflowEvent, boolean>({
    ...opts.bounds,
    maxBatch: opts.maxBatch,
    writers: db.kind === 'pglite' ? 1 : 2,
    conflictKey: (e) => e.key ?? undefined,
    async flush(events) {
      const stored = await insertWorkflowEvents(db, events, {
        jobKind: EXPAND_EVENT_JOB,
        runJobKind: RUN_JOB.code,
        ttlHours: opts.ttlHours,
      });
      // Expansion jobs go to the batch channel, which lets a busy worker batch them up; the runs'
      // first executions are single jobs, claimed on the other.
      if (stored.size > 0) db.wake(BATCH_JOBS_CHANNEL);
      if (events.some((e) => e.runs?.length && stored.has(e.id))) db.wake(JOBS_CHANNEL);
      return events.map((e) => stored.has(e.id));
    },
  });
}
