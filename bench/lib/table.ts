import { cpuPerEventUs, type ModeResult } from './result.ts';
import { fmt, max, median, min } from './stats.ts';
import { foreignPct } from './usage.ts';

/** Every run of one (subject, mode), summarised: medians and ranges across runs. */
export interface Summary {
  subject: string;
  mode: string;
  runs: number;
  rate: number;
  rateMin: number;
  rateMax: number;
  offered?: number;
  p50: number;
  p99: number;
  p99Min: number;
  p99Max: number;
  ackP50: number;
  ackP99: number;
  cpuUs: number;
  nodeUs: number;
  pgUs: number;
  rssMb: number;
  boxPct: number;
  foreignPct: number;
  verified: string;
  notes: string[];
  extra: Record<string, number>;
}

const field = (rs: ModeResult[], f: (r: ModeResult) => number | undefined) => rs.map((r) => f(r) ?? Number.NaN);

export function summarise(results: ModeResult[]): Summary[] {
  const groups = new Map<string, ModeResult[]>();
  for (const r of results) {
    const k = `${r.subject}\u0000${r.mode}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  return [...groups.values()].map((rs) => {
    const rates = field(rs, (r) => r.rate);
    const p99s = field(rs, (r) => r.p99);
    const bad = rs.find((r) => !r.verified.startsWith('ok'));
    const extraKeys = new Set(rs.flatMap((r) => Object.keys(r.extra ?? {})));
    return {
      subject: rs[0]!.subject,
      mode: rs[0]!.mode,
      runs: rs.length,
      rate: median(rates),
      rateMin: min(rates),
      rateMax: max(rates),
      offered: rs[0]!.offered,
      p50: median(field(rs, (r) => r.p50)),
      p99: median(p99s),
      p99Min: min(p99s),
      p99Max: max(p99s),
      ackP50: median(field(rs, (r) => r.ackP50)),
      ackP99: median(field(rs, (r) => r.ackP99)),
      cpuUs: median(rs.map(cpuPerEventUs)),
      nodeUs: median(rs.map((r) => (r.usage.nodeCpuMs * 1000) / r.events)),
      pgUs: median(rs.map((r) => (r.usage.pgCpuMs * 1000) / r.events)),
      rssMb: max(rs.map((r) => r.usage.peakRssMb)),
      boxPct: median(rs.map((r) => r.usage.boxBusyPct)),
      foreignPct: max(rs.map((r) => foreignPct(r.usage))),
      // A result that checked less than all its rows says so in its own "ok (…)", shown as it is.
      verified: bad?.verified ?? rs.find((r) => r.verified !== 'ok')?.verified ?? `ok (${rs.reduce((n, r) => n + r.events, 0).toLocaleString('en-US')} checked)`,
      notes: [...new Set(rs.map((r) => r.note).filter((n): n is string => !!n))],
      extra: Object.fromEntries([...extraKeys].map((k) => [k, median(field(rs, (r) => r.extra?.[k]))])),
    };
  });
}

/** Per-run details kept in `extra`, shown (as medians) next to the throughput. */
function details(s: Summary): string[] {
  const e = s.extra;
  const out: string[] = [];
  if (e.bulkRate !== undefined) out.push(`bulk enqueue ${fmt(e.bulkRate)}/s`);
  if (e.notifyMs !== undefined) out.push(`notify call ${fmt(e.notifyMs)} ms, all runs resumed and completed in ${fmt(e.allMs)} ms`);
  if (e.parkedRssMb !== undefined) out.push(`RSS with the runs parked ${fmt(e.parkedRssMb)} MB`);
  if (e.ackRate !== undefined && s.subject.startsWith('herald')) out.push(`acks ${fmt(e.ackRate)}/s`);
  if (e.notifiesPerEvent !== undefined) out.push(`${fmt(e.notifiesPerEvent)} NOTIFY per event`);
  if (e.backlogEvents !== undefined) out.push(`backlog at the window's end ${fmt(e.backlogEvents)} events`);
  if (e.handlingP99Ms !== undefined) out.push(`inside the server p50 ${fmt(e.handlingP50Ms)} / p99 ${fmt(e.handlingP99Ms)} ms`);
  if (e.loopDelayMaxMs !== undefined) out.push(`server event-loop delay p99 ${fmt(e.loopDelayP99Ms)} / max ${fmt(e.loopDelayMaxMs)} ms`);
  if (e.shedRate !== undefined) {
    out.push(`shed ${fmt(e.shedRate)}/s with 429 (their p99 ${fmt(e.shedP99Ms)} ms)`);
    out.push(`accepted max ${fmt(e.acceptedMaxMs)} ms, p99 ${fmt(s.p99 / e.unloadedP99Ms!)}× the unloaded p99 (${fmt(e.unloadedP99Ms)} ms)`);
    out.push(`${fmt(e.fiveHundreds)} 5xx`);
    out.push(`server RSS ${fmt(e.rssStartMb)} → ${fmt(e.rssEndMb)} MB`);
  }
  return out;
}

const range = (lo: number, hi: number) => (Number.isFinite(lo) && lo !== hi ? ` (${fmt(lo)}–${fmt(hi)})` : '');

export function markdownTable(rows: Summary[]): string {
  const head =
    '| subject | case | runs | throughput /s, median (range) | latency p50 / p99 ms (p99 range) | ack p50 / p99 ms | CPU µs/event node + PG | peak RSS MB | box busy % (other) | verified |\n' +
    '|---|---|---|---|---|---|---|---|---|---|';
  const lines = rows.map((s) => {
    const thr = `**${fmt(s.rate)}**${range(s.rateMin, s.rateMax)}${s.offered ? ` of ${fmt(s.offered)} offered` : ''}${[...s.notes, ...details(s)].length ? `; ${[...s.notes, ...details(s)].join('; ')}` : ''}`;
    const lat = Number.isFinite(s.p50) ? `${fmt(s.p50)} / ${fmt(s.p99)}${range(s.p99Min, s.p99Max)}` : '—';
    const ack = Number.isFinite(s.ackP50) ? `${fmt(s.ackP50)} / ${fmt(s.ackP99)}` : '—';
    const cpu = Number.isFinite(s.cpuUs) ? `${fmt(s.cpuUs)} = ${fmt(s.nodeUs)} + ${fmt(s.pgUs)}` : '—';
    return `| ${s.subject} | ${s.mode} | ${s.runs} | ${thr} | ${lat} | ${ack} | ${cpu} | ${fmt(s.rssMb)} | ${fmt(s.boxPct)} (${fmt(s.foreignPct)}) | ${s.verified} |`;
  });
  return [head, ...lines].join('\n');
}
