import { ValidationError } from '../errors.ts';

/**
 * Query-string and path parameters, checked before they reach SQL. JavaScript accepts text and
 * dates that Postgres refuses (a NUL byte in `text`; `Date.parse('12/31')`; a year past 294276):
 * unchecked, each became a 500 with a stack trace instead of a 400 naming the parameter. Every
 * route reads its free-text parameters, dates and cursors through these, so the rules live once.
 */

/** Long enough for any URL or id herald hands out; far below what would cost the database. */
export const MAX_TEXT_PARAM = 2048;

const isWellFormed = (s: string) => (s as string & { isWellFormed(): boolean }).isWellFormed();

/**
 * Free text (an event type, a workflow URL, a run or DLQ id): absent or empty is `undefined`; a
 * NUL character, an unpaired surrogate (neither can be stored or compared in Postgres text) or
 * more than `max` characters is a 400 naming `name`.
 */
export function textParam(raw: string | undefined, name: string, max = MAX_TEXT_PARAM): string | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (raw.includes('\u0000')) throw new ValidationError(`${name} must not contain a NUL character`, name);
  if (!isWellFormed(raw)) throw new ValidationError(`${name} must be valid Unicode text`, name);
  if (raw.length > max) throw new ValidationError(`${name} must be at most ${max} characters`, name);
  return raw;
}

/** A repeated and/or comma-separated list (`?ids=a,b&ids=c`), each item checked as `textParam`. */
export function textListParam(raws: (string | undefined)[], name: string, maxItems = 1000): string[] | undefined {
  const items = raws.flatMap((v) => (v ?? '').split(',')).filter(Boolean);
  if (items.length > maxItems) throw new ValidationError(`${name} may list at most ${maxItems} values`, name);
  for (const item of items) textParam(item, name);
  return items.length ? items : undefined;
}

/**
 * The largest instant a JavaScript Date holds (+275760-09-13); Postgres' timestamptz reaches
 * year 294276, so every such millisecond count converts.
 */
export const MAX_UNIX_MS = 8_640_000_000_000_000;

/** Unix milliseconds (QStash's `fromDate`/`toDate`): whole, non-negative, within a Date's range. */
export function unixMsParam(raw: string | undefined, name: string): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d{1,16}$/.test(raw) || Number(raw) > MAX_UNIX_MS) {
    throw new ValidationError(`${name} must be unix milliseconds, a whole number from 0 to ${MAX_UNIX_MS}`, name);
  }
  return Number(raw);
}

/**
 * A whole number in [min, max] (counts, statuses); absent or empty is `undefined`. Digits only, so
 * '1e3', '-1', '0x10' and '1.5' are refused rather than guessed at.
 */
export function intParam(raw: string | undefined, name: string, min: number, max: number): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d{1,16}$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new ValidationError(`${name} must be a whole number from ${min} to ${max}`, name);
  }
  return Number(raw);
}

/**
 * The timestamp half of every keyset cursor herald issues: exactly what
 * `to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')` writes, a real
 * calendar date. Anything looser ('2020', '12/31', '+275760-…') is what Date.parse accepts and
 * Postgres does not.
 */
const CURSOR_TS = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,6})?Z$/;

export function isCursorTimestamp(s: unknown): s is string {
  if (typeof s !== 'string') return false;
  const m = CURSOR_TS.exec(s);
  if (!m) return false;
  const [year, month, day, hour, minute, second] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  return year >= 1 && month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth && hour <= 23 && minute <= 59 && second <= 59;
}

/**
 * A keyset cursor, base64url of the JSON `[timestamp, id]` that herald wrote; `isId` checks the
 * id half (a uuid, a run id). Anything else is a 400 naming `name`.
 */
export function cursorParam(raw: string | undefined, isId: (id: unknown) => boolean, name = 'cursor'): { createdAt: string; id: string } | undefined {
  if (raw === undefined || raw === '') return undefined;
  let value: unknown;
  try {
    value = raw.length <= MAX_TEXT_PARAM ? JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) : undefined;
  } catch {
    /* refused below */
  }
  if (Array.isArray(value) && value.length === 2 && isCursorTimestamp(value[0]) && typeof value[1] === 'string' && isId(value[1])) {
    return { createdAt: value[0], id: value[1] };
  }
  throw new ValidationError(`${name} is not valid; pass the cursor of the previous page`, name);
}

/** An id of a text column (run ids, DLQ ids) as a cursor's id half: storable text, bounded. */
export const isTextId = (id: unknown): boolean => typeof id === 'string' && id.length > 0 && id.length <= 256 && !id.includes('\u0000') && isWellFormed(id);
