import { Liquid, type Template as LiquidTemplate } from 'liquidjs';

/**
 * Liquid is logic-less enough to be safe: no code execution, own properties only. The limits bound
 * what a template (or a hostile ctx) can cost: parse size, render time and output size.
 */
const engine = new Liquid({
  strictFilters: true,
  ownPropertyOnly: true,
  parseLimit: 64 * 1024,
  renderLimit: 200,
  memoryLimit: 1024 * 1024,
  cache: false,
});

export class TemplateError extends Error {
  override name = 'TemplateError';
}

export interface CompiledTemplate {
  source: string;
  /** Where it is in the config (`events["x"].inApp.title`), for errors. */
  where: string;
  /**
   * The `ctx` paths it reads (after `ctx`), from liquidjs's static analysis: its global variables'
   * literal leading segments (`ctx[var]` stops a path there). rules/ctx-paths.ts checks them.
   */
  ctxPaths: (string | number)[][];
  render(scope: Record<string, unknown>): Promise<string>;
}

/** Parses at config load, so a broken template stops startup instead of failing at send time. */
export function compileTemplate(source: string, where: string): CompiledTemplate {
  let parsed: LiquidTemplate[];
  try {
    parsed = engine.parse(source);
  } catch (err) {
    throw new TemplateError(`${where}: ${(err as Error).message}`);
  }
  const plain = plainTemplate(source);
  return {
    source,
    where,
    ctxPaths: ctxPathsOf(parsed),
    async render(scope) {
      if (plain) {
        const out = plain(scope);
        if (out !== undefined) return out;
      }
      try {
        // Synchronous rendering: herald's filters are all synchronous, so the async renderer's
        // promise per tag buys nothing (Liquid was ~9 % of Node's time in bench/profile.ts).
        return engine.renderSync(parsed, scope);
      } catch (err) {
        throw new TemplateError(`${where}: ${(err as Error).message}`);
      }
    },
  };
}

/**
 * The common template — literal text and `{{ a.b.c }}` — rendered without Liquid: a third of the
 * CPU an in-app row cost in bench/profile.ts went to Liquid's renderer. It returns what Liquid
 * would (own properties only; strings as they are, numbers and booleans through String, null and
 * missing as ''), and undefined — so Liquid renders it — whenever a value on the path is anything
 * else (an array, a function, an object as the output...). Templates with tags, filters,
 * whitespace control, literals or Liquid's special names are left to Liquid entirely.
 */
function plainTemplate(source: string): ((scope: Record<string, unknown>) => string | undefined) | undefined {
  const OUTPUT = /\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*\}\}/g;
  const texts: string[] = [];
  const paths: string[][] = [];
  let last = 0;
  for (const m of source.matchAll(OUTPUT)) {
    texts.push(source.slice(last, m.index));
    paths.push(m[1]!.split('.'));
    last = m.index! + m[0].length;
  }
  texts.push(source.slice(last));
  if (texts.some((t) => t.includes('{{') || t.includes('{%'))) return undefined;
  if (paths.some((p) => LIQUID_LITERALS.has(p[0]!) || p.some((seg) => LIQUID_SPECIAL_PROPERTIES.has(seg)))) return undefined;
  return (scope) => {
    let out = texts[0]!;
    for (let i = 0; i < paths.length; i++) {
      let value: unknown = scope;
      for (const seg of paths[i]!) {
        if (value === null || value === undefined) break;
        if (!isPlainObject(value)) return undefined;
        value = Object.hasOwn(value, seg) ? value[seg] : undefined;
      }
      if (typeof value === 'string') out += value;
      else if (typeof value === 'number' || typeof value === 'boolean') out += String(value);
      else if (value !== null && value !== undefined) return undefined;
      out += texts[i + 1]!;
    }
    return out;
  };
}

function ctxPathsOf(parsed: LiquidTemplate[]): (string | number)[][] {
  const paths: (string | number)[][] = [];
  for (const segments of engine.globalVariableSegmentsSync(parsed)) {
    if (segments[0] !== 'ctx') continue;
    const literal: (string | number)[] = [];
    for (const s of segments.slice(1)) {
      if (typeof s !== 'string' && typeof s !== 'number') break;
      literal.push(s);
    }
    if (literal.length > 0) paths.push(literal);
  }
  return paths;
}

const LIQUID_LITERALS = new Set(['true', 'false', 'nil', 'null', 'empty', 'blank']);
/** Names Liquid resolves itself on arrays and strings (`list.size`, `list.first`). */
const LIQUID_SPECIAL_PROPERTIES = new Set(['size', 'first', 'last']);

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}
