import { coerceError, LeaseLostError, NonRetriableError, RetryAfterError, ValidationError } from '../errors.ts';
import { uuidv7, isUuid } from '../ids.ts';
import type { JobContext, JobHandler } from '../jobs/worker.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { Db, Queryable } from '../storage/db.ts';
import { getRunLocked, RUN_JOB, runJobKey } from '../storage/queries/runs.ts';
import { finishCodeRun, finishRun } from '../storage/queries/run-end.ts';
import {
  completeDueSleep,
  getRunAndSteps,
  insertSleep,
  recordStep,
  recordStepFailure,
  saveRunStep,
  startRunStep,
  type StepRow,
  type StepType,
} from '../storage/queries/steps.ts';
import { insertWaiter } from '../storage/queries/waiters.ts';
import { lockRunEvent, recordWaitFromEvent, takeRunEvent } from '../storage/queries/run-events.ts';
import { enqueueJob } from '../storage/queries/jobs.ts';
import { durationMs, instantMs } from './duration.ts';
import { broadcastNotify, checkEventId, decodeEventData, encodeNotifyData } from './notify.ts';
import type { CompiledWorkflows } from './compile.ts';
import { createReplayCheck } from './replay-check.ts';
import type { StartedRun } from './start.ts';
import type { NotifyResult, WaitResult, WorkflowStep } from './types.ts';

export interface ExecutorDeps {
  db: Db;
  /** The config's workflows, by name. */
  workflows: CompiledWorkflows;
  /** What `step.send` needs from the layers above (rules, intake); engine.ts builds it. */
  events: StepEvents;
  log: Logger;
  metrics: Metrics;
  /** herald's base URL, for the `url` of code workflows' waiters. */
  baseUrl: string;
}

/**
 * Events sent by `step.send`, checked by the rules and accepted by intake. Injected, because
 * workflow/ sits below both (test/house/layers.test.ts).
 */
export interface StepEvents {
  /** The event's ctx, validated by its rule; throws ValidationError (unknown type, bad field). */
  validate(type: string, ctx: unknown): Record<string, unknown>;
  /** Workflow mode's intake of the event in tx: the event, its expansion job, the runs it starts. */
  accept(tx: Queryable, event: { id: string; type: string; ctx: Record<string, unknown>; tenantId: string | null }): Promise<StartedRun[]>;
}

/** Thrown through the workflow function when the run pauses (sleep, wait); never an error. */
class Suspended extends Error {
  override name = 'Suspended';
}

const DEFAULT_WAIT_TIMEOUT = '7d';

/**
 * The `workflow.run` job: replays a code-first run. The workflow function runs from the top; each
 * step whose result is recorded returns it at once, the first unrecorded one executes. A sleep or
 * a wait records itself, completes this job in the same transaction and suspends: the run then
 * holds no memory and no connection until a job (a due sleep, a notify, a timeout) continues it.
 */
export function workflowRunHandler(deps: ExecutorDeps): JobHandler {
  return {
    run: (payload, ctx) => executeRun(deps, String(payload.runId), ctx),
    // The execution failed for good (non-retriable, or out of attempts): so does the run.
    async onFailed(tx, payload, err) {
      if (await finishRun(tx, String(payload.runId), { state: 'failed', error: err.message })) {
        deps.metrics.runsFinished.inc({ state: 'failed' });
        deps.log.warn({ runId: payload.runId, err: err.message }, 'workflow run failed');
      }
    },
  };
}

async function executeRun(deps: ExecutorDeps, runId: string, job: JobContext): Promise<void> {
  const { run, steps } = await getRunAndSteps(deps.db, runId);
  if (!run || run.state !== 'running') return; // cancelled or finished meanwhile: nothing to do
  const wf = deps.workflows.byName.get(run.workflow);
  if (!wf) throw new NonRetriableError(`workflow "${run.workflow}" is not in the config any more`);

  const recorded = new Map<string, StepRow>(steps.map((s) => [s.step_id, s]));
  const called = new Set<string>();
  /** Whether the code still matches the recorded history (a deploy may have changed it). */
  const history = createReplayCheck(wf.name, steps);
  let suspended = false;
  const runUrl = `${deps.baseUrl}/api/workflows/runs/${runId}`;

  /** Common entry of every step: checks the id, and returns the recorded row if there is one. */
  const enter = (id: string, type: StepType): StepRow | undefined => {
    if (suspended) throw new Suspended();
    if (typeof id !== 'string' || id.length === 0 || id.length > 256) {
      throw new NonRetriableError(`workflow "${wf.name}": step ids must be non-empty strings of at most 256 characters`);
    }
    if (called.has(id)) {
      throw new NonRetriableError(`workflow "${wf.name}": duplicate step id "${id}"; each step needs an id that is unique within the run`);
    }
    called.add(id);
    const row = recorded.get(id);
    if (row && row.type !== type) history.kindChanged(row, type);
    if (row) history.reach(row);
    else if (history.changed) throw history.changed;
    return row;
  };

  /** Records the suspension and completes this job in one transaction, then unwinds the function. */
  const suspend = async (fn: (tx: Queryable) => Promise<void>): Promise<never> => {
    await job.commit(fn, { complete: true });
    suspended = true;
    throw new Suspended();
  };

  const timed = async <T>(type: StepType, fn: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    try {
      const out = await fn();
      deps.metrics.stepDuration.observe({ type, outcome: 'ok' }, (performance.now() - started) / 1000);
      return out;
    } catch (err) {
      if (!(err instanceof Suspended)) deps.metrics.stepDuration.observe({ type, outcome: 'error' }, (performance.now() - started) / 1000);
      throw err;
    }
  };

  const waitResult = (row: StepRow): WaitResult<any> => {
    const out = (row.output ?? {}) as { timeout?: boolean };
    const raw = row.output_bytes ?? Buffer.alloc(0);
    return { eventData: out.timeout ? undefined : decodeEventData(raw), timeout: out.timeout === true, raw, contentType: row.content_type };
  };

  const step: WorkflowStep = {
    async run<T>(id: string, fn: (c: { idempotencyKey: string; attempt: number }) => T | Promise<T>): Promise<T> {
      const row = enter(id, 'run');
      if (row?.state === 'completed') return (row.output_missing ? undefined : row.output) as T;
      if (!row) await history.beforeNew(id, 'run');
      return timed('run', async () => {
        // The execution is counted before the body runs (one round trip, fenced), so one that
        // follows a crash between a body and its result is told it is a retry.
        const { attempt } = await job.fenced((db, fence) => startRunStep(db, fence, runId, id));
        if (attempt === null) {
          // Recorded meanwhile by another execution: replay from the top to read it.
          throw new Error(`step "${id}" was completed by another execution; replaying`);
        }
        let value: T;
        try {
          value = await fn({ idempotencyKey: `${runId}:${id}`, attempt });
        } catch (thrown) {
          const err = coerceError(thrown);
          if (err instanceof Suspended) throw err;
          await job.commit((tx) => recordStepFailure(tx, runId, id, 'run', err.message));
          throw err;
        }
        const json = toJson(value, `step "${id}"`);
        // One statement, fenced by the lease: no BEGIN/COMMIT round trip (the start took that one).
        const { step: saved } = await job.fenced((db, fence) => saveRunStep(db, fence, runId, id, json));
        return (saved!.output_missing ? undefined : saved!.output) as T;
      });
    },

    async sleep(id, duration) {
      const row = enter(id, 'sleep');
      const ms = durationMs(duration, `step.sleep("${id}") duration`);
      if (!row) await history.beforeNew(id, 'sleep');
      await sleepStep(id, row, { delayMs: ms });
    },

    async sleepUntil(id, until) {
      const row = enter(id, 'sleep');
      const untilMs = instantMs(until, `step.sleepUntil("${id}") time`);
      if (!row) await history.beforeNew(id, 'sleep');
      await sleepStep(id, row, { untilMs });
    },

    async waitForEvent(id, eventId, opts) {
      const row = enter(id, 'wait');
      if (row?.state === 'completed') return waitResult(row);
      if (row?.state === 'waiting') return suspend(async () => {});
      checkEventId(eventId, `step.waitForEvent("${id}") event id`);
      const timeout = opts?.timeout ?? DEFAULT_WAIT_TIMEOUT;
      const timeoutMs = durationMs(timeout, `step.waitForEvent("${id}") timeout`);
      if (!row) await history.beforeNew(id, 'wait');
      const timeoutText = typeof timeout === 'number' ? `${timeout}s` : timeout;
      const headers = { 'Upstash-Workflow-RunId': [runId], 'Herald-Workflow-Step': [id] };
      const consumed = await job.commit(
        async (tx) => {
          await lockRunEvent(tx, runId, eventId);
          // Cancelled meanwhile: register nothing (the job completes and the run stays ended).
          if ((await getRunLocked(tx, runId))?.state !== 'running') return undefined;
          const stored = await takeRunEvent(tx, runId, eventId);
          if (stored) {
            return recordWaitFromEvent(tx, {
              runId, stepId: id, eventId, timeout: timeoutText, body: stored.body, contentType: stored.content_type, messageId: stored.message_id,
            });
          }
          await insertWaiter(tx, {
            // No timeoutUrl/timeoutHeaders: a code run continues at the same place whether the
            // wait is notified or times out (a waiter without them times out to its url), and a
            // copy of both would double every waiter's row and its part of a notify's answer.
            runId, stepId: id, eventId, url: runUrl, headers, timeoutMs, timeout: timeoutText,
          });
          return undefined;
        },
        { complete: (saved) => saved === undefined },
      );
      if (consumed) return waitResult(consumed);
      suspended = true;
      throw new Suspended();
    },

    async notify(id, eventId, data) {
      const row = enter(id, 'notify');
      if (row?.state === 'completed') return row.output as NotifyResult[];
      checkEventId(eventId, `step.notify("${id}") event id`);
      if (!row) await history.beforeNew(id, 'notify');
      return timed('notify', async () => {
        const saved = await job.commit(async (tx) => {
          const results = await broadcastNotify(tx, eventId, encodeNotifyData(data));
          return recordStep(tx, { runId, stepId: id, type: 'notify', output: results });
        });
        return saved.output as NotifyResult[];
      });
    },

    async send(id, type, ctx) {
      const row = enter(id, 'send');
      if (row?.state === 'completed') return row.output as { eventId: string };
      let valid: Record<string, unknown>;
      try {
        valid = deps.events.validate(type, ctx);
      } catch (err) {
        if (err instanceof ValidationError) throw new NonRetriableError(`step.send("${id}"): ${err.message}`);
        throw err;
      }
      if (!row) await history.beforeNew(id, 'send');
      return timed('send', async () => {
        const saved = await job.commit(async (tx) => {
          const eventId = uuidv7();
          const tenantId = isUuid(valid.tenantId) ? valid.tenantId.toLowerCase() : null;
          const runs = await deps.events.accept(tx, { id: eventId, type, ctx: valid, tenantId });
          return recordStep(tx, {
            runId, stepId: id, type: 'send',
            output: { eventId, idempotencyKey: `${runId}:${id}`, workflowRuns: runs.map((r) => r.workflowRunId) },
          });
        });
        return saved.output as { eventId: string };
      });
    },
  };

  async function sleepStep(id: string, row: StepRow | undefined, at: { delayMs?: number; untilMs?: number }) {
    if (row?.state === 'completed') return;
    const done = await job.commit(async (tx) => {
      const sleep = row ?? (await insertSleep(tx, { runId, stepId: id, ...at }));
      if (sleep.due) return completeDueSleep(tx, runId, id);
      // Not due: wake the run when it is (the database's time, read back from the row).
      await enqueueJob(tx, { kind: RUN_JOB.code, payload: { runId }, key: runJobKey(runId), maxAttempts: run!.max_attempts, runAtMs: sleep.wake_at!.getTime() });
      return false;
    }, { complete: (completed) => !completed });
    if (done) return;
    suspended = true;
    throw new Suspended();
  }

  try {
    const result = await wf.definition.run(run.input as never, step, {
      id: run.id,
      workflow: run.workflow,
      createdAt: run.created_at,
      eventId: run.event_id,
    });
    if (suspended) return;
    // Also rethrows a mismatch the workflow's code caught and swallowed.
    history.atEnd();
    const json = toJson(result, 'the workflow result');
    // The job's completion and the run's end in one statement and transaction.
    const { ended } = await job.completeWith((db, fence) => finishCodeRun(db, fence, runId, { state: 'completed', result: json }));
    // Not ended: cancelled while this execution ran; it was counted then.
    if (ended) deps.metrics.runsFinished.inc({ state: 'completed' });
  } catch (thrown) {
    if (suspended || thrown instanceof Suspended) return;
    // A mismatch with the history wins over whatever the code made of it (wrapped, or another
    // error thrown while unwinding).
    const err = history.changed ?? coerceError(thrown);
    // A validation problem in the workflow's own calls (bad duration, bad event id) will not fix
    // itself on retry.
    if (err instanceof ValidationError) throw new NonRetriableError(err.message);
    // A lost lease is not this execution's failure: the worker reports it, and whoever holds
    // the job now carries on.
    if (!(err instanceof NonRetriableError) && !(err instanceof RetryAfterError) && !(err instanceof LeaseLostError)) {
      deps.log.warn({ runId, workflow: wf.name, err: err.message }, 'workflow execution failed; will retry');
    }
    throw err;
  }
}

/** Step results are stored as JSON: refuse what JSON cannot carry instead of storing a lie. */
function toJson(value: unknown, what: string): unknown {
  if (value === undefined) return undefined;
  try {
    const text = JSON.stringify(value);
    return text === undefined ? undefined : JSON.parse(text);
  } catch (err) {
    throw new NonRetriableError(`${what} is not JSON-serializable: ${(err as Error).message}`);
  }
}
