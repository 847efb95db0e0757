import { HttpError, ValidationError } from '../../errors.ts';
import type { Queryable } from '../../storage/db.ts';
import { adoptSdkTrigger, appendMessage, insertHttpRun, newMessageId, type HttpRunConfig } from '../../storage/queries/http-workflows.ts';
import { getRun } from '../../storage/queries/runs.ts';
import { durationMs } from '../duration.ts';
import { queueCall } from './call.ts';
import { parseRetryDelay } from './retry-delay.ts';
import { failureCallbackHeaders, forwardedHeaders, lowerHeaders } from './headers.ts';

/** One message of `POST /v2/batch` (or `/v2/publish/{url}`), as the qstash client sends it. */
export interface BatchMessage {
  destination: string;
  headers: Record<string, string>;
  body: Buffer;
}

export interface PublishResult {
  messageId: string;
  url: string;
  deduplicated?: boolean;
}

const RUN_ID_RE = /^[\w.:-]{1,256}$/;
const DEFAULT_RETRIES = 3;

/** Parses and checks a batch body before anything is stored: a bad message refuses the batch. */
export function parseBatch(raw: Buffer): BatchMessage[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new ValidationError('the batch body must be a JSON array of {destination, headers, body}');
  }
  const list = Array.isArray(parsed) ? parsed : [parsed];
  if (list.length === 0 || list.length > 1000) throw new ValidationError('a batch holds 1 to 1000 messages');
  return list.map((m, i) => {
    const msg = m as { destination?: unknown; headers?: unknown; body?: unknown };
    if (typeof msg?.destination !== 'string') throw new ValidationError(`messages[${i}].destination must be a URL`);
    let url: URL;
    try {
      url = new URL(msg.destination);
    } catch {
      throw new ValidationError(`messages[${i}].destination is not a valid URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ValidationError(`messages[${i}].destination must be http(s)`);
    if (msg.body !== undefined && msg.body !== null && typeof msg.body !== 'string') {
      throw new ValidationError(`messages[${i}].body must be a string`);
    }
    return { destination: url.toString(), headers: lowerHeaders(msg.headers), body: Buffer.from((msg.body as string | undefined) ?? '', 'utf8') };
  });
}

/** When a message is due: `Upstash-Not-Before` (unix seconds) wins over `Upstash-Delay`. */
export function dueAtMs(h: Record<string, string>): number | null {
  const notBefore = h['upstash-not-before'];
  if (notBefore !== undefined) {
    // Bounded by a Date's range (year 275760): a larger count would fail in Postgres as a 500.
    if (!/^\d{1,13}$/.test(notBefore) || Number(notBefore) > 8_640_000_000_000) throw new ValidationError('Upstash-Not-Before must be unix seconds');
    return Number(notBefore) * 1000;
  }
  const delay = h['upstash-delay'];
  if (delay !== undefined) return Date.now() + durationMs(/^\d+$/.test(delay) ? Number(delay) : delay, 'Upstash-Delay');
  return null;
}

/** `Upstash-Flow-Control-Value: parallelism=2, rate=10, period=1m` (period defaults to 1s). */
function flowControl(h: Record<string, string>): HttpRunConfig['flowControl'] {
  const key = h['upstash-flow-control-key'];
  if (!key) return undefined;
  const out: NonNullable<HttpRunConfig['flowControl']> = { key, periodMs: 1000 };
  for (const part of (h['upstash-flow-control-value'] ?? '').split(',').map((p) => p.trim()).filter(Boolean)) {
    const [name, value] = part.split('=').map((x) => x?.trim()) as [string, string | undefined];
    if (name === 'parallelism' || name === 'rate') {
      if (!value || !/^\d+$/.test(value) || Number(value) < 1) throw new ValidationError(`Upstash-Flow-Control-Value: ${name} must be a whole number ≥ 1`);
      out[name] = Number(value);
    } else if (name === 'period') {
      out.periodMs = durationMs(/^\d+$/.test(value ?? '') ? Number(value) : (value ?? ''), 'Upstash-Flow-Control-Value period');
      if (out.periodMs < 1) throw new ValidationError('Upstash-Flow-Control-Value: period must be positive');
    } else {
      throw new ValidationError(`Upstash-Flow-Control-Value: unknown setting "${name}" (parallelism, rate, period)`);
    }
  }
  if (!out.parallelism && !out.rate) throw new ValidationError('Upstash-Flow-Control-Value needs parallelism or rate');
  return out;
}

export function runConfig(h: Record<string, string>): HttpRunConfig {
  const retriesRaw = h['upstash-retries'];
  if (retriesRaw !== undefined && (!/^\d+$/.test(retriesRaw) || Number(retriesRaw) > 100)) {
    throw new ValidationError('Upstash-Retries must be a whole number from 0 to 100');
  }
  const retryDelay = h['upstash-retry-delay'] || undefined;
  if (retryDelay) parseRetryDelay(retryDelay); // refuse a bad expression at trigger time, not at the first failure
  return {
    forwardHeaders: forwardedHeaders(h),
    retries: retriesRaw === undefined ? DEFAULT_RETRIES : Number(retriesRaw),
    retryDelay,
    failureUrl: h['upstash-failure-callback'] || undefined,
    failureHeaders: h['upstash-failure-callback'] ? failureCallbackHeaders(h) : undefined,
    label: h['upstash-label'] || undefined,
    flowControl: flowControl(h),
  };
}

function parseInvoke(raw: Buffer): { body: Buffer; invoker: NonNullable<HttpRunConfig['invoker']> } {
  let b: { body?: unknown; headers?: unknown; workflowRunId?: unknown; workflowUrl?: unknown; step?: unknown };
  try {
    b = JSON.parse(raw.toString('utf8')) as typeof b;
  } catch {
    throw new ValidationError('an invoke message must carry {body, headers, workflowRunId, workflowUrl, step}');
  }
  if (typeof b.workflowRunId !== 'string' || typeof b.workflowUrl !== 'string' || !b.step || typeof b.step !== 'object') {
    throw new ValidationError('an invoke message must carry {body, headers, workflowRunId, workflowUrl, step}');
  }
  const headers: Record<string, string[]> = {};
  for (const [k, v] of Object.entries((b.headers ?? {}) as Record<string, unknown>)) {
    if (Array.isArray(v)) headers[k] = v.map(String);
    else if (typeof v === 'string') headers[k] = [v];
  }
  return {
    body: Buffer.from(typeof b.body === 'string' ? b.body : b.body === undefined ? '' : JSON.stringify(b.body), 'utf8'),
    invoker: { runId: b.workflowRunId, url: b.workflowUrl, headers, step: b.step as Record<string, unknown> },
  };
}

/** The step type the SDK published (`Run`, `SleepFor`, `Notify`…), for the admin timeline. */
function stepType(body: Buffer): string {
  try {
    const t = (JSON.parse(body.toString('utf8')) as { stepType?: unknown }).stepType;
    return typeof t === 'string' && t.length <= 64 ? t : 'message';
  } catch {
    return 'message';
  }
}

/**
 * Stores a batch in the caller's transaction. `Upstash-Workflow-Init: true` starts a run (or finds
 * it: deduplicated); any other message is appended to its run's history and delivered when due.
 * A message for a run that has ended is a 400, which the SDK reads as "the run is over".
 */
export async function publishBatch(tx: Queryable, messages: BatchMessage[]): Promise<PublishResult[]> {
  const results: PublishResult[] = [];
  for (const m of messages) {
    const runId = m.headers['upstash-workflow-runid'];
    if (!runId) {
      throw new ValidationError('herald runs workflow messages only: Upstash-Workflow-RunId is missing');
    }
    if (!RUN_ID_RE.test(runId)) throw new ValidationError('Upstash-Workflow-RunId is not a valid run id');
    const runAtMs = dueAtMs(m.headers);
    const messageId = newMessageId();
    if (m.headers['upstash-workflow-init'] === 'true') {
      const config = runConfig(m.headers);
      if (m.headers['upstash-workflow-trigger-by-sdk'] === 'true') {
        const adopted = await adoptSdkTrigger(tx, runId, config);
        if (adopted) {
          results.push({ messageId: adopted.messageId, url: adopted.url });
          continue;
        }
      }
      let body = m.body;
      if (m.headers['upstash-workflow-invoke'] === 'true') {
        // context.invoke: the body carries the child's payload and who to report back to.
        const inv = parseInvoke(m.body);
        body = inv.body;
        config.invoker = inv.invoker;
      }
      const run = await insertHttpRun(tx, {
        id: runId, url: m.destination, body, contentType: m.headers['content-type'] ?? null,
        config, messageId, runAtMs,
      });
      results.push(run.created ? { messageId, url: m.destination } : { messageId, url: m.destination, deduplicated: true });
      continue;
    }
    const run = await getRun(tx, runId);
    if (!run) throw new HttpError(404, `workflow run ${runId} not found`);
    if (run.kind !== 'http') throw new ValidationError(`workflow run ${runId} is a code workflow; it takes no published steps`);
    if (run.state !== 'running') throw new HttpError(400, `workflow run ${runId} has ended (${run.state})`);
    if (m.headers['upstash-workflow-calltype'] === 'toCallback') {
      if (!m.headers['upstash-callback']) throw new ValidationError('a toCallback message needs Upstash-Callback');
      await queueCall(tx, run, m, messageId);
      results.push({ messageId, url: m.destination });
      continue;
    }
    await appendMessage(tx, {
      runId, messageId, type: stepType(m.body), body: m.body,
      output: { destination: m.destination, forwardHeaders: forwardedHeaders(m.headers) },
      maxAttempts: run.max_attempts, runAtMs,
    });
    results.push({ messageId, url: m.destination });
  }
  return results;
}
