import { createHmac, timingSafeEqual } from 'node:crypto';
import type { OutboundFetch } from '../outbound/guard.ts';
import { DeliveryFailure, retryAfterMs, type ChannelProvider } from './provider.ts';

export interface WhatsAppSettings {
  /** Base URL including the Graph API version, e.g. https://graph.facebook.com/v21.0 */
  apiUrl: string;
  token: string;
  phoneNumberId: string;
  timeoutMs: number;
}

/** Cloud API error codes that mean "slow down", not "never": retried with backoff. */
const TRANSIENT_CODES = new Set([130429, 131056]);

/** The Cloud API request for one message: session text when the window is open, else the template. */
export function whatsappRequest(message: Record<string, any>, sessionOpen: boolean): { body: Record<string, unknown>; kind: string } {
  if (sessionOpen && typeof message.text === 'string' && message.text !== '') {
    return {
      kind: 'session text',
      body: { messaging_product: 'whatsapp', recipient_type: 'individual', to: message.to, type: 'text', text: { preview_url: false, body: message.text } },
    };
  }
  const t = message.template as { name: string; language: string; params: string[] };
  return {
    kind: `template ${t.name} (${t.language})`,
    body: {
      messaging_product: 'whatsapp',
      recipient_type: 'individual',
      to: message.to,
      type: 'template',
      template: {
        name: t.name,
        language: { code: t.language },
        ...(t.params.length ? { components: [{ type: 'body', parameters: t.params.map((text) => ({ type: 'text', text })) }] } : {}),
      },
    },
  };
}

/** WhatsApp through Meta's Cloud API (or anything that speaks it at WHATSAPP_API_URL). */
export function whatsappCloudProvider(s: WhatsAppSettings, fetch: OutboundFetch): ChannelProvider {
  const base = s.apiUrl.replace(/\/+$/, '');
  const url = `${base}/${encodeURIComponent(s.phoneNumberId)}/messages`;
  return {
    name: 'whatsapp-cloud',
    host: new URL(base).host,
    async send({ message, sessionOpen }) {
      const { body, kind } = whatsappRequest(message, sessionOpen === true);
      const res = await fetch(url, {
        method: 'POST',
        headers: { authorization: `Bearer ${s.token}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
        timeoutMs: s.timeoutMs,
      });
      const text = await res.text();
      let json: any;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      if (res.ok) {
        const id = json?.messages?.[0]?.id;
        if (typeof id !== 'string') throw new DeliveryFailure(`the Cloud API answered ${res.status} without a message id`, 'transient', { response: text.slice(0, 500) });
        return { providerMessageId: id, response: `${res.status} ${kind}` };
      }
      const err = json?.error as { code?: number; message?: string; error_subcode?: number } | undefined;
      const what = `WhatsApp ${res.status}${err?.code !== undefined ? ` code ${err.code}` : ''}: ${err?.message ?? text.slice(0, 200)}`;
      const transient = res.status >= 500 || res.status === 429 || (err?.code !== undefined && TRANSIENT_CODES.has(err.code));
      throw new DeliveryFailure(what, transient ? 'transient' : 'permanent', { response: text.slice(0, 500), retryAfterMs: retryAfterMs(res.headers.get('retry-after')) });
    },
    classify: (err) =>
      (err as Error).name === 'OutboundRefusedError'
        ? new DeliveryFailure((err as Error).message, 'permanent')
        : new DeliveryFailure(`WhatsApp request failed: ${(err as Error).message}`, 'transient'),
  };
}

/** Meta signs webhook bodies with the app secret: X-Hub-Signature-256: sha256=<hex>. */
export function verifyMetaSignature(appSecret: string, rawBody: Buffer, header: string | undefined): boolean {
  const m = /^sha256=([0-9a-f]{64})$/i.exec(header?.trim() ?? '');
  if (!m) return false;
  const want = createHmac('sha256', appSecret).update(rawBody).digest();
  const given = Buffer.from(m[1]!, 'hex');
  return given.length === want.length && timingSafeEqual(given, want);
}

export interface WhatsAppStatus {
  providerMessageId: string;
  status: string;
  at: Date | null;
  detail: Record<string, unknown>;
}

/** Statuses (sent, delivered, read, failed) and inbound messages (which open the session window). */
export function parseWhatsAppWebhook(body: any): { statuses: WhatsAppStatus[]; inbound: { phone: string; at: Date }[] } {
  const statuses: WhatsAppStatus[] = [];
  const inbound: { phone: string; at: Date }[] = [];
  const ts = (v: unknown) => (typeof v === 'string' && /^\d+$/.test(v) ? new Date(Number(v) * 1000) : null);
  for (const entry of Array.isArray(body?.entry) ? body.entry : []) {
    for (const change of Array.isArray(entry?.changes) ? entry.changes : []) {
      const value = change?.value;
      for (const s of Array.isArray(value?.statuses) ? value.statuses : []) {
        if (typeof s?.id !== 'string' || typeof s?.status !== 'string') continue;
        statuses.push({ providerMessageId: s.id, status: s.status, at: ts(s.timestamp), detail: { recipient: s.recipient_id, errors: s.errors, conversation: s.conversation } });
      }
      for (const m of Array.isArray(value?.messages) ? value.messages : []) {
        if (typeof m?.from !== 'string') continue;
        inbound.push({ phone: m.from.startsWith('+') ? m.from : `+${m.from}`, at: ts(m.timestamp) ?? new Date() });
      }
    }
  }
  return { statuses, inbound };
}
