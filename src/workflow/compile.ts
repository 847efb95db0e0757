import { ConfigError } from '../errors.ts';
import type { WorkflowDefinition } from './types.ts';

export interface CompiledWorkflow {
  name: string;
  definition: WorkflowDefinition<any>;
  /** Attempts per execution before the run fails: retries + 1. */
  maxAttempts: number;
}

export interface CompiledWorkflows {
  byName: Map<string, CompiledWorkflow>;
  /** Event type → the workflows it starts. */
  byEvent: Map<string, CompiledWorkflow[]>;
}

const NAME_RE = /^[A-Za-z0-9][\w.:-]{0,127}$/;

/** Checks the workflows section; every `on` must name an event declared under `events`. */
export function compileWorkflows(
  workflows: Record<string, WorkflowDefinition<any>> | undefined,
  eventTypes: Set<string>,
): CompiledWorkflows {
  const byName = new Map<string, CompiledWorkflow>();
  const byEvent = new Map<string, CompiledWorkflow[]>();
  if (workflows === undefined) return { byName, byEvent };
  if (typeof workflows !== 'object' || workflows === null) throw new ConfigError('workflows must be an object of name → workflow');
  for (const [name, def] of Object.entries(workflows)) {
    const at = `workflows["${name}"]`;
    if (!NAME_RE.test(name)) throw new ConfigError(`${at}: workflow names are 1-128 characters of letters, digits, . _ : -`);
    if (typeof def?.run !== 'function') throw new ConfigError(`${at}.run must be a function (input, step, run) => …`);
    const retries = def.retries ?? 3;
    if (!Number.isInteger(retries) || retries < 0 || retries > 100) throw new ConfigError(`${at}.retries must be a whole number from 0 to 100`);
    if (def.schema !== undefined && typeof (def.schema as { safeParse?: unknown }).safeParse !== 'function') {
      throw new ConfigError(`${at}.schema must be a zod schema`);
    }
    const wf: CompiledWorkflow = { name, definition: def, maxAttempts: retries + 1 };
    byName.set(name, wf);
    const on = def.on === undefined ? [] : Array.isArray(def.on) ? def.on : [def.on];
    for (const type of on) {
      if (!eventTypes.has(type)) {
        throw new ConfigError(`${at}.on names "${type}", which is not declared under events (declare it, with a schema and no recipients if it only starts workflows)`);
      }
      byEvent.set(type, [...(byEvent.get(type) ?? []), wf]);
    }
  }
  return { byName, byEvent };
}
