/** herald's public API for configs and embedding. */
export { defineConfig, rule } from './rules/define.ts';
export type { HeraldConfig, EventRule, InAppEffect, Recipient, RecipientSelectors } from './rules/types.ts';
export { z } from 'zod';
