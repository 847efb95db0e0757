import pg from 'pg';
import { signXSignature } from '../../src/signing.ts';
import { EXPAND_EVENT_JOB } from '../../src/expansion/expand-job.ts';
import { pcts } from '../lib/drive.ts';
import { pingBody, SIGNING_SECRET } from '../lib/herald.ts';
import { httpLoad, pacedHttp, type PreparedRequest } from '../lib/http-load.ts';
import type { ModeResult } from '../lib/result.ts';
import { judgeStability, type SoakWindow } from '../lib/stability.ts';
import { fmt, now, percentile, sleep } from '../lib/stats.ts';
import { serverFigures, startMeter, type Usage } from '../lib/usage.ts';
import { startServer } from './herald-http.ts';

const SUBJECT = 'herald soak (HTTP emit, workflow mode)';
const secret = Buffer.from(SIGNING_SECRET);
const signed = (seq: number): PreparedRequest => {
  const body = pingBody(seq);
  return { path: '/api/notifications/emit', body, headers: { 'content-type': 'application/json', 'x-signature': signXSignature(secret, body) } };
};

interface Window {
  latencies: number[];
  ok: number;
  other: Map<number, number>;
}
const newWindow = (): Window => ({ latencies: [], ok: 0, other: new Map() });

/**
 * The long run (SPEC case 8, behind `--soak`): a herald server process (app + worker, as `herald
 * start` runs) is first driven closed-loop by 64 keep-alive clients for a few seconds to find its
 * capacity on this box today; then, on an emptied database, signed emits arrive open-loop at half
 * that rate for `minutes`. Each window reports what was acknowledged, the ack latency from each
 * request's due time, the server's CPU and peak RSS and the expansion backlog at its end. At the
 * end every acknowledged event must have been stored once and produced exactly its one inbox row,
 * and the run is called stable only if RSS, latency and backlog did not grow.
 */
export async function runSoak(
  opts: { url: string; minutes: number; windowS: number; clients: number },
  report: (r: ModeResult) => void,
): Promise<void> {
  const server = await startServer({ url: opts.url });
  const observer = new pg.Client({ connectionString: opts.url });
  await observer.connect();
  const log = (m: string) => process.stderr.write(`  soak: ${m}\n`);
  try {
    // Warm-up (JIT, connections), then the capacity: the same load as the HTTP emit case.
    const batch = (n: number, from: number) => Array.from({ length: n }, (_, i) => signed(from + i));
    await httpLoad(server.port, batch(20_000, 10_000_000), opts.clients, 3_000);
    await server.call({ cmd: 'reset' });
    const probe = await httpLoad(server.port, batch(60_000, 20_000_000), opts.clients, 5_000);
    const capacity = ((probe.statuses.get(200) ?? 0) * 1000) / probe.ms;
    if (capacity === 0) {
      // Half of nothing is no soak: say what the server answered instead of running for minutes.
      const answers = [...probe.statuses].map(([status, n]) => `${n}×${status}`).join(', ') || 'no answers';
      throw new Error(`the capacity probe got no 200 from the herald server (${answers})`);
    }
    const rate = Math.max(1, Math.round(capacity / 2));
    await server.call({ cmd: 'reset' });
    await observer.query('CHECKPOINT');
    log(`capacity ${fmt(capacity)} emits/s; soaking at ${fmt(rate)}/s for ${opts.minutes} min`);

    const durationMs = opts.minutes * 60_000;
    const windows = Math.max(2, Math.round(durationMs / (opts.windowS * 1000)));
    const windowMs = durationMs / windows;
    const acked = new Uint8Array(Math.floor((rate * durationMs) / 1000));
    const latencyOf = new Float64Array(acked.length).fill(Number.NaN);
    let ackedCount = 0;
    let failed = 0;
    let current = newWindow();
    const generator = pacedHttp(server.port, {
      rate,
      durationMs,
      sockets: opts.clients,
      make: signed,
      onResponse(r) {
        if (r.status === 200 && r.body.includes('"eventId"')) {
          current.ok++;
          current.latencies.push(r.latencyMs);
          latencyOf[r.i] = r.latencyMs;
          if (acked[r.i] === 0) ackedCount++;
          acked[r.i] = 1;
        } else {
          failed++;
          current.other.set(r.status, (current.other.get(r.status) ?? 0) + 1);
        }
      },
    });

    const rows: SoakWindow[] = [];
    const total: Usage = { wallMs: 0, nodeCpuMs: 0, pgCpuMs: 0, boxBusyPct: 0, peakRssMb: 0, loadGenCpuMs: 0 };
    const t0 = now();
    for (let w = 1; w <= windows; w++) {
      await server.call({ cmd: 'meter-start', loopDelay: true });
      const pgMeter = await startMeter(observer, false);
      const cpu0 = process.cpuUsage();
      const start = now();
      // The last window also takes the responses still in flight when the generator stops.
      if (w < windows) await sleep(Math.max(0, t0 + w * windowMs - now()));
      else await generator;
      const serverUsage = await server.call<Usage>({ cmd: 'meter-stop' });
      const pgUsage = await pgMeter.stop();
      const cpu = process.cpuUsage(cpu0);
      const wallMs = now() - start;
      total.boxBusyPct = (total.boxBusyPct * total.wallMs + pgUsage.boxBusyPct * wallMs) / (total.wallMs + wallMs);
      total.wallMs += wallMs;
      total.nodeCpuMs += serverUsage.nodeCpuMs;
      total.pgCpuMs += pgUsage.pgCpuMs;
      total.loadGenCpuMs! += (cpu.user + cpu.system) / 1000;
      total.peakRssMb = Math.max(total.peakRssMb, serverUsage.peakRssMb);
      const win = current;
      current = newWindow();
      const backlog = await backlogEvents(observer);
      const p99 = percentile(win.latencies, 99);
      rows.push({ p99, rssMb: serverUsage.peakRssMb, backlog });
      const bad = [...win.other].map(([s, n]) => `${n}×${s || 'error'}`).join(', ');
      report({
        subject: SUBJECT,
        mode: `window ${w}/${windows} (to ${Math.round((w * windowMs) / 1000)} s), ${fmt(rate)}/s offered`,
        events: win.ok,
        rate: (win.ok * 1000) / wallMs,
        offered: rate,
        p50: percentile(win.latencies, 50),
        p99,
        usage: { ...serverUsage, wallMs, pgCpuMs: pgUsage.pgCpuMs, boxBusyPct: pgUsage.boxBusyPct, loadGenCpuMs: (cpu.user + cpu.system) / 1000 },
        // A window checks its answers only; the stored rows are checked once, in the final row.
        verified: bad ? `failed responses: ${bad}` : 'ok (every answer a 200; rows checked at the end)',
        extra: {
          backlogEvents: backlog,
          ...serverFigures(serverUsage),
        },
      });
      log(
        `window ${w}/${windows}: ${fmt((win.ok * 1000) / wallMs)}/s, p99 ${fmt(p99)} ms, server RSS ${fmt(serverUsage.peakRssMb)} MB, ` +
          `inside the server p50 ${fmt(serverUsage.handlingP50Ms)} / p99 ${fmt(serverUsage.handlingP99Ms)} ms, its event-loop delay p99 ${fmt(serverUsage.loopDelayP99Ms)} / max ${fmt(serverUsage.loopDelayMaxMs)} ms, backlog ${backlog} events`,
      );
    }

    const drained = await waitForDrain(observer, 120_000);
    const correctness = drained ? await verifySoak(observer, acked, ackedCount) : 'the expansion backlog did not drain within 2 min';
    const stability = judgeStability(rows, rate);
    const verdict = failed ? `${failed} requests without a 200` : correctness !== 'ok' ? correctness : stability.ok ? 'ok' : `UNSTABLE: ${stability.text}`;
    report({
      subject: SUBJECT,
      mode: `whole run: ${opts.minutes} min at half the capacity (${fmt(capacity)}/s measured)`,
      events: ackedCount,
      rate: (ackedCount * 1000) / durationMs,
      offered: rate,
      ...pcts(latencyOf.filter((x) => !Number.isNaN(x))),
      usage: total,
      verified: verdict,
      note: stability.text,
    });
  } finally {
    await observer.end();
    await server.stop();
  }
}

/** Events still waiting for their expansion (a group commit's job carries all its events). */
async function backlogEvents(observer: pg.Client): Promise<number> {
  const { rows } = await observer.query<{ n: number }>(
    `SELECT coalesce(sum(CASE WHEN payload ? 'eventIds' THEN jsonb_array_length(payload->'eventIds') ELSE 1 END), 0)::int AS n
     FROM herald_jobs WHERE kind = $1`,
    [EXPAND_EVENT_JOB],
  );
  return rows[0]!.n;
}

async function waitForDrain(observer: pg.Client, maxMs: number): Promise<boolean> {
  const deadline = now() + maxMs;
  while (now() < deadline) {
    const { rows } = await observer.query<{ n: number }>(`SELECT count(*)::int AS n FROM herald_jobs`);
    if (rows[0]!.n === 0) return true;
    await sleep(100);
  }
  return false;
}

/**
 * Exactly-once, checked in SQL (the ids of a million events are not held in this process): the
 * acknowledged request numbers go to a temporary table; the stored events' `ctx.seq` must be that
 * set exactly, each event processed, and each with exactly one inbox row.
 */
async function verifySoak(observer: pg.Client, acked: Uint8Array, ackedCount: number): Promise<string> {
  await observer.query(`CREATE TEMP TABLE soak_acked (seq int PRIMARY KEY)`);
  try {
    const seqs: number[] = [];
    const flush = async () => {
      if (seqs.length) await observer.query(`INSERT INTO soak_acked SELECT unnest($1::int[])`, [seqs]);
      seqs.length = 0;
    };
    for (let i = 0; i < acked.length; i++) {
      if (acked[i]) seqs.push(i);
      if (seqs.length === 100_000) await flush();
    }
    await flush();
    const one = async (sql: string) => Number((await observer.query<{ n: number }>(sql)).rows[0]!.n);
    const events = await one(`SELECT count(*)::int AS n FROM herald_events`);
    const unprocessed = await one(`SELECT count(*)::int AS n FROM herald_events WHERE processed_at IS NULL`);
    const unacked = await one(
      `SELECT count(*)::int AS n FROM herald_events e WHERE NOT EXISTS (SELECT 1 FROM soak_acked a WHERE a.seq = (e.ctx->>'seq')::int)`,
    );
    const missing = await one(
      `SELECT count(*)::int AS n FROM soak_acked a WHERE NOT EXISTS (SELECT 1 FROM herald_events e WHERE (e.ctx->>'seq')::int = a.seq)`,
    );
    const notInOne = await one(
      `SELECT count(*)::int AS n FROM herald_events e
       LEFT JOIN (SELECT event_id, count(*) AS c FROM notifications GROUP BY event_id) n ON n.event_id = e.id
       WHERE coalesce(n.c, 0) <> 1`,
    );
    const orphans = await one(
      `SELECT count(*)::int AS n FROM notifications n WHERE NOT EXISTS (SELECT 1 FROM herald_events e WHERE e.id = n.event_id)`,
    );
    const problems = [
      events !== ackedCount && `${events} events stored for ${ackedCount} acknowledged`,
      missing && `${missing} acknowledged events not stored`,
      unacked && `${unacked} stored events never acknowledged`,
      unprocessed && `${unprocessed} events not processed`,
      notInOne && `${notInOne} events without exactly one inbox row`,
      orphans && `${orphans} inbox rows of unknown events`,
    ].filter(Boolean);
    return problems.length ? problems.join('; ') : 'ok';
  } finally {
    await observer.query(`DROP TABLE soak_acked`);
  }
}
