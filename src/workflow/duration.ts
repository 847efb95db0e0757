import { ValidationError } from '../errors.ts';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;
/** The longest sleep or wait herald accepts: one year. */
export const MAX_DURATION_MS = 366 * 86_400_000;

/** Parses a Duration to milliseconds: seconds as a number, or "30s", "5m", "1h30m", "500ms". */
export function durationMs(d: number | string, what = 'duration'): number {
  let ms: number;
  if (typeof d === 'number') {
    ms = d * 1000;
  } else if (typeof d === 'string' && /^(\d+(?:\.\d+)?(ms|s|m|h|d))+$/.test(d.trim())) {
    ms = 0;
    for (const [, n, unit] of d.trim().matchAll(PART)) ms += Number(n) * UNIT_MS[unit!]!;
  } else {
    throw new ValidationError(`${what} must be seconds or a string like "30s", "5m", "2h", "7d"; got ${JSON.stringify(d)}`);
  }
  if (!Number.isFinite(ms) || ms < 0) throw new ValidationError(`${what} must be a non-negative duration`);
  if (ms > MAX_DURATION_MS) throw new ValidationError(`${what} must be at most 366d`);
  return Math.round(ms);
}

/** Parses a point in time: a Date, unix milliseconds, or an ISO 8601 string. */
export function instantMs(t: Date | number | string, what = 'time'): number {
  const ms = t instanceof Date ? t.getTime() : typeof t === 'number' ? t : Date.parse(t);
  if (!Number.isFinite(ms)) throw new ValidationError(`${what} must be a Date, unix milliseconds or an ISO 8601 string`);
  return ms;
}
