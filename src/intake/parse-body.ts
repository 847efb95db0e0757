import { ValidationError } from '../errors.ts';

const MAX_DEPTH = 32;

function depth(v: unknown, d = 0): number {
  if (d > MAX_DEPTH || v === null || typeof v !== 'object') return d;
  let max = d;
  for (const x of Object.values(v)) max = Math.max(max, depth(x, d + 1));
  return max;
}

/** Fewer brackets than MAX_DEPTH in the text cannot nest deeper (a byte scan, no allocation). */
function mayNestDeeper(raw: Buffer): boolean {
  let brackets = 0;
  for (let i = 0; i < raw.length; i++) {
    const b = raw[i];
    if ((b === 0x7b || b === 0x5b) && ++brackets > MAX_DEPTH) return true;
  }
  return false;
}

/** Parses a JSON object body, with errors that say what is wrong and no deep-nesting bombs. */
export function parseJsonObject(raw: Buffer): Record<string, unknown> {
  if (raw.length === 0) throw new ValidationError('request body is empty; expected a JSON object', 'body');
  const text = raw.toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ValidationError(`request body is not valid JSON: ${(err as Error).message}`, 'body');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ValidationError('request body must be a JSON object', 'body');
  }
  if (mayNestDeeper(raw) && depth(value) > MAX_DEPTH) throw new ValidationError(`request body nests deeper than ${MAX_DEPTH} levels`, 'body');
  // Only a \u escape can produce either; raw bytes cannot (invalid UTF-8 decodes to U+FFFD).
  if (text.includes('\\u')) checkStorable(value, '');
  return value as Record<string, unknown>;
}

const isWellFormed = (s: string) => (s as string & { isWellFormed(): boolean }).isWellFormed();

/**
 * Postgres text and jsonb cannot hold U+0000 or a lone UTF-16 surrogate: a body carrying either
 * would be accepted here and then fail to store (a 500). Refuse it up front, saying where.
 */
function checkStorable(v: unknown, path: string): void {
  if (typeof v === 'string') {
    if (v.includes('\u0000')) throw new ValidationError(`${path} contains a NUL character (\\u0000), which cannot be stored`, path);
    if (!isWellFormed(v)) throw new ValidationError(`${path} contains an unpaired UTF-16 surrogate, which cannot be stored`, path);
    return;
  }
  if (v === null || typeof v !== 'object') return;
  for (const [k, x] of Object.entries(v)) {
    const at = Array.isArray(v) ? `${path}[${k}]` : path ? `${path}.${k}` : k;
    checkStorable(k, `a key in ${path || 'the body'}`);
    checkStorable(x, at);
  }
}

/** The seed's emit body: `{ type: string, ctx?: object }`. */
export function parseEmitBody(raw: Buffer): { type: string; ctx: Record<string, unknown> } {
  const body = parseJsonObject(raw);
  if (body.type === undefined || body.type === null || body.type === '') {
    throw new ValidationError('type is required (the event type, e.g. "obra.completed")', 'type');
  }
  if (typeof body.type !== 'string') throw new ValidationError('type must be a string', 'type');
  if (body.ctx !== undefined && body.ctx !== null && (typeof body.ctx !== 'object' || Array.isArray(body.ctx))) {
    throw new ValidationError('ctx must be an object', 'ctx');
  }
  return { type: body.type, ctx: (body.ctx ?? {}) as Record<string, unknown> };
}
