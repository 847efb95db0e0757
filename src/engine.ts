import { deliveryHandler, type Providers } from './channels/deliver.ts';
import { createProviders, unsubscribeLinks } from './channels/registry.ts';
import type { Settings } from './config/settings.ts';
import type { DatabaseUnavailableError } from './errors.ts';
import { DELIVERY_JOB } from './storage/queries/deliveries.ts';
import { EXPAND_EVENT_JOB, expandEventsHandler } from './expansion/expand-job.ts';
import { createDirectWriter } from './intake/direct-writer.ts';
import { createEventWriter } from './intake/event-writer.ts';
import { acceptEvent, dryRun, emit, type EmitOutcome, type IntakeDeps } from './intake/emit.ts';
import type { MaintenanceTask } from './jobs/maintenance.ts';
import { createWorker, type JobHandler, type Worker, type WorkerOptions } from './jobs/worker.ts';
import type { Logger } from './log.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import { createOutboundFetch } from './outbound/guard.ts';
import { ruleFor, validateCtx, type CompiledRules } from './rules/compile.ts';
import type { Db } from './storage/db.ts';
import { pruneKeys } from './storage/queries/idempotency.ts';
import { pruneFlowWindows } from './storage/queries/flow-control.ts';
import { rescueExpiredJobs } from './storage/queries/jobs.ts';
import { RUN_JOB } from './storage/queries/runs.ts';
import { workflowRunHandler } from './workflow/executor.ts';
import { httpDeliveryHandler } from './workflow/http/deliver.ts';
import { FAILURE_CALLBACK_JOB, failureCallbackHandler } from './workflow/http/failure.ts';
import { CALL_JOB, callHandler } from './workflow/http/call.ts';
import { fireDueTimeouts } from './workflow/notify.ts';

/**
 * One herald: storage, compiled rules and settings, with the intake operations bound to them.
 * The HTTP app and the CLI are thin ways into this object.
 */
export interface Engine {
  readonly settings: Readonly<Settings>;
  readonly db: Db;
  readonly rules: CompiledRules;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** herald's own base URL (HERALD_URL, else http://HOST:PORT). */
  readonly baseUrl: string;
  emit(rawBody: Buffer, idempotencyKey?: string, opts?: { abandoned?(): boolean }): Promise<EmitOutcome>;
  /** The emit intake's queue: its size, and whether an emit arriving now would be shed. */
  readonly intake: IntakeLoad;
  dryRun(rawBody: Buffer): ReturnType<typeof dryRun>;
  /** The provider of each delivery channel (SMTP, WhatsApp Cloud API, webhooks, or the dev outbox). */
  readonly providers: Providers;
  /** A job worker bound to this engine's handlers (not started). */
  createWorker(overrides?: Partial<WorkerOptions>): Worker;
}

export interface IntakeLoad {
  /** Emits waiting for their group commit. */
  readonly queued: number;
  /** Emits in group commits in flight. */
  readonly writing: number;
  /** Why an emit arriving now would be shed (OverloadedError, DatabaseUnavailableError), or undefined. */
  refusal(): Error | undefined;
  /** Whether the database is what holds emits up (an outage rather than overload), as the refusal to give. */
  unavailable(): DatabaseUnavailableError | undefined;
}

export function createEngine(deps: { settings: Readonly<Settings>; db: Db; rules: CompiledRules; log: Logger }): Engine {
  const { settings } = deps;
  const bounds = { maxQueued: settings.intakeMaxQueue, maxWaitMs: settings.intakeMaxWaitMs, flushTimeoutMs: settings.intakeFlushTimeoutMs };
  const intake: IntakeDeps = {
    db: deps.db,
    rules: deps.rules,
    workflowMode: settings.workflowMode,
    idempotencyTtlHours: settings.idempotencyTtlHours,
    writer: createEventWriter(deps.db, { ttlHours: settings.idempotencyTtlHours, maxBatch: settings.emitBatchMax, bounds }),
    directWriter: createDirectWriter(deps.db, deps.rules, { maxBatch: settings.emitBatchMax, ttlHours: settings.idempotencyTtlHours, bounds }),
  };
  const activeWriter = settings.workflowMode ? intake.writer : intake.directWriter;
  const metrics = createMetrics(deps.db);
  const outbound = createOutboundFetch(settings.outboundAllowlist);
  const baseUrl = (settings.publicUrl ?? `http://${settings.host.includes(':') ? `[${settings.host}]` : settings.host}:${settings.port}`).replace(/\/+$/, '');
  const categories = new Map([...deps.rules.rules].map(([type, r]) => [type, r.source.category as string | undefined]));
  const providers = createProviders(settings, outbound, unsubscribeLinks(baseUrl, settings.unsubscribeSecret, categories));
  return {
    ...deps,
    metrics,
    baseUrl,
    providers,
    emit: (rawBody, idempotencyKey, opts) => emit(intake, { rawBody, idempotencyKey, abandoned: opts?.abandoned }),
    intake: {
      get queued() {
        return activeWriter.queued;
      },
      get writing() {
        return activeWriter.writing;
      },
      // Why an emit arriving now would be shed (its writer's queue is full, not keeping up, or the
      // database has stopped answering): the HTTP layer asks before it reads the body, so refusing
      // costs next to nothing (storage/group-commit.ts).
      refusal: () => activeWriter.refusal(),
      unavailable: () => activeWriter.unavailable(),
    },
    dryRun: (rawBody) => dryRun(intake, rawBody),
    createWorker: (overrides) =>
      createWorker({
        db: deps.db,
        log: deps.log,
        leaseMs: settings.jobLeaseMs,
        batchSize: settings.jobBatchMax,
        pollMs: settings.jobPollMs,
        maintenanceMs: settings.maintenanceMs,
        maintenance: maintenanceTasks(settings),
        handlers: {
          [EXPAND_EVENT_JOB]: expandEventsHandler(deps.rules),
          [RUN_JOB.code]: codeRunHandler({ db: deps.db, rules: deps.rules, log: deps.log, metrics, baseUrl }),
          [RUN_JOB.http]: httpDeliveryHandler({
            db: deps.db, log: deps.log, metrics, signingKeys: settings.qstashSigningKeys, timeoutMs: settings.deliveryTimeoutMs, fetch: outbound,
            lazyFetchBytes: settings.lazyFetchBytes,
          }),
          [CALL_JOB]: callHandler({
            db: deps.db, log: deps.log, signingKeys: settings.qstashSigningKeys, timeoutMs: settings.deliveryTimeoutMs, fetch: outbound,
          }),
          [DELIVERY_JOB]: deliveryHandler({ rules: deps.rules, providers, log: deps.log, metrics }),
          [FAILURE_CALLBACK_JOB]: failureCallbackHandler({
            db: deps.db, log: deps.log, signingKeys: settings.qstashSigningKeys, timeoutMs: settings.deliveryTimeoutMs, fetch: outbound,
          }),
        },
        ...overrides,
      }),
  };
}

/**
 * The code-first workflow runs' job handler (`workflow.run`), given what `step.send` needs from the
 * rules (checking the ctx, throwing ValidationError) and intake (accepting the event), which
 * workflow/ may not import. bench/lib/herald.ts builds its worker's handler with it too.
 */
export function codeRunHandler(deps: { db: Db; rules: CompiledRules; log: Logger; metrics: Metrics; baseUrl: string }): JobHandler {
  const { rules } = deps;
  return workflowRunHandler({
    db: deps.db,
    workflows: rules.workflows,
    log: deps.log,
    metrics: deps.metrics,
    baseUrl: deps.baseUrl,
    events: {
      validate: (type, ctx) => validateCtx(ruleFor(rules, type), ctx),
      accept: (tx, event) => acceptEvent(tx, rules, event),
    },
  });
}

/** Leader-only periodic work shared by every worker process. */
function maintenanceTasks(settings: Readonly<Settings>): MaintenanceTask[] {
  return [
    { name: 'rescue-expired-leases', everyMs: 0, run: rescueExpiredJobs },
    { name: 'fire-wait-timeouts', everyMs: 0, run: async (tx) => (await fireDueTimeouts(tx)).length },
    { name: 'prune-idempotency-keys', everyMs: 3_600_000, run: (tx) => pruneKeys(tx, settings.idempotencyTtlHours) },
    { name: 'prune-flow-windows', everyMs: 3_600_000, run: pruneFlowWindows },
  ];
}
