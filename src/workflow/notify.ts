import { ValidationError } from '../errors.ts';
import type { Db, Queryable } from '../storage/db.ts';
import { getRunLocked } from '../storage/queries/runs.ts';
import { resumeWaiters, type ResumedWaiter, type WaiterRow } from '../storage/queries/waiters.ts';
import { lockRunEvent, storeRunEvent } from '../storage/queries/run-events.ts';
import type { NotifyResult, WaiterView } from './types.ts';

/**
 * Event ids travel in URL paths (/v2/notify/{eventId}): 1-256 characters, no whitespace, no
 * control characters, no slash (it would change the route).
 */
const EVENT_ID_RE = /^[^\s/\x00-\x1f\x7f]{1,256}$/;

export function checkEventId(eventId: unknown, what = 'event id'): string {
  if (typeof eventId !== 'string' || !EVENT_ID_RE.test(eventId)) {
    throw new ValidationError(`invalid ${what}: 1-256 characters without whitespace, control characters or "/"`);
  }
  return eventId;
}

export interface NotifyBody {
  body: Buffer;
  contentType: string | null;
}

/** The seed's Waiter shape from a stored waiter. */
export function waiterView(w: Pick<WaiterRow, 'url' | 'headers' | 'deadline' | 'timeout_url' | 'timeout_body' | 'timeout_headers'>): WaiterView {
  const view: WaiterView = { url: w.url, headers: w.headers, deadline: w.deadline };
  if (w.timeout_url) view.timeoutUrl = w.timeout_url;
  if (w.timeout_body) view.timeoutBody = w.timeout_body.toString('base64');
  if (w.timeout_headers) view.timeoutHeaders = w.timeout_headers;
  return view;
}

const notifyResult = (w: ResumedWaiter): NotifyResult => ({
  waiter: waiterView(w),
  messageId: w.message_id,
  deduplicated: false,
  error: '',
  workflowRunId: w.run_id,
  workflowCreatedAt: w.run_created_ms,
});

/**
 * Broadcast ("unsafe") notify, in the caller's transaction: every waiter of `eventId` at this
 * moment is resumed with the body; with no waiter, nothing is kept.
 */
export async function broadcastNotify(tx: Queryable, eventId: string, body: NotifyBody): Promise<NotifyResult[]> {
  return (await resumeWaiters(tx, { by: 'event', eventId }, body)).map(notifyResult);
}

export type RunNotifyOutcome =
  | { outcome: 'delivered'; results: NotifyResult[] }
  | { outcome: 'stored'; messageId: string; workflowRunId: string; workflowCreatedAt: number }
  | { outcome: 'not-found' }
  | { outcome: 'ended'; state: string };

/**
 * Run-scoped ("safe") notify: resumes the run's waiter for `eventId` now, or keeps the event
 * until the run's next wait on it. Under the (run, event) lock that wait registration takes too,
 * so the two cannot miss each other.
 */
export async function runNotify(db: Db, runId: string, eventId: string, body: NotifyBody): Promise<RunNotifyOutcome> {
  return db.transaction(async (tx) => {
    await lockRunEvent(tx, runId, eventId);
    const run = await getRunLocked(tx, runId);
    if (!run) return { outcome: 'not-found' };
    if (run.state !== 'running') return { outcome: 'ended', state: run.state };
    const resumed = await resumeWaiters(tx, { by: 'run', runId, eventId }, body);
    if (resumed.length > 0) return { outcome: 'delivered', results: resumed.map(notifyResult) };
    const messageId = await storeRunEvent(tx, { runId, eventId, ...body });
    return { outcome: 'stored', messageId, workflowRunId: run.id, workflowCreatedAt: run.created_at.getTime() };
  });
}

/** Maintenance: resumes waiters whose deadline passed (database clock) as timed out, once each. */
export async function fireDueTimeouts(tx: Queryable, limit = 500): Promise<ResumedWaiter[]> {
  return resumeWaiters(tx, { by: 'due', limit }, { timeout: true });
}

/** What a notify body is made of when a workflow step (not an HTTP client) sends it. */
export function encodeNotifyData(data: unknown): NotifyBody {
  if (data === undefined) return { body: Buffer.alloc(0), contentType: null };
  if (Buffer.isBuffer(data) || data instanceof Uint8Array) return { body: Buffer.from(data), contentType: 'application/octet-stream' };
  if (typeof data === 'string') return { body: Buffer.from(data, 'utf8'), contentType: 'text/plain; charset=utf-8' };
  return { body: Buffer.from(JSON.stringify(data), 'utf8'), contentType: 'application/json' };
}

/**
 * What the waiting step sees as eventData, as Upstash Workflow does it (JSON if it parses, else
 * the text), except that bytes that are not UTF-8 stay bytes instead of being mangled.
 */
export function decodeEventData(body: Buffer): unknown {
  if (body.length === 0) return undefined;
  const text = body.toString('utf8');
  if (!Buffer.from(text, 'utf8').equals(body)) return body;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
