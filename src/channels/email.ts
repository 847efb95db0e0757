import nodemailer from 'nodemailer';
import { DeliveryFailure, type ChannelProvider } from './provider.ts';

export interface EmailSettings {
  smtpUrl: string;
  from: string;
  /** The one-click unsubscribe URL for a delivery, or null when links are not configured. */
  unsubscribeUrl: (delivery: { id: string; user_id: string | null; event_type: string }) => string | null;
}

const HEADER_UNSAFE = /[\r\n\0]/;

/** The domain of the From address: Message-IDs are minted under it. */
export function fromDomain(from: string): string {
  const m = /@([^\s>]+)>?\s*$/.exec(from);
  return m?.[1]?.toLowerCase() ?? 'herald.localhost';
}

/** The Message-ID of a delivery: derived from its id, so every retry of one delivery carries the same. */
export const messageIdFor = (deliveryId: string, from: string) => `<${deliveryId}@${fromDomain(from)}>`;

/**
 * Email over SMTP (nodemailer). SMTP replies decide retries: 4xx is "try again later", 5xx is
 * final. Values that end up in headers are refused if they hold CR, LF or NUL (header injection).
 */
export function smtpProvider(s: EmailSettings): ChannelProvider {
  const transport = nodemailer.createTransport(s.smtpUrl, {
    connectionTimeout: 15_000,
    greetingTimeout: 15_000,
    socketTimeout: 60_000,
    // Stay on one connection per message: simple, and a stuck connection cannot hold others up.
    pool: false,
  } as never);
  let host: string | null = null;
  try {
    host = new URL(s.smtpUrl).host || null;
  } catch {
    /* nodemailer accepts other forms; rate limits then count per delivery host only */
  }
  return {
    name: 'smtp',
    host,
    async send({ delivery, message }) {
      const to = String(message.to ?? '');
      const subject = String(message.subject ?? '');
      for (const [name, value] of [['to', to], ['subject', subject], ['from', s.from]] as const) {
        if (HEADER_UNSAFE.test(value)) throw new DeliveryFailure(`refused: the ${name} header value contains CR, LF or NUL (header injection)`, 'permanent');
      }
      const unsubscribe = s.unsubscribeUrl(delivery);
      const info = await transport.sendMail({
        from: s.from,
        to,
        subject,
        text: String(message.text ?? ''),
        html: typeof message.html === 'string' && message.html !== '' ? message.html : undefined,
        messageId: messageIdFor(delivery.id, s.from),
        headers: unsubscribe ? { 'List-Unsubscribe': `<${unsubscribe}>`, 'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click' } : {},
        disableFileAccess: true,
        disableUrlAccess: true,
      });
      return { providerMessageId: info.messageId ?? messageIdFor(delivery.id, s.from), response: info.response ?? null };
    },
    classify(err) {
      const e = err as { responseCode?: number; response?: string; code?: string; message?: string };
      const response = e.response ?? undefined;
      if (typeof e.responseCode === 'number') {
        const kind = e.responseCode >= 500 ? 'permanent' : 'transient';
        return new DeliveryFailure(`SMTP ${e.responseCode}: ${response ?? e.message}`, kind, { response });
      }
      // No reply code: the connection failed (refused, timed out, TLS). The server may be back soon.
      return new DeliveryFailure(`SMTP ${e.code ?? 'error'}: ${e.message ?? String(err)}`, 'transient', { response });
    },
  };
}
