import type { WorkflowDefinition } from '../workflow/types.ts';
import type { EventRule, HeraldConfig } from './types.ts';

/**
 * Declares herald's rules with full type inference of each event's ctx from its schema.
 * @example
 * export default defineConfig({ events: { 'obra.completed': rule({ schema, recipients, inApp }) } });
 */
export function defineConfig(config: HeraldConfig): HeraldConfig {
  return config;
}

/** One event's rule; infers `ctx` in `recipients`, `inApp.data` from `schema`. */
export function rule<Ctx>(r: EventRule<Ctx>): EventRule<Ctx> {
  return r;
}

/** One durable workflow; infers `input` from `schema` (or give the type: workflow<MyInput>({...})). */
export function workflow<Input = Record<string, unknown>>(w: WorkflowDefinition<Input>): WorkflowDefinition<Input> {
  return w;
}
