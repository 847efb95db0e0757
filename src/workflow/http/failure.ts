import type { JobHandler } from '../../jobs/worker.ts';
import type { Logger } from '../../log.ts';
import type { Db, Queryable } from '../../storage/db.ts';
import { getMessages, type HttpRunConfig } from '../../storage/queries/http-workflows.ts';
import { setFailureCallbackState } from '../../storage/queries/dlq.ts';
import { enqueueJob } from '../../storage/queries/jobs.ts';
import type { RunRow } from '../../storage/queries/runs.ts';
import type { OutboundFetch } from '../../outbound/guard.ts';
import { upstashSignature } from './signature.ts';

export const FAILURE_CALLBACK_JOB = 'workflow.failure-callback';

/** A delivery the workflow endpoint refused: what it answered, for the failure callback. */
export class DeliveryError extends Error {
  override name = 'DeliveryError';
  constructor(
    message: string,
    readonly status: number,
    readonly headers: Record<string, string[]>,
    readonly body: Buffer,
    readonly messageId: string,
    readonly url: string,
  ) {
    super(message);
  }
}

/**
 * Queues the run's failure callback (the SDK's failureFunction) when its trigger named a failure
 * URL, in the transaction that marks the run failed. The body is QStash's: the last response's
 * status, headers and base64 body, the source message and the run's initial payload.
 */
export async function queueFailureCallback(tx: Queryable, run: RunRow, err: Error): Promise<void> {
  const config = run.config as unknown as HttpRunConfig;
  if (!config.failureUrl) return;
  const d = err instanceof DeliveryError ? err : undefined;
  await enqueueJob(tx, {
    kind: FAILURE_CALLBACK_JOB,
    key: `failure:${run.id}`,
    maxAttempts: config.retries + 1,
    payload: {
      runId: run.id,
      url: config.failureUrl,
      headers: config.failureHeaders ?? {},
      status: d?.status ?? 0,
      header: d?.headers ?? {},
      body: (d?.body ?? Buffer.from(JSON.stringify({ error: 'DeliveryFailed', message: err.message }))).toString('base64'),
      sourceMessageId: d?.messageId ?? null,
      sourceUrl: d?.url ?? run.workflow,
      maxRetries: config.retries,
      workflowCreatedAt: run.created_at.getTime(),
    },
  });
}

export function failureCallbackHandler(deps: { db: Db; log: Logger; signingKeys: { current: string } | undefined; timeoutMs: number; fetch: OutboundFetch }): JobHandler {
  return {
    async run(p, ctx) {
      const runId = String(p.runId);
      const url = String(p.url);
      const [init] = await getMessages(deps.db, runId);
      const body = JSON.stringify({
        status: p.status,
        header: p.header,
        body: p.body,
        retried: p.maxRetries,
        maxRetries: p.maxRetries,
        sourceMessageId: p.sourceMessageId,
        url: p.sourceUrl,
        method: 'POST',
        sourceHeader: {},
        sourceBody: (init?.output_bytes ?? Buffer.alloc(0)).toString('base64'),
        workflowRunId: runId,
        workflowCreatedAt: p.workflowCreatedAt,
      });
      const headers: Record<string, string> = {
        ...(p.headers as Record<string, string>),
        'content-type': 'application/json',
        'upstash-workflow-runid': runId,
        'upstash-workflow-is-failure': 'true',
        'upstash-workflow-failure-callback': 'true',
        'upstash-retried': String(ctx.job.attempts - 1),
      };
      if (deps.signingKeys) headers['upstash-signature'] = await upstashSignature(deps.signingKeys.current, url, body);
      const res = await deps.fetch(url, { method: 'POST', headers, body, timeoutMs: deps.timeoutMs });
      if (!res.ok) throw new Error(`the failure callback answered ${res.status}: ${(await res.text().catch(() => '')).slice(0, 300)}`);
      await ctx.commit((tx) => setFailureCallbackState(tx, runId, 'delivered'));
    },
    async onFailed(tx, p, err) {
      await setFailureCallbackState(tx, String(p.runId), 'failed');
      deps.log.error({ runId: p.runId, err: err.message }, 'the failure callback of a workflow run could not be delivered');
    },
  };
}
