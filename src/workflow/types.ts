import type { z } from 'zod';

/**
 * A duration: a number of seconds (as Upstash Workflow), or a string such as "500ms", "30s",
 * "5m", "2h", "7d" (units may be combined: "1h30m").
 */
export type Duration = number | string;

/** What a `step.run` callback receives. */
export interface StepRunContext {
  /**
   * `<runId>:<stepId>`: stable across retries and replays. Pass it to the side effect (an
   * Idempotency-Key header, a unique column) so a retried step cannot do it twice.
   */
  idempotencyKey: string;
  /**
   * 1 on the first execution of this step, 2 on the next, …: every execution that started counts,
   * one after a failure and one after a crash or a lost lease between the body and the recording
   * of its result alike (the start is recorded before the body runs). More than 1: an earlier try
   * may have done the side effect already.
   */
  attempt: number;
}

/** The outcome of `step.waitForEvent`. */
export interface WaitResult<T = unknown> {
  /** The notify body: parsed JSON when it is JSON, else text when it is UTF-8, else the bytes. */
  eventData: T;
  /** true when the wait timed out (eventData is then undefined). */
  timeout: boolean;
  /** The notify body exactly as sent (empty on timeout). */
  raw: Buffer;
  /** The notify request's Content-Type, if it had one. */
  contentType: string | null;
}

/** One waiter reached by a notify (the seed's NotifyResponse). */
export interface NotifyResult {
  waiter: WaiterView;
  messageId: string;
  deduplicated: boolean;
  error: string;
  workflowRunId: string;
  workflowCreatedAt: number;
}

/** The seed's Waiter. */
export interface WaiterView {
  url: string;
  headers: Record<string, string[]>;
  /** Unix seconds. */
  deadline: number;
  timeoutUrl?: string;
  /** base64 */
  timeoutBody?: string;
  timeoutHeaders?: Record<string, string[]>;
}

/**
 * The steps a workflow function calls. Each takes an id, unique within the run: the id is how
 * a step's recorded result is found again when the function is replayed after a sleep, a wait, a
 * retry or a crash. Code outside steps runs again on every replay; keep side effects in steps.
 */
export interface WorkflowStep {
  /** Runs `fn` once; its (JSON) result is recorded and returned as is on every later replay. */
  run<T>(id: string, fn: (ctx: StepRunContext) => T | Promise<T>): Promise<T>;
  /** Pauses the run for `duration` (measured on the database clock). Holds no memory meanwhile. */
  sleep(id: string, duration: Duration): Promise<void>;
  /** Pauses the run until `until` (a Date, unix milliseconds, or an ISO 8601 string). */
  sleepUntil(id: string, until: Date | number | string): Promise<void>;
  /** Waits until `eventId` is notified (POST /v2/notify/...) or `timeout` passes (default 7d). */
  waitForEvent<T = unknown>(id: string, eventId: string, opts?: { timeout?: Duration }): Promise<WaitResult<T>>;
  /** Notifies every current waiter of `eventId` (a broadcast notify), exactly once. */
  notify(id: string, eventId: string, data?: unknown): Promise<NotifyResult[]>;
  /**
   * Emits a herald event through the rules (its notifications, its workflows), exactly once: the
   * event is stored in the same transaction that records the step.
   */
  send(id: string, type: string, ctx: Record<string, unknown>): Promise<{ eventId: string }>;
}

export interface RunInfo {
  id: string;
  workflow: string;
  createdAt: Date;
  /** The event that started the run, if an event did. */
  eventId: string | null;
}

export interface WorkflowDefinition<Input = Record<string, unknown>> {
  description?: string;
  /** The event types that start this workflow; the event's ctx is the input. */
  on?: string | string[];
  /** Validates the input of runs started through the API (events are validated by their rule). */
  schema?: z.ZodType<Input>;
  /** How many times a failing execution is retried before the run is marked failed (default 3). */
  retries?: number;
  run(input: Input, step: WorkflowStep, run: RunInfo): Promise<unknown> | unknown;
}
