/** herald's public API for configs and embedding. */
export { defineConfig, rule, workflow } from './rules/define.ts';
export type { HeraldConfig, EventRule, InAppEffect, EmailEffect, WhatsAppEffect, WebhookEffect, DigestOptions, DeliveryOptions, Recipient, RecipientSelectors } from './rules/types.ts';
export type { Duration, NotifyResult, RunInfo, StepRunContext, WaitResult, WaiterView, WorkflowDefinition, WorkflowStep } from './workflow/types.ts';
export { NonRetriableError, RetryAfterError } from './errors.ts';
export { z } from 'zod';
