import type { Settings } from '../config/settings.ts';
import type { OutboundFetch } from '../outbound/guard.ts';
import type { Providers } from './deliver.ts';
import { smtpProvider } from './email.ts';
import { outboxProvider } from './outbox.ts';
import { unsubscribeToken } from './unsubscribe.ts';
import { webhookProvider } from './webhook.ts';
import { whatsappCloudProvider } from './whatsapp.ts';

/**
 * Picks each channel's provider from the settings: SMTP when SMTP_URL is set, the WhatsApp Cloud
 * API when its token and phone number id are, and otherwise the development outbox — so a fresh
 * `herald dev` shows every message without sending anything anywhere.
 */
export function createProviders(
  settings: Readonly<Settings>,
  fetch: OutboundFetch,
  unsubscribeUrl: (d: { id: string; user_id: string | null; event_type: string }) => string | null,
): Providers {
  return {
    email: settings.smtpUrl ? smtpProvider({ smtpUrl: settings.smtpUrl, from: settings.emailFrom, unsubscribeUrl }) : outboxProvider('email'),
    whatsapp: settings.whatsapp ? whatsappCloudProvider({ ...settings.whatsapp, timeoutMs: settings.channelTimeoutMs }, fetch) : outboxProvider('whatsapp'),
    webhook: webhookProvider(fetch, settings.channelTimeoutMs),
  };
}

/** The unsubscribe scope of an event type: its rule's category when it has one. */
export const unsubscribeScope = (categories: Map<string, string | undefined>, type: string) => {
  const c = categories.get(type);
  return c ? `category:${c}` : type;
};

export function unsubscribeLinks(baseUrl: string, secret: Buffer | undefined, categories: Map<string, string | undefined>) {
  return (d: { user_id: string | null; event_type: string }): string | null => {
    if (!secret || !d.user_id) return null;
    const token = unsubscribeToken(secret, { userId: d.user_id, channel: 'email', scope: unsubscribeScope(categories, d.event_type) });
    return `${baseUrl}/api/unsubscribe?token=${token}`;
  };
}
