/**
 * Capped exponential backoff with full jitter (AWS architecture blog): the delay is uniform in
 * [0, min(cap, base * 2^(attempt-1))], which spreads retries of a failing dependency apart.
 */
export function backoffMs(attempt: number, baseMs = 1_000, capMs = 10 * 60_000, random = Math.random): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.floor(random() * ceiling);
}

/**
 * How long a loop waits before it tries the database again after `failures` failures in a row:
 * capped exponential with "equal jitter", uniform in [ceiling / 2, ceiling] where ceiling =
 * min(cap, base * 2^(failures-1)). Never less than half the base, unlike full jitter: these are
 * the worker's own loops (claims, batch lanes, maintenance) waiting out an outage, and a delay
 * near zero would only make them spin; the jitter still spreads the processes of a fleet apart.
 */
export function retryDelayMs(failures: number, opts: { baseMs: number; capMs: number }, random = Math.random): number {
  const ceiling = Math.min(opts.capMs, opts.baseMs * 2 ** Math.max(0, failures - 1));
  return Math.floor(ceiling / 2 + (random() * ceiling) / 2);
}
