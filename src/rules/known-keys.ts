import { ConfigError } from '../errors.ts';
import type { WorkflowDefinition } from '../workflow/types.ts';
import type { DeliveryOptions, EmailEffect, EventRule, HeraldConfig, InAppEffect, WebhookEffect, WhatsAppEffect } from './types.ts';

/**
 * The keys a config may use, as a tree: `true` is a leaf (any value: a template, a function, a
 * zod schema); an object is walked when the value is a plain object; `{ each }` is a record of
 * names (events, locales, workflows) whose values are walked. Each level `satisfies` the keys of
 * its type in rules/types.ts or workflow/types.ts, so a key added to a type and not here (or
 * here and not there) fails to compile.
 */
type Shape = { readonly [key: string]: Shape | true | Each };
interface Each {
  readonly each: Shape;
}

/** Every key of T, no other. */
type Keys<T> = Record<keyof Required<T>, Shape | true | Each>;

const IN_APP_TEXT = { title: true, body: true, actionUrl: true } as const;
const EMAIL_TEXT = { subject: true, text: true, html: true } as const;
const DIGEST = { window: true, key: true } as const;
const IN_APP = { ...IN_APP_TEXT, type: true, data: true, locales: { each: IN_APP_TEXT } } satisfies Keys<InAppEffect<unknown>>;
const EMAIL = { ...EMAIL_TEXT, locales: { each: EMAIL_TEXT }, digest: { ...DIGEST, ...EMAIL_TEXT } } satisfies Keys<EmailEffect>;
const WHATSAPP = {
  template: { name: true, language: true, params: true } satisfies Keys<WhatsAppEffect['template']>,
  text: true,
  digest: { ...DIGEST, params: true, text: true },
} satisfies Keys<WhatsAppEffect>;
const RULE = {
  description: true, category: true, critical: true, schema: true, recipients: true,
  inApp: IN_APP, email: EMAIL, whatsapp: WHATSAPP, webhook: { payload: true } satisfies Keys<WebhookEffect<unknown>>,
} satisfies Keys<EventRule<unknown>>;
const WORKFLOW = { description: true, on: true, schema: true, retries: true, run: true } satisfies Keys<WorkflowDefinition<unknown>>;
const CONFIG: Shape = {
  defaultLocale: true,
  events: { each: RULE },
  delivery: { maxAttempts: true, perRecipient: { email: true, whatsapp: true }, perHost: true } satisfies Keys<DeliveryOptions>,
  workflows: { each: WORKFLOW },
} satisfies Keys<HeraldConfig>;

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null);
const isEach = (s: Shape | true | Each): s is Each => s !== true && 'each' in s && Object.keys(s).length === 1;

/** Refuses any key of `config` that herald does not know, with its path and the nearest known key. */
export function checkKnownKeys(config: unknown): void {
  walk(config, CONFIG, 'config');
}

function walk(value: unknown, shape: Shape, at: string): void {
  if (!isPlainObject(value)) return; // the shape of the value itself is compile's to check
  for (const [key, v] of Object.entries(value)) {
    const known = shape[key];
    if (known === undefined) throw unknownKey(key, Object.keys(shape), at);
    if (known === true) continue;
    if (isEach(known)) {
      if (isPlainObject(v)) for (const [name, item] of Object.entries(v)) walk(item, known.each, `${at === 'config' ? '' : `${at}.`}${key}["${name}"]`);
    } else {
      walk(v, known, at === 'config' ? key : `${at}.${key}`);
    }
  }
}

function unknownKey(key: string, known: string[], at: string): ConfigError {
  const near = nearest(key, known);
  return new ConfigError(`${at}: unknown key "${key}"${near ? ` (did you mean "${near}"?)` : `; known keys: ${known.join(', ')}`}`);
}

/** The known key within a small edit distance of `key` (a typo), if any. */
export function nearest(key: string, known: string[]): string | undefined {
  let best: { k: string; d: number } | undefined;
  for (const k of known) {
    const d = editDistance(key.toLowerCase(), k.toLowerCase());
    if (!best || d < best.d) best = { k, d };
  }
  return best && best.d <= Math.max(1, Math.floor(best.k.length / 3)) ? best.k : undefined;
}

/** Levenshtein distance, with a swap of two neighbours counted as one edit. */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}
