import { RetryAfterError } from '../errors.ts';
import { backoffMs } from '../jobs/backoff.ts';
import type { JobHandler } from '../jobs/worker.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { CompiledRules } from '../rules/compile.ts';
import type { RateLimit } from '../rules/compile-channels.ts';
import type { Queryable } from '../storage/db.ts';
import { lockDelivery, markDead, markRetrying, markSent, postpone, saveMessage, type DeliveryRow } from '../storage/queries/deliveries.ts';
import { finishAttempt, markLostAttempts, startAttempt } from '../storage/queries/delivery-attempts.ts';
import { recentAttemptsOn, recentSendsTo } from '../storage/queries/rate-counts.ts';
import { getEndpoint, setEndpointDisabled } from '../storage/queries/webhook-endpoints.ts';
import { sessionOpen } from '../storage/queries/whatsapp-sessions.ts';
import { finalMessage } from './digest.ts';
import { DeliveryFailure, type ChannelProvider, type SendInput, type SendResult } from './provider.ts';

export type Providers = Record<'email' | 'whatsapp' | 'webhook', ChannelProvider>;

export interface DeliveryDeps {
  rules: CompiledRules;
  providers: Providers;
  log: Logger;
  metrics?: Metrics;
}

type Prepared =
  | { done: string }
  | { deferMs: number }
  | { send: SendInput; provider: ChannelProvider };

/** Milliseconds until a rate-limit slot frees up, or 0 when one is free now. */
async function rateLimitWait(tx: Queryable, d: DeliveryRow, nowMs: number, deps: DeliveryDeps, host: string | null): Promise<{ ms: number; why: string } | undefined> {
  const check = async (limit: RateLimit | undefined, count: () => Promise<{ n: number; oldest: Date | null }>, what: string) => {
    if (!limit) return undefined;
    const { n, oldest } = await count();
    if (n < limit.limit || !oldest) return undefined;
    return { ms: Math.max(50, oldest.getTime() + limit.periodMs - nowMs + 10), why: `rate limit ${limit.source} ${what}` };
  };
  const perRecipient = d.channel === 'webhook' || !d.user_id ? undefined : deps.rules.delivery.perRecipient[d.channel];
  return (
    (await check(perRecipient, () => recentSendsTo(tx, d.user_id!, d.channel, perRecipient!.periodMs), `per recipient on ${d.channel}`)) ??
    (host ? await check(deps.rules.delivery.perHost, () => recentAttemptsOn(tx, host, deps.rules.delivery.perHost!.periodMs), `per host ${host}`) : undefined)
  );
}

/**
 * The `delivery.send` job: one attempt at one delivery. The attempt is recorded (state 'sending')
 * before the provider is called and its outcome after, each in a transaction fenced by the job's
 * lease. A worker that dies between the two leaves 'sending' behind; the next worker marks that
 * attempt lost and sends again under the same stable id (Message-ID, webhook-id), so a duplicate
 * is detectable downstream and nothing is lost.
 */
export function deliveryHandler(deps: DeliveryDeps): JobHandler {
  return {
    async run(payload, ctx) {
      const id = String(payload.deliveryId);
      const prepared = await ctx.commit<Prepared>(
        async (tx) => {
          const d = await lockDelivery(tx, id);
          if (!d) return { done: 'missing' };
          if (d.state === 'sent' || d.state === 'dead') return { done: d.state };
          const nowMs = d.now.getTime();
          if (d.not_before && d.not_before.getTime() > nowMs) return { deferMs: d.not_before.getTime() - nowMs };
          if (d.state === 'sending') await markLostAttempts(tx, id);
          if (d.attempts >= d.max_attempts) {
            await markDead(tx, id, `gave up after ${d.attempts} attempts: ${d.last_error ?? 'the worker stopped during each attempt'}`);
            return { done: 'dead' };
          }
          const provider = deps.providers[d.channel];
          let endpoint: SendInput['endpoint'];
          if (d.channel === 'webhook') {
            const ep = d.endpoint_id ? await getEndpoint(tx, d.endpoint_id) : undefined;
            if (!ep) {
              await markDead(tx, id, 'the webhook endpoint was deleted');
              return { done: 'dead' };
            }
            if (ep.disabled_at) {
              await markDead(tx, id, `the webhook endpoint is disabled: ${ep.disabled_reason ?? 'by an operator'}`);
              return { done: 'dead' };
            }
            endpoint = { id: ep.id, url: ep.url, secret: ep.secret };
          }
          const host = d.destination_host ?? provider.host;
          const wait = await rateLimitWait(tx, d, nowMs, deps, host);
          if (wait) {
            await postpone(tx, id, wait.ms, wait.why);
            return { deferMs: wait.ms };
          }
          const open = d.channel === 'whatsapp' ? await sessionOpen(tx, d.destination) : undefined;
          const attempt = d.attempts + 1;
          await startAttempt(tx, { id, attempt, host, provider: provider.name });
          return { send: { delivery: { ...d, attempts: attempt }, message: d.message, attempt, endpoint, sessionOpen: open }, provider };
        },
        { complete: (r) => 'done' in r },
      );
      if ('done' in prepared) return;
      if ('deferMs' in prepared) return ctx.defer(prepared.deferMs);

      const { send, provider } = prepared;
      const d = send.delivery;
      let result: SendResult | undefined;
      let failure: DeliveryFailure | undefined;
      const started = performance.now();
      let rendered: Record<string, any> | undefined;
      try {
        rendered = await finalMessage(deps.rules, d);
        result = await provider.send({ ...send, message: rendered });
      } catch (err) {
        failure = err instanceof DeliveryFailure ? err : provider.classify(err);
      }
      const last = send.attempt >= d.max_attempts;
      const retryInMs = failure?.kind === 'transient' && !last ? (failure.details.retryAfterMs ?? Math.max(200, backoffMs(send.attempt))) : undefined;
      await ctx.commit(
        async (tx) => {
          if (result) {
            await finishAttempt(tx, { id: d.id, attempt: send.attempt, outcome: 'sent', response: result.response, error: null });
            await markSent(tx, d.id, result.providerMessageId);
            // A digest is rendered at send time; keep what was sent, so the log and outbox show it.
            if (rendered && rendered !== d.message) await saveMessage(tx, d.id, rendered);
            return;
          }
          const f = failure!;
          await finishAttempt(tx, { id: d.id, attempt: send.attempt, outcome: f.kind, response: f.details.response ?? null, error: f.message });
          if (retryInMs !== undefined) return markRetrying(tx, d.id, f.message, retryInMs);
          await markDead(tx, d.id, f.kind === 'permanent' ? f.message : `gave up after ${send.attempt} attempts: ${f.message}`);
          if (f.details.disableEndpoint && d.endpoint_id) await setEndpointDisabled(tx, d.endpoint_id, f.message);
        },
        { complete: retryInMs === undefined },
      );
      const ms = +(performance.now() - started).toFixed(1);
      deps.metrics?.observeDelivery(d.channel, result ? 'sent' : retryInMs !== undefined ? 'retry' : 'dead', ms / 1000);
      if (result) deps.log.debug({ deliveryId: d.id, channel: d.channel, provider: provider.name, attempt: send.attempt, ms }, 'delivery sent');
      else deps.log[retryInMs !== undefined ? 'warn' : 'error']({ deliveryId: d.id, channel: d.channel, attempt: send.attempt, err: failure!.message, retryInMs }, retryInMs !== undefined ? 'delivery failed; will retry' : 'delivery dead-lettered');
      // The job itself goes back to the queue for the retry; the delivery row says why and when.
      if (retryInMs !== undefined) throw new RetryAfterError(`delivery ${d.id}: ${failure!.message}`, retryInMs);
    },
    async onFailed(tx, payload, error) {
      const d = await lockDelivery(tx, String(payload.deliveryId));
      if (d && d.state !== 'sent' && d.state !== 'dead') await markDead(tx, d.id, `the send job failed: ${error.message}`);
    },
  };
}
