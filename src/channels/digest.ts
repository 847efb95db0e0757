import type { CompiledRules } from '../rules/compile.ts';
import type { DeliveryRow } from '../storage/queries/deliveries.ts';
import { DeliveryFailure } from './provider.ts';

/**
 * The message a delivery sends. A digest that collected more than one event is rendered now, from
 * the rule's digest templates with `count` and `items` (each `{ eventId, type, ctx }`); anything
 * else was rendered when the event was processed.
 */
export async function finalMessage(rules: CompiledRules, d: DeliveryRow): Promise<Record<string, any>> {
  const m = d.message;
  if (!d.digest_key || d.digest_count <= 1 || d.channel === 'webhook') return m;
  const rule = rules.rules.get(d.event_type);
  const digest = d.channel === 'email' ? rule?.channels.email?.digest : rule?.channels.whatsapp?.digest;
  if (!rule || !digest) throw new DeliveryFailure(`the rule for ${d.event_type} no longer has a ${d.channel} digest; cannot render ${d.digest_count} collected events`, 'permanent');
  const items = (m.items ?? []) as { eventId: string; type: string; ctx: Record<string, unknown> }[];
  const scope = { count: d.digest_count, items, ctx: items[0]?.ctx ?? {}, recipient: m.recipient, event: { type: d.event_type } };
  try {
    if (d.channel === 'email') {
      const t = (digest as NonNullable<NonNullable<typeof rule.channels.email>['digest']>).text;
      return { ...m, subject: (await t.subject.render(scope)).trim(), text: await t.text.render(scope), html: t.html ? await t.html.render(scope) : null };
    }
    const w = digest as NonNullable<NonNullable<typeof rule.channels.whatsapp>['digest']>;
    return {
      ...m,
      template: { ...m.template, params: await Promise.all(w.params.map((p) => p.render(scope))) },
      text: w.text ? await w.text.render(scope) : m.text,
    };
  } catch (err) {
    throw new DeliveryFailure(`rendering the digest failed: ${(err as Error).message}`, 'permanent');
  }
}
