/**
 * Capped exponential backoff with full jitter (AWS architecture blog): the delay is uniform in
 * [0, min(cap, base * 2^(attempt-1))], which spreads retries of a failing dependency apart.
 */
export function backoffMs(attempt: number, baseMs = 1_000, capMs = 10 * 60_000, random = Math.random): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.floor(random() * ceiling);
}
