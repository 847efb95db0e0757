import { secretBytes } from '../config/settings.ts';
import { signStandardWebhooks } from '../signing.ts';
import type { OutboundFetch } from '../outbound/guard.ts';
import { DeliveryFailure, retryAfterMs, type ChannelProvider } from './provider.ts';

/**
 * Webhooks signed with Standard Webhooks: webhook-id is the delivery id (stable across retries,
 * so receivers can drop duplicates), webhook-timestamp the attempt's time, webhook-signature
 * v1 HMAC-SHA256 with the endpoint's secret. Redirects are not followed; 410 Gone disables the
 * endpoint.
 */
export function webhookProvider(fetch: OutboundFetch, timeoutMs: number): ChannelProvider {
  return {
    name: 'webhook',
    host: null,
    async send({ delivery, message, endpoint }) {
      if (!endpoint) throw new DeliveryFailure('the webhook endpoint no longer exists', 'permanent');
      const body = String(message.body);
      const timestamp = Math.floor(Date.now() / 1000);
      const res = await fetch(endpoint.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'herald-webhooks/1',
          ...signStandardWebhooks(secretBytes(endpoint.secret), delivery.id, timestamp, body),
        },
        body,
        timeoutMs,
      });
      const answer = (await res.text().catch(() => '')).slice(0, 500);
      const response = `${res.status}${answer ? ` ${answer}` : ''}`;
      if (res.status >= 200 && res.status < 300) return { providerMessageId: delivery.id, response };
      if (res.status === 410) throw new DeliveryFailure('410 Gone: the receiver retired this endpoint; it is now disabled', 'permanent', { response, disableEndpoint: true });
      if (res.status >= 300 && res.status < 400) {
        throw new DeliveryFailure(`${res.status} redirect to ${res.headers.get('location') ?? '?'} not followed: update the endpoint URL`, 'permanent', { response });
      }
      if (res.status === 408 || res.status === 429 || res.status >= 500) {
        throw new DeliveryFailure(`HTTP ${res.status} from the receiver`, 'transient', { response, retryAfterMs: retryAfterMs(res.headers.get('retry-after')) });
      }
      throw new DeliveryFailure(`HTTP ${res.status} from the receiver`, 'permanent', { response });
    },
    classify: (err) =>
      (err as Error).name === 'OutboundRefusedError'
        ? new DeliveryFailure((err as Error).message, 'permanent')
        : new DeliveryFailure(`request failed: ${(err as Error).message}${(err as { cause?: Error }).cause ? ` (${(err as { cause: Error }).cause.message})` : ''}`, 'transient'),
  };
}
