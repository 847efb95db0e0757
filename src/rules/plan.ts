import { isUuid } from '../ids.ts';
import type { CompiledRule, CompiledRules, CompiledText } from './compile.ts';
import { planChannels, type DeliveryLookups, type PlannedDelivery, type SkippedEffect } from './plan-channels.ts';
import { resolveRecipients, selectors, type Directory, type RecipientDecision } from './recipients.ts';
import type { Recipient } from './types.ts';
import type { InAppNotification } from '../storage/queries/notifications.ts';

/** One in-app notification row to insert (its shape is storage's, which inserts it). */
export type { InAppNotification } from '../storage/queries/notifications.ts';

export interface Plan {
  eventId: string;
  type: string;
  recipients: RecipientDecision[];
  inApp: InAppNotification[];
  /** Email, WhatsApp and webhook messages, each with its decision (queued, held, digest). */
  deliveries: PlannedDelivery[];
  /** Effects that will not happen, with why: opted out, no address, no endpoint. */
  skipped: SkippedEffect[];
}

function pickText(rules: CompiledRules, inApp: NonNullable<CompiledRule['inApp']>, r: Recipient): CompiledText {
  const locale = (r.locale ?? rules.defaultLocale).toLowerCase();
  return inApp.locales.get(locale) ?? inApp.locales.get(locale.split('-')[0]!) ?? inApp;
}

const orNull = (s: string | undefined) => (s === undefined || s.trim() === '' ? null : s);

/**
 * Expands one validated event into its effects. Pure apart from directory reads: the same event
 * gives the same plan, which is what lets direct mode, workflow mode and the dry run share it.
 */
export async function planEvent(
  rules: CompiledRules,
  rule: CompiledRule,
  eventId: string,
  ctx: Record<string, unknown>,
  directory: Directory & DeliveryLookups,
): Promise<Plan> {
  const selected = rule.source.recipients?.(ctx, selectors) ?? [];
  const selections = Array.isArray(selected) ? selected : [selected];
  const { recipients, decisions } = await resolveRecipients(selections, directory);
  const ctxTenant = isUuid(ctx.tenantId) ? ctx.tenantId.toLowerCase() : null;
  const channels = await planChannels(rules, rule, { id: eventId, tenantId: ctxTenant }, ctx, recipients, directory);
  const inApp: InAppNotification[] = [];
  if (rule.inApp) {
    const data = rule.source.inApp?.data?.(ctx) ?? {};
    for (const r of recipients) {
      if (channels.inAppOptedOut.has(r.id)) continue;
      const text = pickText(rules, rule.inApp, r);
      const scope = { ctx, recipient: r, event: { id: eventId, type: rule.type } };
      inApp.push({
        userId: r.id,
        tenantId: r.tenantId ?? ctxTenant,
        title: await text.title.render(scope),
        body: orNull(await text.body?.render(scope)),
        type: (await rule.inApp.notificationType.render(scope)).trim() || 'info',
        actionUrl: orNull(await text.actionUrl?.render(scope)),
        data,
        dedupeKey: `${eventId}:in_app:${r.id}`,
      });
    }
  }
  return { eventId, type: rule.type, recipients: decisions, inApp, deliveries: channels.deliveries, skipped: channels.skipped };
}
