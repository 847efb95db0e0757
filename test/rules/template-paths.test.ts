// herald-test: no database (runs once, not once per backend: scripts/test.mjs)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, compileRules } from '../../src/rules/compile.ts';
import { z } from '../../src/index.ts';

// A template that reads a ctx field the event's schema does not have would render it as '' in
// every notification ("Order  received"). herald reads each template's variables with liquidjs's
// static analysis and checks the ctx paths against the schema at start.

const schema = z.object({
  tenantId: z.string(),
  orderId: z.string(),
  customer: z.object({ name: z.string(), email: z.string().optional() }).nullable(),
  lines: z.array(z.object({ sku: z.string(), qty: z.number() })),
  total: z.number(),
  extra: z.record(z.string(), z.unknown()).optional(),
  meta: z.object({ source: z.string() }).passthrough().optional(),
});
const withTemplates = (inApp: Record<string, unknown>, more: Record<string, unknown> = {}) => ({
  events: { 'order.placed': { schema, recipients: (_: unknown, to: { users(ids: unknown): unknown }) => to.users(['u']), inApp, ...more } },
});
const refused = (config: unknown, message: RegExp) =>
  assert.throws(() => compileRules(config as never), (e: unknown) => e instanceof ConfigError && message.test(e.message), String(message));

test('a misspelt ctx field is refused at start, naming the template, the path and the nearest field', () => {
  refused(
    withTemplates({ title: 'Order {{ ctx.ordreId }} received' }),
    /^events\["order\.placed"\]\.inApp\.title: ctx\.ordreId is not in the event's schema \(did you mean ctx\.orderId\?\)/,
  );
  refused(withTemplates({ title: 't', body: '{{ ctx.customer.nmae }}' }), /inApp\.body: ctx\.customer\.nmae is not in the event's schema \(did you mean ctx\.customer\.name\?\)/);
  refused(withTemplates({ title: 't', locales: { en: { title: '{{ ctx.totl }}' } } }), /inApp\.locales\.en\.title: ctx\.totl .*did you mean ctx\.total/);
  refused(withTemplates({ title: 't' }, { email: { subject: '{{ ctx.zzz }}', text: 'x' } }), /email\.subject: ctx\.zzz is not in the event's schema; it has tenantId, orderId, customer, lines, total, extra, meta/);
  refused(withTemplates({ title: '{{ ctx.total.amount }}' }), /ctx\.total\.amount: ctx\.total is a number and has no "amount"/);
  refused(withTemplates({ title: '{{ ctx.lines.sku }}' }), /ctx\.lines\.sku: ctx\.lines is a list/);
});

test('what the schema allows is accepted: nested fields, optional and nullable, list items, size/first, tags and filters, loops, open records and passthrough objects', () => {
  const compiled = compileRules(
    withTemplates({
      title: 'Order {{ ctx.orderId | upcase }} for {{ ctx.customer.name }}',
      body: '{% for l in ctx.lines %}{{ l.sku }} × {{ l.qty }}{% endfor %} ({{ ctx.lines.size }} lines, first {{ ctx.lines.first.sku }}, {{ ctx.lines[0].qty }})',
      actionUrl: '/orders/{{ ctx.orderId }}?src={{ ctx.meta.source }}&x={{ ctx.meta.anything }}&y={{ ctx.extra.whatever.deep }}',
      type: '{% if ctx.total > 100 %}warning{% else %}info{% endif %}',
    }, { email: { subject: '{{ ctx.customer.email }} {{ recipient.name }} {{ event.id }}', text: '{{ ctx.orderId.size }}' } }) as never,
  );
  assert.equal(compiled.rules.size, 1);
});

test('a rule without a schema is not checked (its ctx is whatever was sent)', () => {
  const compiled = compileRules({ events: { free: { recipients: (_: unknown, to: { users(ids: unknown): unknown }) => to.users(['u']), inApp: { title: '{{ ctx.anything.at.all }}' } } } } as never);
  assert.equal(compiled.rules.size, 1);
});
