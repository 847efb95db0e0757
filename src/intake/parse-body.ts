import { ValidationError } from '../errors.ts';

const MAX_DEPTH = 32;

function depth(v: unknown, d = 0): number {
  if (d > MAX_DEPTH || v === null || typeof v !== 'object') return d;
  let max = d;
  for (const x of Object.values(v)) max = Math.max(max, depth(x, d + 1));
  return max;
}

/** Parses a JSON object body, with errors that say what is wrong and no deep-nesting bombs. */
export function parseJsonObject(raw: Buffer): Record<string, unknown> {
  if (raw.length === 0) throw new ValidationError('request body is empty; expected a JSON object', 'body');
  let value: unknown;
  try {
    value = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw new ValidationError(`request body is not valid JSON: ${(err as Error).message}`, 'body');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ValidationError('request body must be a JSON object', 'body');
  }
  if (depth(value) > MAX_DEPTH) throw new ValidationError(`request body nests deeper than ${MAX_DEPTH} levels`, 'body');
  return value as Record<string, unknown>;
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
