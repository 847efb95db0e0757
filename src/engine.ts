import type { Settings } from './config/settings.ts';
import { EXPAND_EVENT_JOB, expandStoredEvent } from './intake/process-event.ts';
import { dryRun, emit, type EmitOutcome, type IntakeDeps } from './intake/emit.ts';
import type { MaintenanceTask } from './jobs/maintenance.ts';
import { createWorker, transactional, type Worker, type WorkerOptions } from './jobs/worker.ts';
import { pruneKeys } from './storage/queries/idempotency.ts';
import { rescueExpiredJobs } from './storage/queries/jobs.ts';
import type { Logger } from './log.ts';
import type { CompiledRules } from './rules/compile.ts';
import type { Db } from './storage/db.ts';

/**
 * One herald: storage, compiled rules and settings, with the intake operations bound to them.
 * The HTTP app and the CLI are thin ways into this object.
 */
export interface Engine {
  readonly settings: Readonly<Settings>;
  readonly db: Db;
  readonly rules: CompiledRules;
  readonly log: Logger;
  emit(rawBody: Buffer, idempotencyKey?: string): Promise<EmitOutcome>;
  dryRun(rawBody: Buffer): ReturnType<typeof dryRun>;
  /** A job worker bound to this engine's handlers (not started). */
  createWorker(overrides?: Partial<WorkerOptions>): Worker;
}

export function createEngine(deps: { settings: Readonly<Settings>; db: Db; rules: CompiledRules; log: Logger }): Engine {
  const intake: IntakeDeps = {
    db: deps.db,
    rules: deps.rules,
    workflowMode: deps.settings.workflowMode,
    idempotencyTtlHours: deps.settings.idempotencyTtlHours,
  };
  return {
    ...deps,
    emit: (rawBody, idempotencyKey) => emit(intake, { rawBody, idempotencyKey }),
    dryRun: (rawBody) => dryRun(intake, rawBody),
    createWorker: (overrides) =>
      createWorker({
        db: deps.db,
        log: deps.log,
        leaseMs: deps.settings.jobLeaseMs,
        pollMs: deps.settings.jobPollMs,
        maintenanceMs: deps.settings.maintenanceMs,
        maintenance: maintenanceTasks(deps.settings),
        handlers: {
          [EXPAND_EVENT_JOB]: transactional((tx, payload) => expandStoredEvent(tx, deps.rules, payload)),
        },
        ...overrides,
      }),
  };
}

/** Leader-only periodic work shared by every worker process. */
function maintenanceTasks(settings: Readonly<Settings>): MaintenanceTask[] {
  return [
    { name: 'rescue-expired-leases', everyMs: 0, run: rescueExpiredJobs },
    { name: 'prune-idempotency-keys', everyMs: 3_600_000, run: (tx) => pruneKeys(tx, settings.idempotencyTtlHours) },
  ];
}
