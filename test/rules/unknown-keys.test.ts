// herald-test: no database (runs once, not once per backend: scripts/test.mjs)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, compileRules } from '../../src/rules/compile.ts';
import { z } from '../../src/index.ts';

// A misspelt key in a config is a mistake herald can see: TypeScript does not catch it when the
// object is built apart from rule(), and a JavaScript config has no types at all. Ignored, it
// turns into a rule that silently does less (`recipents:` → nobody notified). It is refused at
// start, with the path and the nearest key herald knows.

const schema = z.object({ tenantId: z.string(), userId: z.string() });
const base = () => ({
  schema,
  recipients: (ctx: { userId: string }, to: { users(ids: unknown): unknown }) => to.users([ctx.userId]),
  inApp: { title: 'hi' },
});
const refused = (config: unknown, message: RegExp) =>
  assert.throws(() => compileRules(config as never), (e: unknown) => e instanceof ConfigError && message.test(e.message), String(message));

test('a misspelt rule key is refused with its path and a "did you mean"', () => {
  const { recipients, ...rest } = base();
  refused({ events: { 'a.b': { ...rest, recipents: recipients } } }, /^events\["a\.b"\]: unknown key "recipents" \(did you mean "recipients"\?\)/);
});

test('unknown keys are refused at every level: channels, locales, digests, templates, delivery, workflows, the config itself', () => {
  const rule = base();
  const cases: [unknown, RegExp][] = [
    [{ events: { e: { ...rule, inApp: { title: 'x', titel: 'y' } } } }, /events\["e"\]\.inApp: unknown key "titel" \(did you mean "title"\?\)/],
    [{ events: { e: { ...rule, inApp: { title: 'x', locales: { en: { tittle: 'y' } } } } } }, /events\["e"\]\.inApp\.locales\["en"\]: unknown key "tittle" \(did you mean "title"\?\)/],
    [{ events: { e: { ...rule, email: { subject: 's', text: 't', digest: { windw: '1h' } } } } }, /events\["e"\]\.email\.digest: unknown key "windw" \(did you mean "window"\?\)/],
    [{ events: { e: { ...rule, whatsapp: { template: { name: 'n', lang: 'es' } } } } }, /events\["e"\]\.whatsapp\.template: unknown key "lang"/],
    [{ events: { e: { ...rule, webhook: { paylod: () => ({}) } } } }, /events\["e"\]\.webhook: unknown key "paylod" \(did you mean "payload"\?\)/],
    [{ events: { e: rule }, delivery: { maxAtempts: 3 } }, /^delivery: unknown key "maxAtempts" \(did you mean "maxAttempts"\?\)/],
    [{ events: { e: rule }, workflows: { w: { run: async () => 1, retrys: 2 } } }, /^workflows\["w"\]: unknown key "retrys" \(did you mean "retries"\?\)/],
    [{ events: { e: rule }, defaultLocal: 'en' }, /^config: unknown key "defaultLocal" \(did you mean "defaultLocale"\?\)/],
    [{ events: { e: { ...rule, zzz: 1 } } }, /events\["e"\]: unknown key "zzz"; known keys: description, category, critical, schema, recipients, inApp, email, whatsapp, webhook$/],
  ];
  for (const [config, message] of cases) refused(config, message);
});

test('every key herald documents is accepted', () => {
  const compiled = compileRules({
    defaultLocale: 'en',
    delivery: { maxAttempts: 3, perRecipient: { email: '10/1h', whatsapp: '5/1h' }, perHost: '20/1s' },
    events: {
      full: {
        description: 'd', category: 'c', critical: false, schema,
        recipients: (ctx: { userId: string }, to: { users(ids: unknown): unknown }) => to.users([ctx.userId]),
        inApp: { title: 't', body: 'b', type: 'info', actionUrl: '/x', data: () => ({}), locales: { es: { title: 't', body: 'b', actionUrl: '/y' } } },
        email: { subject: 's', text: 't', html: '<p>h</p>', locales: { es: { subject: 's', text: 't', html: 'h' } }, digest: { window: '1h', key: 'k', subject: 's', text: 't', html: 'h' } },
        whatsapp: { template: { name: 'n', language: 'es', params: ['p'] }, text: 't', digest: { window: '1h', key: 'k', params: ['p'], text: 't' } },
        webhook: { payload: () => ({}) },
      },
      plain: { schema, webhook: true },
    },
    workflows: { w: { description: 'd', on: 'plain', schema, retries: 2, run: async () => 1 } },
  } as never);
  assert.equal(compiled.rules.size, 2);
});
