import type { z } from 'zod';
import type { WorkflowDefinition } from '../workflow/types.ts';

/** A recipient as the rules see it: a directory entry, or a bare id named in the ctx. */
export interface Recipient {
  id: string;
  tenantId: string | null;
  email: string | null;
  phone: string | null;
  locale: string | null;
  timezone: string | null;
  name: string | null;
  /** false when the id came from the ctx and has no directory entry. */
  inDirectory: boolean;
}

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

export interface EventRule<Ctx = Record<string, unknown>> {
  description?: string;
  /** Validates the event's ctx; a failure is a 400 naming the field. */
  schema?: z.ZodType<Ctx>;
  /** Who gets this event's notifications. Omit for an event that only starts workflows. */
  recipients?: (ctx: Ctx, to: RecipientSelectors) => RecipientSelection | RecipientSelection[];
  inApp?: InAppEffect<Ctx>;
}

export interface HeraldConfig {
  /** Locale used when a recipient has none, or no variant matches theirs. */
  defaultLocale?: string;
  events: Record<string, EventRule<any>>;
  /** Durable workflows, by name; `on` names the events that start them. */
  workflows?: Record<string, WorkflowDefinition<any>>;
}
