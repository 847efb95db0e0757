import { ConfigError } from '../errors.ts';
import { nearest } from './known-keys.ts';
import type { CompiledTemplate } from './templates.ts';

/**
 * Checks the `ctx.…` paths a rule's templates read against the rule's zod schema, at start: a
 * misspelt variable (`{{ ctx.ordreId }}`) would otherwise render as an empty string in every
 * notification. The paths come from liquidjs's own static analysis of each template (its global
 * variables, so loop variables and assigns are not mistaken for ctx), not from a pattern.
 *
 * Only what the schema states is refused: a key an object schema does not declare (unless it
 * passes unknown keys through), or a property of a string, number or boolean. Anything the schema
 * leaves open (any, unknown, records, unions whose options disagree, transforms) is accepted.
 */
export function checkCtxPaths(schema: unknown, templates: CompiledTemplate[]): void {
  if (!zodDef(schema)) return;
  for (const t of templates) {
    for (const path of t.ctxPaths) {
      const problem = walk(schema, path);
      if (problem) throw new ConfigError(`${t.where}: ${problem} (template: ${JSON.stringify(t.source.slice(0, 120))})`);
    }
  }
}

interface ZodDef {
  type: string;
  innerType?: unknown;
  in?: unknown;
  getter?: () => unknown;
  shape?: Record<string, unknown>;
  catchall?: unknown;
  element?: unknown;
  items?: unknown[];
  valueType?: unknown;
  options?: unknown[];
}
const zodDef = (schema: unknown): ZodDef | undefined => (schema as { _zod?: { def?: ZodDef } } | null)?._zod?.def;

/** Wrappers that do not change which keys a value has. */
const WRAPPERS = new Set(['optional', 'nullable', 'default', 'prefault', 'catch', 'readonly', 'nonoptional', 'success']);
/** What Liquid itself resolves on arrays and strings. */
const LIQUID_PROPERTIES = new Set(['size', 'first', 'last']);

/** Why `path` (after `ctx`) cannot be read from a value of `schema`, or undefined if it can. */
function walk(schema: unknown, path: (string | number)[]): string | undefined {
  let current = schema;
  for (let i = 0; i < path.length; i++) {
    const seg = path[i]!;
    const at = `ctx.${path.slice(0, i + 1).join('.')}`;
    let def = zodDef(current);
    for (let guard = 0; def && guard < 20; guard++) {
      if (WRAPPERS.has(def.type)) current = def.innerType;
      else if (def.type === 'pipe') current = def.in;
      else if (def.type === 'lazy' && def.getter) current = def.getter();
      else break;
      def = zodDef(current);
    }
    if (!def) return undefined;
    switch (def.type) {
      case 'object': {
        const shape = def.shape ?? {};
        if (typeof seg === 'string' && Object.hasOwn(shape, seg)) {
          current = shape[seg];
          continue;
        }
        const open = def.catchall !== undefined && zodDef(def.catchall)?.type !== 'never';
        if (open) return undefined;
        const near = typeof seg === 'string' ? nearest(seg, Object.keys(shape)) : undefined;
        return `${at} is not in the event's schema${near ? ` (did you mean ctx.${[...path.slice(0, i), near].join('.')}?)` : `; it has ${Object.keys(shape).join(', ') || 'no fields'}`}`;
      }
      case 'array':
        if (typeof seg === 'number') current = def.element;
        else if (LIQUID_PROPERTIES.has(seg)) {
          if (seg === 'size') return undefined;
          current = def.element;
        } else return `${at}: ctx.${path.slice(0, i).join('.')} is a list (index it, or use first, last or size)`;
        continue;
      case 'tuple':
        current = typeof seg === 'number' ? def.items?.[seg] : undefined;
        if (current === undefined) return undefined;
        continue;
      case 'string':
        if (seg === 'size' && i === path.length - 1) return undefined;
        return `${at}: ctx.${path.slice(0, i).join('.')} is a string and has no "${seg}"`;
      case 'number':
      case 'int':
      case 'bigint':
      case 'boolean':
      case 'enum':
      case 'literal':
      case 'date':
        return `${at}: ctx.${path.slice(0, i).join('.')} is a ${def.type} and has no "${seg}"`;
      default:
        return undefined; // any, unknown, record, union, intersection, …: the schema leaves it open
    }
  }
  return undefined;
}
