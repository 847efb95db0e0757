import type { DeliveryRow } from '../storage/queries/deliveries.ts';

/**
 * A failed send, classified: transient failures are retried with backoff (or after the delay the
 * provider asked for), permanent ones go to the dead-letter list at once.
 */
export class DeliveryFailure extends Error {
  override name = 'DeliveryFailure';
  constructor(
    message: string,
    readonly kind: 'transient' | 'permanent',
    readonly details: { retryAfterMs?: number; response?: string; disableEndpoint?: boolean } = {},
  ) {
    super(message);
  }
}

/** What a provider needs to send one delivery. `message` is final (digests already rendered). */
export interface SendInput {
  delivery: DeliveryRow;
  message: Record<string, any>;
  attempt: number;
  /** Webhooks: the endpoint's URL and signing secret. */
  endpoint?: { id: string; url: string; secret: string };
  /** WhatsApp: whether the 24-hour session window is open (free text allowed). */
  sessionOpen?: boolean;
}

export interface SendResult {
  providerMessageId: string | null;
  /** The provider's answer, for the attempt log (SMTP reply, HTTP status…). */
  response: string | null;
}

/** One way of sending a channel's messages. The registry picks one per channel from settings. */
export interface ChannelProvider {
  /** Stored on the delivery: smtp, whatsapp-cloud, webhook, outbox. */
  readonly name: string;
  /** The host rate limits count against, when it is the same for every message (SMTP, Graph API). */
  readonly host: string | null;
  send(input: SendInput): Promise<SendResult>;
  /** Turns an unexpected error (network, timeout) into a classified failure. */
  classify(err: unknown): DeliveryFailure;
}

/** Retry-After: delta-seconds or an HTTP date. Capped at an hour; garbage is ignored. */
export function retryAfterMs(header: string | null, nowMs = Date.now()): number | undefined {
  if (!header) return undefined;
  const v = header.trim();
  let ms: number;
  if (/^\d+$/.test(v)) ms = Number(v) * 1000;
  else {
    const at = Date.parse(v);
    if (Number.isNaN(at)) return undefined;
    ms = at - nowMs;
  }
  return Math.min(Math.max(0, ms), 3_600_000);
}
