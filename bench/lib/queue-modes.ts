import type pg from 'pg';
import { closedLoop, openLoop, pcts, Tracker } from './drive.ts';
import type { ModeResult } from './result.ts';
import { now, sleep } from './stats.ts';
import { startMeter } from './usage.ts';

/**
 * One system that turns an enqueue (or an emit) into a handler call: graphile-worker, pg-boss and
 * herald all sit behind this, so the four queue modes below measure them the same way.
 */
export interface QueueSubject {
  name: string;
  /** A connection to the benchmark's database, used to find its backends' pids for CPU. */
  observer: pg.Client;
  tracker: Tracker;
  startWorker(): Promise<void>;
  stopWorker(): Promise<void>;
  /** Resolves after the durable acknowledgement; returns the id the handler will report. */
  enqueue(seq: number): Promise<string>;
  /** Bulk enqueue for the backlog drain (untimed), returns the ids. */
  enqueueMany(seqs: number[]): Promise<string[]>;
  /** Before each mode, with the worker stopped. */
  reset(): Promise<void>;
  /** Subject-specific checks once every handler started (e.g. herald's rows). */
  verify?(ids: string[]): Promise<{ verdict: string; extra?: Record<string, number> }>;
  close(): Promise<void>;
}

export interface QueueSizes {
  streamN: number;
  streamMs: number;
  stream: number[];
  paced: { rate: number; seconds: number }[];
  serialN: number;
  drainN: number;
  waitMs: number;
}

async function finish(
  s: QueueSubject,
  ids: string[],
  waitMs: number,
): Promise<{ verdict: string; extra?: Record<string, number> }> {
  const all = await s.tracker.waitCount(ids.length, waitMs);
  if (!all) return { verdict: `only ${s.tracker.started.size} of ${ids.length} handled within ${waitMs} ms` };
  if (s.tracker.duplicates) return { verdict: `${s.tracker.duplicates} duplicate handler calls` };
  if (s.tracker.started.size !== ids.length || new Set(ids).size !== ids.length) {
    return { verdict: `handled ${s.tracker.started.size} distinct ids for ${ids.length} enqueued` };
  }
  for (const id of ids) if (!s.tracker.started.has(id)) return { verdict: `id ${id} never handled` };
  return s.verify ? s.verify(ids) : { verdict: 'ok' };
}

function latencies(s: QueueSubject, ids: string[], t0: ArrayLike<number>): Float64Array {
  const out = new Float64Array(ids.length);
  ids.forEach((id, i) => (out[i] = (s.tracker.started.get(id) ?? Number.NaN) - t0[i]!));
  return out;
}

export async function streamMode(s: QueueSubject, concurrency: number, sz: QueueSizes): Promise<ModeResult> {
  await s.reset();
  s.tracker.reset();
  await s.startWorker();
  const ids: string[] = [];
  const t0 = new Float64Array(sz.streamN);
  const meter = await startMeter(s.observer);
  const start = now();
  const loop = await closedLoop(concurrency, sz.streamN, sz.streamMs, async (i) => {
    t0[i] = now();
    ids[i] = await s.enqueue(i);
  });
  const v = await finish(s, ids, sz.waitMs);
  const end = Math.max(s.tracker.lastStart(), start + loop.ms);
  const usage = await meter.stop();
  await s.stopWorker();
  const lat = pcts(latencies(s, ids, t0));
  const ack = pcts(loop.ack);
  return {
    subject: s.name,
    mode: `stream: ${concurrency} producers`,
    events: ids.length,
    rate: (ids.length * 1000) / (end - start),
    ...lat,
    ackP50: ack.p50,
    ackP99: ack.p99,
    usage,
    verified: v.verdict,
    extra: { ackRate: (ids.length * 1000) / loop.ms, ...v.extra },
  };
}

export async function pacedMode(s: QueueSubject, rate: number, seconds: number, sz: QueueSizes): Promise<ModeResult> {
  await s.reset();
  s.tracker.reset();
  await s.startWorker();
  const ids: string[] = [];
  const meter = await startMeter(s.observer);
  const open = await openLoop(rate, seconds, async (i) => {
    ids[i] = await s.enqueue(i);
  });
  await open.settled;
  const v = await finish(s, ids, sz.waitMs);
  const usage = await meter.stop();
  await s.stopWorker();
  const lastDue = open.due[open.issued - 1]!;
  const span = Math.max(s.tracker.lastStart(), lastDue) - open.due[0]!;
  const achieved = ((open.issued - 1) * 1000) / span;
  const lat = pcts(latencies(s, ids, open.due));
  const ack = pcts(open.ack);
  // Keeping up: every handler started within 1 s of its due time (no growing backlog).
  const kept = lat.p99 < 1000 && achieved >= 0.95 * rate;
  return {
    subject: s.name,
    mode: `paced: ${rate.toLocaleString('en-US')}/s for ${seconds} s`,
    events: ids.length,
    rate: achieved,
    offered: rate,
    ...lat,
    ackP50: ack.p50,
    ackP99: ack.p99,
    usage,
    verified: v.verdict,
    note: kept ? undefined : 'SATURATED',
    extra: { ...v.extra, saturated: kept ? 0 : 1 },
  };
}

export async function serialMode(s: QueueSubject, sz: QueueSizes): Promise<ModeResult> {
  await s.reset();
  s.tracker.reset();
  await s.startWorker();
  await sleep(100);
  const ids: string[] = [];
  const t0 = new Float64Array(sz.serialN);
  const meter = await startMeter(s.observer);
  for (let i = 0; i < sz.serialN; i++) {
    t0[i] = now();
    ids[i] = await s.enqueue(i);
    await s.tracker.waitFor(ids[i]!);
  }
  const v = await finish(s, ids, sz.waitMs);
  const usage = await meter.stop();
  await s.stopWorker();
  return {
    subject: s.name,
    mode: `serial: ${sz.serialN} × (enqueue → handler)`,
    events: ids.length,
    rate: (ids.length * 1000) / usage.wallMs,
    ...pcts(latencies(s, ids, t0)),
    usage,
    verified: v.verdict,
    extra: v.extra,
  };
}

export async function drainMode(s: QueueSubject, sz: QueueSizes): Promise<ModeResult> {
  await s.reset();
  s.tracker.reset();
  const seqs = Array.from({ length: sz.drainN }, (_, i) => i);
  const tb = now();
  const ids: string[] = [];
  for (let i = 0; i < seqs.length; i += 1000) ids.push(...(await s.enqueueMany(seqs.slice(i, i + 1000))));
  const bulkRate = (ids.length * 1000) / (now() - tb);
  const meter = await startMeter(s.observer);
  const start = now();
  await s.startWorker();
  const v = await finish(s, ids, sz.waitMs * 2);
  const end = s.tracker.lastStart();
  const usage = await meter.stop();
  await s.stopWorker();
  return {
    subject: s.name,
    mode: `drain: ${sz.drainN.toLocaleString('en-US')} queued jobs`,
    events: ids.length,
    rate: (ids.length * 1000) / (end - start),
    usage,
    verified: v.verdict,
    extra: { bulkRate, ...v.extra },
  };
}
