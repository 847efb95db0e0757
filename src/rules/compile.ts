import { ConfigError, ValidationError } from '../errors.ts';
import { compileWorkflows, type CompiledWorkflows } from '../workflow/compile.ts';
import { compileChannels, compileDelivery, type CompiledChannels, type CompiledDelivery } from './compile-channels.ts';
import { checkCtxPaths } from './ctx-paths.ts';
import { checkKnownKeys } from './known-keys.ts';
import { compileTemplate, type CompiledTemplate } from './templates.ts';
import type { EventRule, HeraldConfig } from './types.ts';

export interface CompiledText {
  title: CompiledTemplate;
  body?: CompiledTemplate;
  actionUrl?: CompiledTemplate;
}

export interface CompiledRule {
  type: string;
  source: EventRule<any>;
  inApp?: CompiledText & {
    notificationType: CompiledTemplate;
    locales: Map<string, CompiledText>;
  };
  /** Email, WhatsApp and webhook effects. */
  channels: CompiledChannels;
}

export interface CompiledRules {
  defaultLocale: string;
  rules: Map<string, CompiledRule>;
  workflows: CompiledWorkflows;
  delivery: CompiledDelivery;
}

export { ConfigError };

const EVENT_TYPE_RE = /^[A-Za-z0-9][\w.:-]{0,127}$/;

/** Checks the config's shape and parses every template, so mistakes surface at load time. */
export function compileRules(config: HeraldConfig): CompiledRules {
  if (!config || typeof config !== 'object' || !config.events || typeof config.events !== 'object') {
    throw new ConfigError('the config must export { events: { "<event.type>": rule, ... } }');
  }
  checkKnownKeys(config);
  const defaultLocale = config.defaultLocale ?? 'es';
  const rules = new Map<string, CompiledRule>();
  for (const [type, r] of Object.entries(config.events)) {
    const at = `events["${type}"]`;
    if (!EVENT_TYPE_RE.test(type)) throw new ConfigError(`${at}: event types are 1-128 characters of letters, digits, . _ : -`);
    if (typeof r !== 'object' || r === null) throw new ConfigError(`${at} must be a rule object`);
    if (r.recipients !== undefined && typeof r.recipients !== 'function') throw new ConfigError(`${at}.recipients must be a function (ctx, to) => to.users(...) | to.tenant(...)`);
    if (r.schema !== undefined && typeof (r.schema as { safeParse?: unknown }).safeParse !== 'function') {
      throw new ConfigError(`${at}.schema must be a zod schema`);
    }
    const compiled: CompiledRule = { type, source: r, channels: compileChannels(type, r, at) };
    if (r.inApp) {
      if (typeof r.inApp.title !== 'string') throw new ConfigError(`${at}.inApp.title must be a template string`);
      const text = (t: { title?: string; body?: string; actionUrl?: string }, where: string, base?: CompiledText) => ({
        title: t.title !== undefined ? compileTemplate(t.title, `${where}.title`) : base!.title,
        body: t.body !== undefined ? compileTemplate(t.body, `${where}.body`) : base?.body,
        actionUrl: t.actionUrl !== undefined ? compileTemplate(t.actionUrl, `${where}.actionUrl`) : base?.actionUrl,
      });
      const base = text(r.inApp, `${at}.inApp`);
      const locales = new Map<string, CompiledText>();
      for (const [locale, variant] of Object.entries(r.inApp.locales ?? {})) {
        locales.set(locale.toLowerCase(), text(variant, `${at}.inApp.locales.${locale}`, base));
      }
      compiled.inApp = {
        ...base,
        notificationType: compileTemplate(r.inApp.type ?? 'info', `${at}.inApp.type`),
        locales,
      };
    }
    checkCtxPaths(r.schema, templatesIn([compiled.inApp, compiled.channels]));
    rules.set(type, compiled);
  }
  const workflows = compileWorkflows(config.workflows, new Set(rules.keys()));
  // A config may be workflows only (started through the API), but an empty one is a mistake.
  if (rules.size === 0 && workflows.byName.size === 0) throw new ConfigError('the config declares no events and no workflows');
  return { defaultLocale, rules, workflows, delivery: compileDelivery(config.delivery) };
}

/** The compiled templates inside a compiled rule's parts (objects, arrays and maps of them). */
function templatesIn(value: unknown, found: CompiledTemplate[] = []): CompiledTemplate[] {
  if (value instanceof Map) for (const v of value.values()) templatesIn(v, found);
  else if (Array.isArray(value)) for (const v of value) templatesIn(v, found);
  else if (typeof value === 'object' && value !== null) {
    if (Array.isArray((value as CompiledTemplate).ctxPaths) && typeof (value as CompiledTemplate).render === 'function') found.push(value as CompiledTemplate);
    else for (const v of Object.values(value)) templatesIn(v, found);
  }
  return found;
}

/** Finds the rule for an event type, or a 400-worthy error naming the field. */
export function ruleFor(compiled: CompiledRules, type: string): CompiledRule {
  const r = compiled.rules.get(type);
  if (!r) throw new ValidationError(`unknown event type "${type}": no rule is registered for it`, 'type');
  return r;
}

/** Validates ctx against the rule's schema; the error names the first failing field. */
export function validateCtx(r: CompiledRule, ctx: unknown): Record<string, unknown> {
  const schema = r.source.schema;
  if (!schema) return (ctx ?? {}) as Record<string, unknown>;
  const result = schema.safeParse(ctx ?? {});
  if (result.success) return result.data as Record<string, unknown>;
  const issue = result.error.issues[0]!;
  const field = ['ctx', ...issue.path.map(String)].join('.');
  throw new ValidationError(`${field}: ${issue.message}`, field);
}
