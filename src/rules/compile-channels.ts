import { ConfigError } from '../errors.ts';
import { durationMs } from '../workflow/duration.ts';
import { compileTemplate, type CompiledTemplate } from './templates.ts';
import type { DeliveryOptions, DigestOptions, EventRule, HeraldConfig } from './types.ts';

export interface CompiledEmailText {
  subject: CompiledTemplate;
  text: CompiledTemplate;
  html?: CompiledTemplate;
}

export interface CompiledDigest {
  windowMs: number;
  /** Digests with the same key collapse together (default: the event type). */
  key: string;
}

export interface CompiledEmail {
  base: CompiledEmailText;
  locales: Map<string, CompiledEmailText>;
  digest?: CompiledDigest & { text: CompiledEmailText };
}

export interface CompiledWhatsApp {
  templateName: string;
  language?: CompiledTemplate;
  params: CompiledTemplate[];
  text?: CompiledTemplate;
  digest?: CompiledDigest & { params: CompiledTemplate[]; text?: CompiledTemplate };
}

export interface CompiledWebhook {
  payload?: (ctx: any, event: { id: string; type: string }) => Record<string, unknown>;
}

export interface CompiledChannels {
  email?: CompiledEmail;
  whatsapp?: CompiledWhatsApp;
  webhook?: CompiledWebhook;
}

export interface RateLimit {
  limit: number;
  periodMs: number;
  /** As written in the config, for messages. */
  source: string;
}

export interface CompiledDelivery {
  maxAttempts: number;
  perRecipient: Partial<Record<'email' | 'whatsapp', RateLimit>>;
  perHost?: RateLimit;
}

const WA_TEMPLATE_NAME = /^[a-z0-9_]{1,512}$/;

function digestOf(d: DigestOptions | undefined, type: string, at: string): CompiledDigest | undefined {
  if (d === undefined) return undefined;
  if (typeof d !== 'object' || d === null) throw new ConfigError(`${at}.digest must be { window: '10m', ... }`);
  let windowMs: number;
  try {
    windowMs = durationMs(d.window, `${at}.digest.window`);
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  if (windowMs < 1000) throw new ConfigError(`${at}.digest.window must be at least 1s`);
  if (d.key !== undefined && (typeof d.key !== 'string' || d.key.length === 0)) throw new ConfigError(`${at}.digest.key must be a non-empty string`);
  return { windowMs, key: d.key ?? type };
}

const tpl = (source: unknown, where: string): CompiledTemplate => {
  if (typeof source !== 'string') throw new ConfigError(`${where} must be a template string`);
  return compileTemplate(source, where);
};
const optTpl = (source: unknown, where: string) => (source === undefined ? undefined : tpl(source, where));

function emailText(t: Partial<{ subject: string; text: string; html: string }>, where: string, base?: CompiledEmailText): CompiledEmailText {
  return {
    subject: t.subject !== undefined ? tpl(t.subject, `${where}.subject`) : base!.subject,
    text: t.text !== undefined ? tpl(t.text, `${where}.text`) : base!.text,
    html: t.html !== undefined ? tpl(t.html, `${where}.html`) : base?.html,
  };
}

/** Parses every channel template of a rule at config load, so a broken one stops startup. */
export function compileChannels(type: string, r: EventRule<any>, at: string): CompiledChannels {
  const out: CompiledChannels = {};
  if (r.email !== undefined) {
    const e = r.email;
    if (typeof e !== 'object' || e === null) throw new ConfigError(`${at}.email must be { subject, text, html? }`);
    const base = emailText(e, `${at}.email`);
    const locales = new Map<string, CompiledEmailText>();
    for (const [locale, variant] of Object.entries(e.locales ?? {})) locales.set(locale.toLowerCase(), emailText(variant, `${at}.email.locales.${locale}`, base));
    const digest = digestOf(e.digest, type, `${at}.email`);
    out.email = { base, locales, digest: digest && { ...digest, text: emailText(e.digest!, `${at}.email.digest`, base) } };
  }
  if (r.whatsapp !== undefined) {
    const w = r.whatsapp;
    if (typeof w !== 'object' || w === null || typeof w.template !== 'object' || w.template === null) {
      throw new ConfigError(`${at}.whatsapp must be { template: { name, language?, params? }, text? }`);
    }
    if (typeof w.template.name !== 'string' || !WA_TEMPLATE_NAME.test(w.template.name)) {
      throw new ConfigError(`${at}.whatsapp.template.name must be an approved template's name (lowercase letters, digits and _)`);
    }
    const params = (list: unknown, where: string) => {
      if (list === undefined) return [];
      if (!Array.isArray(list)) throw new ConfigError(`${where} must be an array of template strings`);
      return list.map((p, i) => tpl(p, `${where}[${i}]`));
    };
    const digest = digestOf(w.digest, type, `${at}.whatsapp`);
    out.whatsapp = {
      templateName: w.template.name,
      language: optTpl(w.template.language, `${at}.whatsapp.template.language`),
      params: params(w.template.params, `${at}.whatsapp.template.params`),
      text: optTpl(w.text, `${at}.whatsapp.text`),
      digest: digest && {
        ...digest,
        params: w.digest!.params !== undefined ? params(w.digest!.params, `${at}.whatsapp.digest.params`) : params(w.template.params, `${at}.whatsapp.template.params`),
        text: optTpl(w.digest!.text, `${at}.whatsapp.digest.text`),
      },
    };
  }
  if (r.webhook !== undefined) {
    if (r.webhook === true) out.webhook = {};
    else if (typeof r.webhook === 'object' && r.webhook !== null) {
      if (r.webhook.payload !== undefined && typeof r.webhook.payload !== 'function') throw new ConfigError(`${at}.webhook.payload must be a function (ctx, event) => object`);
      out.webhook = { payload: r.webhook.payload };
    } else throw new ConfigError(`${at}.webhook must be true or { payload? }`);
  }
  if (r.category !== undefined && (typeof r.category !== 'string' || !/^[\w.:-]{1,64}$/.test(r.category))) {
    throw new ConfigError(`${at}.category must be 1-64 characters of letters, digits, . _ : -`);
  }
  if (r.critical !== undefined && typeof r.critical !== 'boolean') throw new ConfigError(`${at}.critical must be true or false`);
  return out;
}

/** '10/1h' → 10 per hour. */
export function parseRate(raw: unknown, where: string): RateLimit {
  const m = typeof raw === 'string' ? /^\s*(\d+)\s*\/\s*(\S+)\s*$/.exec(raw) : null;
  if (!m || Number(m[1]) < 1) throw new ConfigError(`${where} must look like "10/1h" (N per period), got ${JSON.stringify(raw)}`);
  let periodMs: number;
  try {
    periodMs = durationMs(m[2]!, where);
  } catch {
    throw new ConfigError(`${where}: the period of "${raw}" must be like 1s, 1m, 1h`);
  }
  if (periodMs < 1000) throw new ConfigError(`${where}: the period must be at least 1s`);
  return { limit: Number(m[1]), periodMs, source: raw as string };
}

export function compileDelivery(d: DeliveryOptions | undefined): CompiledDelivery {
  const at = 'delivery';
  const maxAttempts = d?.maxAttempts ?? 8;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1 || maxAttempts > 100) throw new ConfigError(`${at}.maxAttempts must be a whole number from 1 to 100`);
  const perRecipient: CompiledDelivery['perRecipient'] = {};
  for (const [channel, rate] of Object.entries(d?.perRecipient ?? {})) {
    if (channel !== 'email' && channel !== 'whatsapp') throw new ConfigError(`${at}.perRecipient.${channel}: only email and whatsapp have per-recipient limits`);
    perRecipient[channel] = parseRate(rate, `${at}.perRecipient.${channel}`);
  }
  return { maxAttempts, perRecipient, perHost: d?.perHost !== undefined ? parseRate(d.perHost, `${at}.perHost`) : undefined };
}

export type { HeraldConfig };
