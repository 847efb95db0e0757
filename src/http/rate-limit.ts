import { HttpError } from '../errors.ts';

/**
 * A token bucket: `ratePerSecond` requests per second on average, bursts up to `burst`. In
 * memory, per process: it protects this process, it is not a cluster-wide quota.
 */
export function createRateLimiter(ratePerSecond: number, burst = ratePerSecond * 2, now = () => performance.now()) {
  let tokens = burst;
  let last = now();
  return {
    /** Takes one token or throws 429 with the headers QStash clients read. */
    take(): void {
      const t = now();
      tokens = Math.min(burst, tokens + ((t - last) / 1000) * ratePerSecond);
      last = t;
      if (tokens >= 1) {
        tokens -= 1;
        return;
      }
      const resetSeconds = Math.max(1, Math.ceil((1 - tokens) / ratePerSecond));
      throw new HttpError(429, `rate limit exceeded: at most ${ratePerSecond} requests per second (bursts of ${burst})`, {
        'Retry-After': String(resetSeconds),
        'Burst-RateLimit-Limit': String(burst),
        'Burst-RateLimit-Remaining': '0',
        'Burst-RateLimit-Reset': String(Math.ceil(Date.now() / 1000) + resetSeconds),
      });
    },
  };
}
