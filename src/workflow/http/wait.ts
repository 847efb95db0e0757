import { HttpError, ValidationError } from '../../errors.ts';
import type { Queryable } from '../../storage/db.ts';
import { appendMessage, newMessageId } from '../../storage/queries/http-workflows.ts';
import { getRunLocked } from '../../storage/queries/runs.ts';
import { insertWaiter } from '../../storage/queries/waiters.ts';
import { lockRunEvent, takeRunEvent } from '../../storage/queries/run-events.ts';
import { durationMs } from '../duration.ts';

/** The body of `POST /v2/wait/{eventId}` as @upstash/workflow sends it. */
export interface WaitRequest {
  url: string;
  timeout: string;
  timeoutUrl?: string;
  timeoutBody?: string;
  timeoutHeaders?: Record<string, string[]>;
  step: Record<string, unknown>;
}

export function parseWaitRequest(raw: Buffer): WaitRequest {
  let b: Partial<WaitRequest>;
  try {
    b = JSON.parse(raw.toString('utf8')) as Partial<WaitRequest>;
  } catch {
    throw new ValidationError('the wait body must be JSON: {url, timeout, timeoutUrl?, timeoutHeaders?, step}');
  }
  if (typeof b?.url !== 'string' || !/^https?:\/\//.test(b.url)) throw new ValidationError('url must be an http(s) URL', 'url');
  if (b.timeoutUrl !== undefined && (typeof b.timeoutUrl !== 'string' || !/^https?:\/\//.test(b.timeoutUrl))) {
    throw new ValidationError('timeoutUrl must be an http(s) URL', 'timeoutUrl');
  }
  if (!b.step || typeof b.step !== 'object' || Array.isArray(b.step)) throw new ValidationError('step must be the step object', 'step');
  return { ...b, timeout: typeof b.timeout === 'string' || typeof b.timeout === 'number' ? String(b.timeout) : '7d' } as WaitRequest;
}

/**
 * Registers an HTTP workflow's wait, or, when a run-scoped notify for it is already kept
 * (lookback), completes it at once with that event and delivers it. Under the same (run, event)
 * lock as run-scoped notify, so one of the two always sees the other.
 */
export async function registerHttpWait(tx: Queryable, runId: string, eventId: string, w: WaitRequest): Promise<'waiting' | 'resumed'> {
  const timeoutMs = durationMs(/^\d+$/.test(w.timeout) ? Number(w.timeout) : w.timeout, 'timeout');
  await lockRunEvent(tx, runId, eventId);
  const run = await getRunLocked(tx, runId);
  if (!run) throw new HttpError(404, `workflow run ${runId} not found`);
  if (run.kind !== 'http') throw new ValidationError(`workflow run ${runId} is a code workflow`);
  if (run.state !== 'running') throw new HttpError(400, `workflow run ${runId} has ended (${run.state})`);
  const messageId = newMessageId();
  const stored = await takeRunEvent(tx, runId, eventId);
  if (stored) {
    await appendMessage(tx, {
      runId, messageId, type: 'wait', body: stored.body, maxAttempts: run.max_attempts, runAtMs: null,
      output: { destination: w.url, eventId, timeout: false, timeoutDuration: w.timeout, messageId: stored.message_id, step: w.step },
    });
    return 'resumed';
  }
  await insertWaiter(tx, {
    runId, stepId: messageId, eventId, url: w.url, headers: w.timeoutHeaders ?? {}, timeoutMs, timeout: w.timeout,
    timeoutUrl: w.timeoutUrl ?? w.url, timeoutBody: w.timeoutBody ? Buffer.from(w.timeoutBody, 'base64') : null,
    timeoutHeaders: w.timeoutHeaders ?? null, step: w.step,
  });
  return 'waiting';
}
