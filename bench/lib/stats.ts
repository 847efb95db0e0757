/** Percentile of unsorted samples (nearest-rank on a sorted copy). NaN when empty. */
export function percentile(samples: ArrayLike<number>, p: number): number {
  const n = samples.length;
  if (n === 0) return Number.NaN;
  const sorted = Float64Array.from(samples).sort();
  const rank = Math.min(n - 1, Math.max(0, Math.ceil((p / 100) * n) - 1));
  return sorted[rank]!;
}

/** The middle value; with an even count the mean of the two middle ones (not the lower: for a p99, the better one). */
export function median(xs: number[]): number {
  const sorted = Float64Array.from(xs.filter((x) => Number.isFinite(x))).sort();
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  return n % 2 ? sorted[(n - 1) / 2]! : (sorted[n / 2 - 1]! + sorted[n / 2]!) / 2;
}
export const min = (xs: number[]) => Math.min(...xs.filter((x) => Number.isFinite(x)));
export const max = (xs: number[]) => Math.max(...xs.filter((x) => Number.isFinite(x)));

/** 12,345 / 1,234 / 12.3 / 1.23 / 0.123: three significant figures below 100. */
export function fmt(x: number | undefined): string {
  if (x === undefined || !Number.isFinite(x)) return '—';
  const a = Math.abs(x);
  if (a >= 100) return Math.round(x).toLocaleString('en-US');
  if (a >= 10) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  return x.toFixed(3);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Monotonic milliseconds. */
export const now = () => performance.now();
