import type { Usage } from './usage.ts';

/** One measured mode of one subject in one run. */
export interface ModeResult {
  /** Groups rows in the table, e.g. "graphile-worker (batched)". */
  subject: string;
  /** e.g. "stream: 16 producers". */
  mode: string;
  /** Units of work completed and verified. */
  events: number;
  /** Per second: end to end for queues, acknowledged-and-committed for emits. */
  rate: number;
  /** Offered rate for paced modes. */
  offered?: number;
  /** Main latency (ms): enqueue/emit call → handler start, or request → response. */
  p50?: number;
  p99?: number;
  /** Acknowledgement latency (ms) of the enqueue/emit call itself, when distinct. */
  ackP50?: number;
  ackP99?: number;
  usage: Usage;
  /** 'ok', or what the correctness check found. */
  verified: string;
  note?: string;
  /** Extra numbers for the ratios and bars (e.g. rowsVisibleRate, notifies). */
  extra?: Record<string, number>;
}

export const cpuPerEventUs = (r: ModeResult) =>
  r.events > 0 ? ((r.usage.nodeCpuMs + r.usage.pgCpuMs) * 1000) / r.events : Number.NaN;
