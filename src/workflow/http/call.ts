import type { JobHandler } from '../../jobs/worker.ts';
import type { Logger } from '../../log.ts';
import type { Db, Queryable } from '../../storage/db.ts';
import { newMessageId, type HttpRunConfig } from '../../storage/queries/http-workflows.ts';
import { enqueueJob } from '../../storage/queries/jobs.ts';
import { getRun, type RunRow } from '../../storage/queries/runs.ts';
import type { OutboundFetch } from '../../outbound/guard.ts';
import { durationMs } from '../duration.ts';
import { failureCallbackHeaders, forwardedHeaders } from './headers.ts';
import { upstashSignature } from './signature.ts';

export const CALL_JOB = 'workflow.call';
const METHODS = new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS']);

/** `Upstash-Callback-*` → the callback delivery's headers (Forward-X → X, Y → Upstash-Y). */
function callbackHeaders(h: Record<string, string>): Record<string, string> {
  const renamed: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) {
    if (k.startsWith('upstash-callback-')) renamed[`upstash-failure-callback-${k.slice('upstash-callback-'.length)}`] = v;
  }
  return failureCallbackHeaders(renamed);
}

/**
 * `context.call`: the app publishes a message to the third-party URL with `Upstash-Callback` set
 * to itself. herald makes the call (retrying non-2xx answers up to `Upstash-Retries`), then
 * delivers QStash's callback body to the workflow, which records the result as its Call step.
 */
export async function queueCall(tx: Queryable, run: RunRow, m: { destination: string; headers: Record<string, string>; body: Buffer }, messageId: string): Promise<void> {
  const method = (m.headers['upstash-method'] ?? 'POST').toUpperCase();
  const timeout = m.headers['upstash-timeout'];
  const retries = m.headers['upstash-retries'];
  await enqueueJob(tx, {
    kind: CALL_JOB,
    key: `call:${messageId}`,
    maxAttempts: (retries && /^\d+$/.test(retries) ? Math.min(Number(retries), 20) : 0) + 1,
    payload: {
      runId: run.id,
      messageId,
      url: m.destination,
      method: METHODS.has(method) ? method : 'POST',
      headers: forwardedHeaders(m.headers),
      contentType: m.headers['content-type'] ?? null,
      body: m.body.toString('base64'),
      timeoutMs: timeout ? durationMs(/^\d+$/.test(timeout) ? Number(timeout) : timeout, 'Upstash-Timeout') : null,
      callbackUrl: m.headers['upstash-callback'],
      callbackHeaders: callbackHeaders(m.headers),
    },
  });
}

export function callHandler(deps: { db: Db; log: Logger; signingKeys: { current: string } | undefined; timeoutMs: number; fetch: OutboundFetch }): JobHandler {
  return {
    async run(p, ctx) {
      const runId = String(p.runId);
      const run = await getRun(deps.db, runId);
      if (!run || run.state !== 'running') return;
      const body = Buffer.from(String(p.body), 'base64');
      const headers: Record<string, string> = { ...(p.headers as Record<string, string>) };
      if (p.contentType) headers['content-type'] = String(p.contentType);
      let status = 0;
      let header: Record<string, string[]> = {};
      let responseBody = Buffer.alloc(0);
      try {
        const res = await deps.fetch(String(p.url), {
          method: String(p.method),
          headers,
          body: p.method === 'GET' || p.method === 'HEAD' ? undefined : new Uint8Array(body),
          timeoutMs: Number(p.timeoutMs ?? deps.timeoutMs),
        });
        status = res.status;
        res.headers.forEach((v, k) => (header[k] = [v]));
        responseBody = Buffer.from(await res.arrayBuffer());
      } catch (err) {
        status = 0;
        header = {};
        responseBody = Buffer.from((err as Error).message);
      }
      const last = ctx.job.attempts >= ctx.job.max_attempts;
      // Not 2xx and attempts left: retry the call itself; the workflow hears only the outcome.
      if ((status < 200 || status >= 300) && !last) throw new Error(`context.call to ${p.url} answered ${status || 'no response'}`);

      const config = run.config as unknown as HttpRunConfig;
      const callbackId = newMessageId();
      const callback = JSON.stringify({
        status,
        header,
        body: responseBody.toString('base64'),
        retried: ctx.job.attempts - 1,
        maxRetries: ctx.job.max_attempts - 1,
        sourceMessageId: p.messageId,
        url: p.url,
        method: p.method,
        sourceHeader: {},
        sourceBody: String(p.body),
        workflowRunId: runId,
      });
      const delivery = JSON.stringify([{ messageId: callbackId, body: Buffer.from(callback).toString('base64'), callType: 'fromCallback' }]);
      const url = String(p.callbackUrl);
      const cbHeaders: Record<string, string> = {
        ...config.forwardHeaders,
        ...(p.callbackHeaders as Record<string, string>),
        'content-type': 'application/json',
        'upstash-workflow-sdk-version': '1',
        'upstash-workflow-runid': runId,
        'upstash-message-id': callbackId,
        'upstash-workflow-createdat': String(run.created_at.getTime()),
      };
      if (deps.signingKeys) cbHeaders['upstash-signature'] = await upstashSignature(deps.signingKeys.current, url, delivery);
      const res = await deps.fetch(url, { method: 'POST', headers: cbHeaders, body: delivery, timeoutMs: deps.timeoutMs });
      if (!res.ok) {
        // The workflow did not take the result: the run's own retry budget decides.
        throw new Error(`the workflow endpoint refused the context.call result (${res.status}): ${(await res.text().catch(() => '')).slice(0, 300)}`);
      }
    },
  };
}
