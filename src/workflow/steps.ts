import { coerceError, NonRetriableError, ValidationError } from '../errors.ts';
import { uuidv7, isUuid } from '../ids.ts';
import type { JobContext } from '../jobs/worker.ts';
import type { Queryable } from '../storage/db.ts';
import { enqueueJob } from '../storage/queries/jobs.ts';
import { lockRunEvent, recordWaitFromEvent, takeRunEvent } from '../storage/queries/run-events.ts';
import { getRunLocked, RUN_JOB, runJobKey, type RunRow } from '../storage/queries/runs.ts';
import {
  completeDueSleep,
  insertSleep,
  recordStep,
  recordStepFailure,
  saveRunStep,
  startRunStep,
  type StepRow,
  type StepType,
} from '../storage/queries/steps.ts';
import { insertWaiter } from '../storage/queries/waiters.ts';
import { durationMs, instantMs } from './duration.ts';
import type { Metrics } from '../metrics.ts';
import type { StartedRun } from './start.ts';
import { broadcastNotify, checkEventId, decodeEventData, encodeNotifyData } from './notify.ts';
import { Suspended, type RunReplay } from './replay.ts';
import type { NotifyResult, WaitResult, WorkflowStep } from './types.ts';

const DEFAULT_WAIT_TIMEOUT = '7d';

/** What the steps need from outside the run. */
export interface StepDeps {
  /** What `step.send` needs from the layers above (rules, intake); engine.ts builds it. */
  events: StepEvents;
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

/** What every step of one execution works with. */
interface Execution {
  deps: StepDeps;
  run: RunRow;
  job: JobContext;
  replay: RunReplay;
}

/**
 * The `step` a workflow function receives for one execution of its run. Each step returns its
 * recorded result at once if it has one; otherwise it executes and records it, or, for a sleep
 * or a wait, records the pause, completes the job in the same transaction and unwinds.
 */
export function createStep(x: Execution): WorkflowStep {
  const { replay } = x;
  return {
    async run<T>(id: string, fn: (c: { idempotencyKey: string; attempt: number }) => T | Promise<T>): Promise<T> {
      const row = replay.enter(id, 'run');
      if (row?.state === 'completed') return (row.output_missing ? undefined : row.output) as T;
      if (!row) await replay.history.beforeNew(id, 'run');
      return timed(x, 'run', () => runBody(x, id, fn));
    },

    async sleep(id, duration) {
      const row = replay.enter(id, 'sleep');
      const ms = durationMs(duration, `step.sleep("${id}") duration`);
      if (!row) await replay.history.beforeNew(id, 'sleep');
      await sleepStep(x, id, row, { delayMs: ms });
    },

    async sleepUntil(id, until) {
      const row = replay.enter(id, 'sleep');
      const untilMs = instantMs(until, `step.sleepUntil("${id}") time`);
      if (!row) await replay.history.beforeNew(id, 'sleep');
      await sleepStep(x, id, row, { untilMs });
    },

    async waitForEvent(id, eventId, opts) {
      const row = replay.enter(id, 'wait');
      if (row?.state === 'completed') return waitResult(row);
      if (row?.state === 'waiting') {
        await x.job.commit(async () => {}, { complete: true });
        return replay.pause();
      }
      checkEventId(eventId, `step.waitForEvent("${id}") event id`);
      const timeout = opts?.timeout ?? DEFAULT_WAIT_TIMEOUT;
      const timeoutMs = durationMs(timeout, `step.waitForEvent("${id}") timeout`);
      if (!row) await replay.history.beforeNew(id, 'wait');
      const consumed = await waitStep(x, id, eventId, { timeoutMs, timeoutText: typeof timeout === 'number' ? `${timeout}s` : timeout });
      if (consumed) return waitResult(consumed);
      return replay.pause();
    },

    async notify(id, eventId, data) {
      const row = replay.enter(id, 'notify');
      if (row?.state === 'completed') return row.output as NotifyResult[];
      checkEventId(eventId, `step.notify("${id}") event id`);
      if (!row) await replay.history.beforeNew(id, 'notify');
      return timed(x, 'notify', async () => {
        const saved = await x.job.commit(async (tx) => {
          const results = await broadcastNotify(tx, eventId, encodeNotifyData(data));
          return recordStep(tx, { runId: x.run.id, stepId: id, type: 'notify', output: results });
        });
        return saved.output as NotifyResult[];
      });
    },

    async send(id, type, ctx) {
      const row = replay.enter(id, 'send');
      if (row?.state === 'completed') return row.output as { eventId: string };
      let valid: Record<string, unknown>;
      try {
        valid = x.deps.events.validate(type, ctx);
      } catch (err) {
        if (err instanceof ValidationError) throw new NonRetriableError(`step.send("${id}"): ${err.message}`);
        throw err;
      }
      if (!row) await replay.history.beforeNew(id, 'send');
      return timed(x, 'send', () => sendStep(x, id, type, valid));
    },
  };
}

/** Executes a `step.run` body and records its result, each write fenced by the job's lease. */
async function runBody<T>(x: Execution, id: string, fn: (c: { idempotencyKey: string; attempt: number }) => T | Promise<T>): Promise<T> {
  const runId = x.run.id;
  // The execution is counted before the body runs (one round trip, fenced), so one that follows
  // a crash between a body and its result is told it is a retry.
  const { attempt } = await x.job.fenced((db, fence) => startRunStep(db, fence, runId, id));
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
    await x.job.commit((tx) => recordStepFailure(tx, runId, id, 'run', err.message));
    throw err;
  }
  const json = toJson(value, `step "${id}"`);
  // One statement, fenced by the lease: no BEGIN/COMMIT round trip (the start took that one).
  const { step: saved } = await x.job.fenced((db, fence) => saveRunStep(db, fence, runId, id, json));
  return (saved!.output_missing ? undefined : saved!.output) as T;
}

/** A sleep: done if recorded or already due; otherwise recorded with its wake-up job, and the run pauses. */
async function sleepStep(x: Execution, id: string, row: StepRow | undefined, at: { delayMs?: number; untilMs?: number }): Promise<void> {
  if (row?.state === 'completed') return;
  const runId = x.run.id;
  const done = await x.job.commit(async (tx) => {
    const sleep = row ?? (await insertSleep(tx, { runId, stepId: id, ...at }));
    if (sleep.due) return completeDueSleep(tx, runId, id);
    // Not due: wake the run when it is (the database's time, read back from the row).
    await enqueueJob(tx, { kind: RUN_JOB.code, payload: { runId }, key: runJobKey(runId), maxAttempts: x.run.max_attempts, runAtMs: sleep.wake_at!.getTime() });
    return false;
  }, { complete: (completed) => !completed });
  if (!done) x.replay.pause();
}

/**
 * A new wait: takes the event if it was notified before the wait existed (the step is then
 * recorded and returned), otherwise registers the waiter and completes the job with it
 * (undefined: the run pauses).
 */
async function waitStep(x: Execution, id: string, eventId: string, t: { timeoutMs: number; timeoutText: string }): Promise<StepRow | undefined> {
  const runId = x.run.id;
  const headers = { 'Upstash-Workflow-RunId': [runId], 'Herald-Workflow-Step': [id] };
  return x.job.commit(
    async (tx) => {
      await lockRunEvent(tx, runId, eventId);
      // Cancelled meanwhile: register nothing (the job completes and the run stays ended).
      if ((await getRunLocked(tx, runId))?.state !== 'running') return undefined;
      const stored = await takeRunEvent(tx, runId, eventId);
      if (stored) {
        return recordWaitFromEvent(tx, {
          runId, stepId: id, eventId, timeout: t.timeoutText, body: stored.body, contentType: stored.content_type, messageId: stored.message_id,
        });
      }
      await insertWaiter(tx, {
        // No timeoutUrl/timeoutHeaders: a code run continues at the same place whether the wait
        // is notified or times out (a waiter without them times out to its url), and a copy of
        // both would double every waiter's row and its part of a notify's answer.
        runId, stepId: id, eventId, url: `${x.deps.baseUrl}/api/workflows/runs/${runId}`, headers, timeoutMs: t.timeoutMs, timeout: t.timeoutText,
      });
      return undefined;
    },
    { complete: (saved) => saved === undefined },
  );
}

/** `step.send`: the event accepted as an emit would be, and the step recorded, in one transaction. */
async function sendStep(x: Execution, id: string, type: string, ctx: Record<string, unknown>): Promise<{ eventId: string }> {
  const runId = x.run.id;
  const saved = await x.job.commit(async (tx: Queryable) => {
    const eventId = uuidv7();
    const tenantId = isUuid(ctx.tenantId) ? ctx.tenantId.toLowerCase() : null;
    const runs = await x.deps.events.accept(tx, { id: eventId, type, ctx, tenantId });
    return recordStep(tx, {
      runId, stepId: id, type: 'send',
      output: { eventId, idempotencyKey: `${runId}:${id}`, workflowRuns: runs.map((r) => r.workflowRunId) },
    });
  });
  return saved.output as { eventId: string };
}

function waitResult(row: StepRow): WaitResult<any> {
  const out = (row.output ?? {}) as { timeout?: boolean };
  const raw = row.output_bytes ?? Buffer.alloc(0);
  return { eventData: out.timeout ? undefined : decodeEventData(raw), timeout: out.timeout === true, raw, contentType: row.content_type };
}

/** Runs a step's execution and observes its duration (a pause is not an outcome). */
async function timed<T>(x: Execution, type: StepType, fn: () => Promise<T>): Promise<T> {
  const started = performance.now();
  try {
    const out = await fn();
    x.deps.metrics.stepDuration.observe({ type, outcome: 'ok' }, (performance.now() - started) / 1000);
    return out;
  } catch (err) {
    if (!(err instanceof Suspended)) x.deps.metrics.stepDuration.observe({ type, outcome: 'error' }, (performance.now() - started) / 1000);
    throw err;
  }
}

/** Step results are stored as JSON: refuse what JSON cannot carry instead of storing a lie. */
export function toJson(value: unknown, what: string): unknown {
  if (value === undefined) return undefined;
  try {
    const text = JSON.stringify(value);
    return text === undefined ? undefined : JSON.parse(text);
  } catch (err) {
    throw new NonRetriableError(`${what} is not JSON-serializable: ${(err as Error).message}`);
  }
}
