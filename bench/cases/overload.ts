import pg from 'pg';
import { signXSignature } from '../../src/signing.ts';
import { pingBody, SIGNING_SECRET } from '../lib/herald.ts';
import { httpLoad, type PreparedRequest } from '../lib/http-load.ts';
import { pacedRaw } from '../lib/raw-http.ts';
import type { ModeResult } from '../lib/result.ts';
import { fmt, now, percentile } from '../lib/stats.ts';
import { serverFigures, startMeter, type Usage } from '../lib/usage.ts';
import { startServer } from './herald-http.ts';

const SUBJECT = 'herald overload (HTTP emit, workflow mode)';
const secret = Buffer.from(SIGNING_SECRET);
const signed = (seq: number): PreparedRequest => {
  const body = pingBody(seq);
  return { path: '/api/notifications/emit', body, headers: { 'content-type': 'application/json', 'x-signature': signXSignature(secret, body) } };
};
const batch = (n: number, from: number) => Array.from({ length: n }, (_, i) => signed(from + i));

export interface OverloadOptions {
  url: string;
  /** How long 3× the capacity is offered. */
  seconds: number;
  /** How long the capacity probe and the unloaded window last. */
  probeSeconds: number;
  /** Keep-alive clients of the capacity probe (as the HTTP emit case). */
  clients: number;
  /** Most connections the overload opens (many clients); requests beyond wait for one, and that wait counts. */
  sockets: number;
  /** Settings of the server (experiments: e.g. HERALD_SHED_TARGET_MS). */
  env?: Record<string, string>;
}

/** Answers of one open-loop window, by kind. */
interface Tally {
  accepted: number[];
  acceptedIds: string[];
  shed: number[];
  /** Of each answer's latency, the part before it was written to a connection (generator, pool). */
  waited: number[];
  statuses: Map<number, number>;
}

async function paced(port: number, rate: number, durationMs: number, sockets: number, from: number): Promise<Tally & { ms: number }> {
  const t: Tally = { accepted: [], acceptedIds: [], shed: [], waited: [], statuses: new Map() };
  const t0 = now();
  await pacedRaw(port, {
    rate,
    durationMs,
    sockets,
    make: (i) => signed(from + i),
    wantsBody: (status) => status === 200,
    onResponse(status, body, latencyMs, waitedMs) {
      t.statuses.set(status, (t.statuses.get(status) ?? 0) + 1);
      t.waited.push(waitedMs);
      if (status === 200) {
        t.accepted.push(latencyMs);
        const id = /"eventId":"([^"]+)"/.exec(body)?.[1];
        if (id) t.acceptedIds.push(id);
      } else if (status === 429) t.shed.push(latencyMs);
    },
  });
  return { ...t, ms: now() - t0 };
}

/** The largest sample (a spread of 100,000+ arguments overflows the stack). */
const largest = (xs: number[]) => (xs.length ? xs.reduce((m, x) => (x > m ? x : m), -Infinity) : Number.NaN);

const statusList = (m: Map<number, number>) => [...m].sort(([a], [b]) => a - b).map(([s, n]) => `${n.toLocaleString('en-US')}×${s || 'error'}`).join(', ');

/**
 * SPEC's overload bar (issue 24 item 9): a herald server process (app + worker, as `herald start`)
 * is measured three ways. Its capacity: 64 keep-alive clients in a closed loop, as the HTTP emit
 * case, counting 200s. Unloaded: signed emits open-loop at 5 % of that, for the unloaded p99 of
 * this box today. Overloaded: open-loop at 3× the capacity for `seconds`, over up to `sockets`
 * connections (latency from each request's due time: a request waiting for a connection counts).
 * Reported: accepted/s and their p50/p99/max, shed/s (429 + Retry-After) and their p99, every other
 * status (a 5xx or a connection error fails the verdict), and the server's RSS at the window's start
 * and end. Then every accepted emit must be stored exactly once with its one inbox row, and
 * nothing else stored: a shed request writes nothing.
 */
export async function runOverload(opts: OverloadOptions, report: (r: ModeResult) => void): Promise<void> {
  const server = await startServer({ url: opts.url, env: opts.env });
  const observer = new pg.Client({ connectionString: opts.url });
  await observer.connect();
  const log = (m: string) => process.stderr.write(`  overload: ${m}\n`);
  try {
    const probeMs = opts.probeSeconds * 1000;
    await httpLoad(server.port, batch(20_000, 10_000_000), opts.clients, Math.min(3000, probeMs));
    await server.call({ cmd: 'reset' });

    // Capacity: the closed loop of the HTTP emit case.
    await server.call({ cmd: 'meter-start', loopDelay: true });
    const probePg = await startMeter(observer, false);
    const probe = await httpLoad(server.port, batch(100_000, 20_000_000), opts.clients, probeMs);
    const probeServer = await server.call<Usage>({ cmd: 'meter-stop' });
    const probePgUsage = await probePg.stop();
    const probeUsage = { ...probeServer, pgCpuMs: probePgUsage.pgCpuMs, boxBusyPct: probePgUsage.boxBusyPct };
    const capacity = ((probe.statuses.get(200) ?? 0) * 1000) / probe.ms;
    if (capacity === 0) throw new Error(`the capacity probe got no 200 (${statusList(probe.statuses)})`);
    const probeLatency = probe.latency.filter((_, i) => probe.bodies[i]?.includes('"eventId"'));
    report({
      subject: SUBJECT,
      mode: `capacity: closed loop, ${opts.clients} keep-alive clients`,
      events: probe.statuses.get(200) ?? 0,
      rate: capacity,
      p50: percentile(probeLatency, 50),
      p99: percentile(probeLatency, 99),
      usage: probeUsage,
      verified: `ok (answers: ${statusList(probe.statuses)})`,
      extra: {
        ...serverFigures(probeServer),
      },
    });
    log(
      `capacity ${fmt(capacity)} emits/s (${statusList(probe.statuses)}), p50 ${fmt(percentile(probeLatency, 50))} / p99 ${fmt(percentile(probeLatency, 99))} ms; ` +
        `server loop delay p99 ${fmt(probeServer.loopDelayP99Ms)} / max ${fmt(probeServer.loopDelayMaxMs)} ms`,
    );
    await server.call({ cmd: 'reset' });

    // Unloaded: the same server, open loop at 5 % of its capacity.
    const lowRate = Math.max(50, Math.round(capacity / 20));
    const low = await paced(server.port, lowRate, probeMs, opts.sockets, 30_000_000);
    const unloadedP99 = percentile(low.accepted, 99);
    report({
      subject: SUBJECT,
      mode: `unloaded: ${fmt(lowRate)}/s offered (5 % of capacity), open loop`,
      events: low.accepted.length,
      rate: (low.accepted.length * 1000) / low.ms,
      offered: lowRate,
      p50: percentile(low.accepted, 50),
      p99: unloadedP99,
      usage: { wallMs: low.ms, nodeCpuMs: 0, pgCpuMs: 0, boxBusyPct: 0, peakRssMb: 0 },
      verified: low.accepted.length === low.statuses.get(200) && low.statuses.size === 1 ? 'ok (every answer a 200)' : `answers: ${statusList(low.statuses)}`,
    });
    log(`unloaded p99 ${fmt(unloadedP99)} ms at ${lowRate}/s`);
    await server.call({ cmd: 'reset' });

    // 3× capacity.
    const rate = Math.round(capacity * 3);
    const rssStart = await server.call<number>({ cmd: 'rss' });
    await server.call({ cmd: 'meter-start', loopDelay: true });
    const pgMeter = await startMeter(observer, false);
    const cpu0 = process.cpuUsage();
    const over = await paced(server.port, rate, opts.seconds * 1000, opts.sockets, 40_000_000);
    const cpu = process.cpuUsage(cpu0);
    const serverUsage = await server.call<Usage>({ cmd: 'meter-stop' });
    const pgUsage = await pgMeter.stop();
    const rssEnd = await server.call<number>({ cmd: 'rss' });
    const v = await server.call<{ verdict: string }>({ cmd: 'verify', ids: over.acceptedIds });
    const fivexx = [...over.statuses].filter(([s]) => s >= 500 || s === 0);
    const other = [...over.statuses].filter(([s]) => s !== 200 && s !== 429 && !(s >= 500 || s === 0));
    const acceptedP99 = percentile(over.accepted, 99);
    const seconds = over.ms / 1000;
    const verdict =
      fivexx.length || other.length
        ? `unexpected answers: ${statusList(new Map([...fivexx, ...other]))}`
        : over.acceptedIds.length !== over.accepted.length
          ? `${over.accepted.length - over.acceptedIds.length} 200s without an eventId`
          : v.verdict;
    report({
      subject: SUBJECT,
      mode: `3× capacity: ${fmt(rate)}/s offered for ${opts.seconds} s, open loop, ≤ ${opts.sockets} connections`,
      events: over.accepted.length,
      rate: over.accepted.length / seconds,
      offered: rate,
      p50: percentile(over.accepted, 50),
      p99: acceptedP99,
      usage: { ...serverUsage, pgCpuMs: pgUsage.pgCpuMs, boxBusyPct: pgUsage.boxBusyPct, loadGenCpuMs: (cpu.user + cpu.system) / 1000 },
      verified: verdict,
      extra: {
        shedRate: over.shed.length / seconds,
        shedP99Ms: percentile(over.shed, 99),
        acceptedMaxMs: largest(over.accepted),
        unloadedP99Ms: unloadedP99,
        fiveHundreds: fivexx.reduce((n, [, c]) => n + c, 0),
        rssStartMb: rssStart,
        rssEndMb: rssEnd,
        ...serverFigures(serverUsage),
      },
    });
    log(
      `3× (${fmt(rate)}/s offered): accepted ${fmt(over.accepted.length / seconds)}/s p50 ${fmt(percentile(over.accepted, 50))} / p99 ${fmt(acceptedP99)} / max ${fmt(largest(over.accepted))} ms ` +
        `(${fmt(acceptedP99 / unloadedP99)}× the unloaded p99; before a connection took it: p50 ${fmt(percentile(over.waited, 50))} / p99 ${fmt(percentile(over.waited, 99))} ms), shed ${fmt(over.shed.length / seconds)}/s (p99 ${fmt(percentile(over.shed, 99))} ms), ` +
        `answers ${statusList(over.statuses)}, server RSS ${fmt(rssStart)} → ${fmt(rssEnd)} MB (peak ${fmt(serverUsage.peakRssMb)}), ` +
        `inside the server p50 ${fmt(serverUsage.handlingP50Ms)} / p99 ${fmt(serverUsage.handlingP99Ms)} ms, loop delay p99 ${fmt(serverUsage.loopDelayP99Ms)} / max ${fmt(serverUsage.loopDelayMaxMs)} ms; CPU: server ${fmt(serverUsage.nodeCpuMs / serverUsage.wallMs * 100)} %, ` +
        `Postgres ${fmt(pgUsage.pgCpuMs / serverUsage.wallMs * 100)} %, load generator ${fmt((cpu.user + cpu.system) / 1000 / serverUsage.wallMs * 100)} %, box ${fmt(pgUsage.boxBusyPct)} % of 200; ${verdict}`,
    );
  } finally {
    await observer.end();
    await server.stop();
  }
}
