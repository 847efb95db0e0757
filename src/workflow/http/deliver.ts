import { NonRetriableError, RetryAfterError } from '../../errors.ts';
import type { JobHandler } from '../../jobs/worker.ts';
import type { Logger } from '../../log.ts';
import type { Metrics } from '../../metrics.ts';
import type { Db } from '../../storage/db.ts';
import { insertDlq } from '../../storage/queries/dlq.ts';
import { releaseFlowSlot, takeFlowRate, takeFlowSlot } from '../../storage/queries/flow-control.ts';
import { getMessages, type HttpRunConfig } from '../../storage/queries/http-workflows.ts';
import { getRun } from '../../storage/queries/runs.ts';
import { finishRun } from '../../storage/queries/run-end.ts';
import { OutboundRefusedError, type OutboundFetch } from '../../outbound/guard.ts';
import { rawSteps } from './history.ts';
import { retryDelayMs } from './retry-delay.ts';
import { DeliveryError, queueFailureCallback } from './failure.ts';
import { upstashSignature } from './signature.ts';

export interface DeliveryDeps {
  db: Db;
  log: Logger;
  metrics: Metrics;
  signingKeys: { current: string; next: string } | undefined;
  timeoutMs: number;
  /** Guarded outbound HTTP (private addresses refused unless allow-listed). */
  fetch: OutboundFetch;
  /** Histories larger than this are not sent; the SDK fetches them (lazy fetch). */
  lazyFetchBytes: number;
}

/** Retry-After: seconds, or an HTTP date; capped at a day as QStash does. */
function retryAfterMs(value: string | null): number | undefined {
  if (!value) return undefined;
  const ms = /^\d+$/.test(value.trim()) ? Number(value) * 1000 : Date.parse(value) - Date.now();
  return Number.isFinite(ms) ? Math.min(Math.max(ms, 0), 86_400_000) : undefined;
}

/**
 * The `workflow.deliver` job: POSTs a run's history up to one message to the workflow endpoint,
 * with the headers @upstash/workflow requires, signed when keys are configured. 2xx is done; 489
 * with Upstash-NonRetryable-Error fails the run; 429 retries after Retry-After; anything else
 * (and network errors) retries with backoff, up to the run's retries, then fails the run.
 */
export function httpDeliveryHandler(deps: DeliveryDeps): JobHandler {
  return {
    async run(payload, ctx) {
      const runId = String(payload.runId);
      const messageId = String(payload.messageId);
      const url = String(payload.url);
      const run = await getRun(deps.db, runId);
      if (!run || run.state !== 'running') return; // ended meanwhile: nothing to deliver
      const messages = await getMessages(deps.db, runId, messageId);
      if (!messages.some((m) => m.step_id === messageId)) return; // the message went with its run
      const history = JSON.stringify(rawSteps(messages));
      const body = Buffer.byteLength(history) > deps.lazyFetchBytes ? '' : history;
      const config = run.config as unknown as HttpRunConfig;
      const headers: Record<string, string> = {
        ...config.forwardHeaders,
        ...((messages.at(-1)!.output?.forwardHeaders as Record<string, string> | undefined) ?? {}),
        'content-type': 'application/json',
        'upstash-workflow-sdk-version': '1',
        'upstash-workflow-runid': runId,
        'upstash-message-id': messageId,
        'upstash-retried': String(ctx.job.attempts - 1),
        'upstash-workflow-createdat': String(run.created_at.getTime()),
      };
      if (config.label) headers['upstash-label'] = config.label;
      // A REST-triggered run's first delivery: the SDK answers by publishing its own Init.
      if (payload.unknownSdk === true) {
        delete headers['upstash-workflow-sdk-version'];
        headers['upstash-workflow-unknown-sdk'] = 'true';
      }
      if (deps.signingKeys) headers['upstash-signature'] = await upstashSignature(deps.signingKeys.current, url, body);

      // Flow control: wait for a free parallelism slot and room in the rate window, without
      // spending an attempt (the delivery has not happened).
      const flow = config.flowControl;
      const holder = `job:${ctx.job.id}`;
      if (flow?.parallelism) {
        const slot = await deps.db.transaction((tx) => takeFlowSlot(tx, flow.key, flow.parallelism!, holder, deps.timeoutMs + 30_000));
        if (slot === undefined) return ctx.defer(50 + Math.floor(Math.random() * 100));
      }
      if (flow?.rate) {
        const waitMs = await deps.db.transaction((tx) => takeFlowRate(tx, flow.key, flow.rate!, flow.periodMs));
        if (waitMs > 0) {
          if (flow.parallelism) await releaseFlowSlot(deps.db, flow.key, holder);
          return ctx.defer(waitMs);
        }
      }
      let res: Response;
      try {
        res = await deps.fetch(url, { method: 'POST', headers, body, redirect: 'manual', timeoutMs: deps.timeoutMs });
      } catch (err) {
        if (err instanceof OutboundRefusedError) throw new NonRetriableError(err.message);
        throw new Error(`could not reach the workflow endpoint ${url}: ${(err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message}`);
      } finally {
        if (flow?.parallelism) await releaseFlowSlot(deps.db, flow.key, holder).catch(() => {});
      }
      const raw = Buffer.from(await res.arrayBuffer().catch(() => new ArrayBuffer(0)));
      const text = raw.toString('utf8').slice(0, 500);
      deps.metrics.deliveries.inc({ status: String(res.status) });
      if (res.ok) return;
      const refused = (message: string) => {
        const h: Record<string, string[]> = {};
        res.headers.forEach((v, k) => (h[k] = [v]));
        return new DeliveryError(message, res.status, h, raw, messageId, url);
      };
      if (res.status === 489 && res.headers.get('upstash-nonretryable-error') === 'true') {
        throw new NonRetriableError(refused(`the workflow endpoint failed the run (489): ${text}`).message, { cause: refused('489') });
      }
      if (res.status === 429) {
        throw new RetryAfterError(`the workflow endpoint asked to retry later (429)`, retryAfterMs(res.headers.get('retry-after')) ?? 1000, {
          cause: refused('429'),
        });
      }
      // Retry-After from the endpoint wins; else the trigger's Upstash-Retry-Delay; else backoff.
      const after =
        retryAfterMs(res.headers.get('retry-after')) ?? (config.retryDelay ? retryDelayMs(config.retryDelay, ctx.job.attempts - 1) : undefined);
      const message = `the workflow endpoint answered ${res.status}${text ? `: ${text}` : ''}`;
      throw after === undefined ? refused(message) : new RetryAfterError(message, after, { cause: refused(message) });
    },
    async onFailed(tx, payload, err) {
      const run = await getRun(tx, String(payload.runId));
      if (run && (await finishRun(tx, run.id, { state: 'failed', error: err.message }))) {
        const refused = err instanceof DeliveryError ? err : err.cause instanceof DeliveryError ? err.cause : undefined;
        // The dead-letter entry: the endpoint's last answer, and what resume would deliver again.
        await insertDlq(tx, {
          runId: run.id,
          messageId: String(payload.messageId),
          url: String(payload.url),
          status: refused?.status ?? 0,
          headers: refused?.headers ?? {},
          body: refused?.body ?? null,
          error: err.message,
          failureCallback: (run.config as unknown as HttpRunConfig).failureUrl ?? null,
        });
        await queueFailureCallback(tx, run, refused ?? err);
        deps.metrics.runsFinished.inc({ state: 'failed' });
        deps.log.warn({ runId: payload.runId, err: err.message }, 'http workflow run failed');
      }
    },
  };
}
