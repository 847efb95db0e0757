import type { CompiledRule, CompiledRules } from './compile.ts';
import type { CompiledEmailText } from './compile-channels.ts';
import { allowedBy, describePreference, type Preference } from './preferences.ts';
import type { DeliveryChannel, Recipient } from './types.ts';
import { toE164 } from './phone.ts';
import type { PlannedDelivery } from '../storage/queries/deliveries.ts';

/** What the channel planner reads from storage (implemented on storage, faked by nothing). */
export interface DeliveryLookups {
  preferences(userIds: string[]): Promise<(Preference & { user_id: string })[]>;
  /** Users inside their quiet hours now, with when the window ends (database clock). */
  quietHolds(userIds: string[]): Promise<Map<string, Date>>;
  webhookEndpoints(type: string, tenantId: string | null): Promise<{ id: string; url: string }[]>;
}

/** One email, WhatsApp message or webhook POST to create (its shape is storage's, which inserts it). */
export type { PlannedDelivery } from '../storage/queries/deliveries.ts';

/** An effect the rules declared that will not happen, and why (shown by the dry run). */
export interface SkippedEffect {
  channel: 'in_app' | DeliveryChannel;
  userId?: string;
  reason: string;
}

export interface ChannelPlan {
  deliveries: PlannedDelivery[];
  skipped: SkippedEffect[];
  /** Recipients who opted out of the inbox for this event. */
  inAppOptedOut: Set<string>;
}

const recipientView = (r: Recipient) => ({ id: r.id, name: r.name, locale: r.locale, email: r.email, phone: r.phone, timezone: r.timezone });

function pickEmailText(rules: CompiledRules, email: NonNullable<CompiledRule['channels']['email']>, r: Recipient): { text: CompiledEmailText; locale: string } {
  const locale = (r.locale ?? rules.defaultLocale).toLowerCase();
  const text = email.locales.get(locale) ?? email.locales.get(locale.split('-')[0]!) ?? email.base;
  return { text, locale };
}

/**
 * Expands a rule's email, WhatsApp and webhook effects for the resolved recipients, applying
 * preferences (critical rules bypass them), quiet hours and digests. Every effect either becomes
 * a planned delivery or is listed as skipped with its reason.
 */
export async function planChannels(
  rules: CompiledRules,
  rule: CompiledRule,
  event: { id: string; tenantId: string | null },
  ctx: Record<string, unknown>,
  recipients: Recipient[],
  lookups: DeliveryLookups,
): Promise<ChannelPlan> {
  const { email, whatsapp, webhook } = rule.channels;
  const category = rule.source.category as string | undefined;
  const critical = rule.source.critical === true;
  const out: ChannelPlan = { deliveries: [], skipped: [], inAppOptedOut: new Set() };
  const ids = recipients.map((r) => r.id);
  const wantsPerUser = rule.inApp || email || whatsapp;
  const prefs = wantsPerUser && ids.length ? await lookups.preferences(ids) : [];
  const prefsOf = new Map<string, Preference[]>();
  for (const p of prefs) prefsOf.set(p.user_id, [...(prefsOf.get(p.user_id) ?? []), p]);
  const holds = (email || whatsapp) && !critical && ids.length ? await lookups.quietHolds(ids) : new Map<string, Date>();

  const allowed = (userId: string, channel: 'in_app' | 'email' | 'whatsapp') => {
    const verdict = allowedBy(prefsOf.get(userId) ?? [], channel, rule.type, category);
    if (verdict.allowed) return true;
    if (critical) return true;
    out.skipped.push({ channel, userId, reason: `opted out (${describePreference(verdict.by!)})` });
    return false;
  };

  if (rule.inApp) for (const r of recipients) if (!allowed(r.id, 'in_app')) out.inAppOptedOut.add(r.id);

  const eventView = { id: event.id, type: rule.type };
  const timing = (r: Recipient, digest: { windowMs: number; key: string } | undefined, channel: DeliveryChannel) => {
    const heldUntil = holds.get(r.id) ?? null;
    if (digest) {
      return {
        decision: 'digest' as const,
        reason: `digest: collects ${rule.type} events for ${Math.round(digest.windowMs / 1000)} s${heldUntil ? `, then waits for the end of quiet hours (${heldUntil.toISOString()})` : ''}`,
        heldUntil,
        digest: { key: `${channel}:${r.id}:${digest.key}`, windowMs: digest.windowMs },
      };
    }
    if (heldUntil) return { decision: 'held' as const, reason: `quiet hours until ${heldUntil.toISOString()}`, heldUntil, digest: null };
    return { decision: 'queued' as const, reason: critical ? 'critical: sent now' : 'sent now', heldUntil: null, digest: null };
  };

  for (const r of recipients) {
    const scope = { ctx, recipient: r, event: eventView };
    const base = { userId: r.id, tenantId: r.tenantId ?? event.tenantId, endpointId: null, destinationHost: null };
    if (email && allowed(r.id, 'email')) {
      const to = r.email?.trim();
      if (!to) out.skipped.push({ channel: 'email', userId: r.id, reason: 'no email address in the directory' });
      else {
        const { text, locale } = pickEmailText(rules, email, r);
        out.deliveries.push({
          ...base,
          channel: 'email',
          destination: to,
          dedupeKey: `${event.id}:email:${r.id}`,
          message: {
            to,
            locale,
            subject: (await text.subject.render(scope)).trim(),
            text: await text.text.render(scope),
            html: text.html ? await text.html.render(scope) : null,
            recipient: recipientView(r),
            ...(email.digest ? { items: [{ eventId: event.id, type: rule.type, ctx }] } : {}),
          },
          ...timing(r, email.digest, 'email'),
        });
      }
    }
    if (whatsapp && allowed(r.id, 'whatsapp')) {
      const phone = toE164(r.phone);
      if (!phone) {
        out.skipped.push({
          channel: 'whatsapp',
          userId: r.id,
          reason: r.phone ? `phone "${r.phone}" is not in E.164 form (+<country code><number>)` : 'no phone number in the directory',
        });
      } else {
        const language = (whatsapp.language ? (await whatsapp.language.render(scope)).trim() : '') || (r.locale ?? rules.defaultLocale);
        out.deliveries.push({
          ...base,
          channel: 'whatsapp',
          destination: phone,
          dedupeKey: `${event.id}:whatsapp:${r.id}`,
          message: {
            to: phone,
            template: { name: whatsapp.templateName, language: language.replace('-', '_'), params: await Promise.all(whatsapp.params.map((p) => p.render(scope))) },
            text: whatsapp.text ? await whatsapp.text.render(scope) : null,
            recipient: recipientView(r),
            ...(whatsapp.digest ? { items: [{ eventId: event.id, type: rule.type, ctx }] } : {}),
          },
          ...timing(r, whatsapp.digest, 'whatsapp'),
        });
      }
    }
  }

  if (webhook) {
    const endpoints = await lookups.webhookEndpoints(rule.type, event.tenantId);
    if (endpoints.length === 0) out.skipped.push({ channel: 'webhook', reason: 'no enabled webhook endpoint is subscribed to this event' });
    const data = webhook.payload ? webhook.payload(ctx, eventView) : { eventId: event.id, type: rule.type, ctx };
    const timestamp = new Date().toISOString();
    for (const ep of endpoints) {
      out.deliveries.push({
        channel: 'webhook',
        userId: null,
        tenantId: event.tenantId,
        endpointId: ep.id,
        destination: ep.url,
        destinationHost: hostOf(ep.url),
        dedupeKey: `${event.id}:webhook:${ep.id}`,
        // The exact bytes are fixed now, so every retry sends the same body under the same webhook-id.
        message: { body: JSON.stringify({ type: rule.type, timestamp, data }) },
        decision: 'queued',
        reason: 'subscribed endpoint',
        heldUntil: null,
        digest: null,
      });
    }
  }
  return out;
}

export function hostOf(url: string): string | null {
  try {
    return new URL(url).host.toLowerCase();
  } catch {
    return null;
  }
}
