import { fmt, median } from './stats.ts';

/** What the soak keeps of each window to judge the run. */
export interface SoakWindow {
  /** Ack latency p99 (ms) of the requests answered in the window. */
  p99: number;
  /** The server's peak RSS in the window. */
  rssMb: number;
  /** Events waiting for their expansion at the window's end. */
  backlog: number;
}

/**
 * Stable means: the second half's windows look like the first half's (the first window, still
 * settling, left out) — peak RSS within 16 MB of the first half's, the median p99 within 1.5× (+2 ms
 * of timer noise) of the first half's, and no window ending with more than one second of offered
 * load waiting for its expansion.
 */
export function judgeStability(rows: SoakWindow[], rate: number): { ok: boolean; text: string } {
  const settled = rows.length > 2 ? rows.slice(1) : rows;
  const half = Math.floor(settled.length / 2);
  const first = settled.slice(0, Math.max(1, half));
  const second = settled.slice(Math.max(1, half));
  const rss1 = Math.max(...first.map((r) => r.rssMb));
  const rss2 = Math.max(...second.map((r) => r.rssMb));
  const p1 = median(first.map((r) => r.p99));
  const p2 = median(second.map((r) => r.p99));
  const worstBacklog = Math.max(...rows.map((r) => r.backlog));
  const rssOk = rss2 <= rss1 + 16;
  const latencyOk = p2 <= p1 * 1.5 + 2;
  const backlogOk = worstBacklog <= rate;
  const text =
    `peak RSS ${fmt(rss1)} → ${fmt(rss2)} MB (first → second half${rssOk ? '' : ', GREW'}), ` +
    `median window p99 ${fmt(p1)} → ${fmt(p2)} ms${latencyOk ? '' : ' (GREW)'}, ` +
    `largest backlog at a window's end ${fmt(worstBacklog)} events${backlogOk ? '' : ` (more than a second of load)`}`;
  return { ok: rssOk && latencyOk && backlogOk, text };
}
