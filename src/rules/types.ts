import type { z } from 'zod';
import type { Duration, WorkflowDefinition } from '../workflow/types.ts';

/** A recipient as the rules see it: a directory entry, or a bare id named in the ctx (storage reads it). */
export type { Recipient } from '../storage/queries/users.ts';

/** Who an event is for. Built with the selectors passed to `recipients(ctx, to)`. */
export type RecipientSelection =
  | { kind: 'users'; ids: unknown[]; except: unknown[] }
  | { kind: 'tenant'; tenantId: unknown; except: unknown[] };

export interface RecipientSelectors {
  /** Explicit user ids from the ctx. Empty, null and undefined entries are ignored. */
  users(ids: unknown, opts?: { except?: unknown }): RecipientSelection;
  /** Every directory user of the tenant, minus `except` (typically the actor). */
  tenant(tenantId: unknown, opts?: { except?: unknown }): RecipientSelection;
}

/** A Liquid template string; `ctx`, `recipient` and `event` are in scope. */
export type Template = string;

export interface InAppEffect<Ctx> {
  title: Template;
  body?: Template;
  /** The notification's type: info, success, warning, error… (a template too). */
  type?: Template;
  actionUrl?: Template;
  /** Metadata stored in `data` (jsonb). Defaults to `{}`. */
  data?: (ctx: Ctx) => Record<string, unknown>;
  /** Per-locale overrides of the text, chosen by the recipient's locale. */
  locales?: Record<string, Partial<Pick<InAppEffect<Ctx>, 'title' | 'body' | 'actionUrl'>>>;
}


/** Collapses the events of one kind within a window into one message ("5 new pendientes"). */
export interface DigestOptions {
  /** How long the first event waits for others to join it. */
  window: Duration;
  /** Groups digests by this name instead of the event type (several types in one digest). */
  key?: string;
}

interface EmailText {
  subject: Template;
  text: Template;
  html?: Template;
}

/** An email to each recipient with an address. */
export interface EmailEffect extends EmailText {
  /** Per-locale overrides, chosen by the recipient's locale. */
  locales?: Record<string, Partial<EmailText>>;
  /** With a digest, `count` and `items` (each `{ ctx, event }`) are in scope of `digest`'s templates. */
  digest?: DigestOptions & Partial<EmailText>;
}

/** A WhatsApp Cloud API message to each recipient with a phone number. */
export interface WhatsAppEffect {
  /** The approved template sent outside the 24-hour session window (and inside it without `text`). */
  template: {
    name: string;
    /** Template language code; defaults to the recipient's locale (or the config's default). */
    language?: Template;
    /** Body parameters, in order. */
    params?: Template[];
  };
  /** Free text, sent instead of the template while the recipient's session window is open. */
  text?: Template;
  digest?: DigestOptions & { params?: Template[]; text?: Template };
}

/** POSTs the event to every enabled webhook endpoint subscribed to it. */
export interface WebhookEffect<Ctx> {
  /** The `data` of the webhook body; defaults to `{ eventId, type, ctx }`. */
  payload?: (ctx: Ctx, event: { id: string; type: string }) => Record<string, unknown>;
}

export interface EventRule<Ctx = Record<string, unknown>> {
  description?: string;
  /** Preferences may address a category ('category:<name>') instead of each event type. */
  category?: string;
  /** Critical notifications bypass opt-outs and quiet hours (security alerts, password resets). */
  critical?: boolean;
  /** Validates the event's ctx; a failure is a 400 naming the field. */
  schema?: z.ZodType<Ctx>;
  /** Who gets this event's notifications. Omit for an event that only starts workflows. */
  recipients?: (ctx: Ctx, to: RecipientSelectors) => RecipientSelection | RecipientSelection[];
  inApp?: InAppEffect<Ctx>;
  email?: EmailEffect;
  whatsapp?: WhatsAppEffect;
  webhook?: true | WebhookEffect<Ctx>;
}

export type DeliveryChannel = 'email' | 'whatsapp' | 'webhook';

/** How deliveries outside the inbox behave (all optional). */
export interface DeliveryOptions {
  /** Attempts per delivery before it goes to the dead-letter list. Default 8. */
  maxAttempts?: number;
  /** At most N messages per recipient and channel per period, e.g. `{ email: '10/1h' }`; excess waits. */
  perRecipient?: Partial<Record<'email' | 'whatsapp', string>>;
  /** At most N requests per destination host per period, e.g. '20/1s' (webhooks, providers). */
  perHost?: string;
}

export interface HeraldConfig {
  /** Locale used when a recipient has none, or no variant matches theirs. */
  defaultLocale?: string;
  events: Record<string, EventRule<any>>;
  /** Retries and rate limits of email, WhatsApp and webhook deliveries. */
  delivery?: DeliveryOptions;
  /** Durable workflows, by name; `on` names the events that start them. */
  workflows?: Record<string, WorkflowDefinition<any>>;
}
