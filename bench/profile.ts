/**
 * Where herald's time goes per emit. Run
 *   node --import tsx bench/profile.ts [--events 3000] [--pg=server|private] [--http | --serial | --runs]
 *                                      [--no-wakeups | --deaf] [--poll-ms 50]
 * It runs the stream case once — 16 in-process engine.emit callers, or with --http 64 keep-alive
 * clients of a server in this same process (signed, workflow mode), or with --serial one emit at a
 * time, each waiting for its handler to start (unloaded latency), or with --runs 16 callers
 * emitting a type that starts a code run (done when the run's execution job completes) — with the
 * worker running, and prints
 *   1. every SQL statement herald sent, per event: count, client-observed time, transactions, round
 *      trips (statements sent together count once);
 *   2. a V8 CPU profile of the herald process, self time by package/module and by function;
 *   3. Postgres backend CPU vs node CPU per event, and the event loop's delay (how long ready work
 *      waited for the loop).
 * --no-wakeups removes every NOTIFY and wake-up (the worker polls every --poll-ms); --deaf keeps
 * the NOTIFYs but has the worker ignore them (see deafened). bench/batch-cost.ts measures the
 * expansion alone, by batch size.
 * HERALD_PROFILE_OUT=file.cpuprofile keeps the raw V8 profile. Its samples are wall-clock: time the
 * process sat descheduled inside a call (typically `writev`, after waking a Postgres backend on the
 * same core) counts as that call's; `perf trace -s -p <pid>` gives the syscalls' real cost.
 */
import { Session } from 'node:inspector/promises';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import pg from 'pg';
import type { Db, Queryable } from '../src/storage/db.ts';
import { RUN_JOB } from '../src/storage/queries/runs.ts';
import { closedLoop } from './lib/drive.ts';
import { serve } from '@hono/node-server';
import { createApp } from '../src/http/app.ts';
import { signXSignature } from '../src/signing.ts';
import { openHerald, pingBody, SIGNING_SECRET, startBody, trackedWorker } from './lib/herald.ts';
import { withoutWakeups } from './cases/herald-queue.ts';
import { httpLoad, type PreparedRequest } from './lib/http-load.ts';
import { startBenchPostgres } from './lib/postgres.ts';
import { fmt, now, sleep } from './lib/stats.ts';
import { startMeter } from './lib/usage.ts';

interface Stat {
  n: number;
  ms: number;
}
const census = new Map<string, Stat>();
let transactions = 0;
const label = (sql: string) => sql.replace(/\s+/g, ' ').trim().slice(0, 90);

/** Runs one round trip, adding its count and client-observed time to `key`'s census entry. */
async function timed<T>(key: string, send: () => Promise<T>): Promise<T> {
  const t = now();
  try {
    return await send();
  } finally {
    const s = census.get(key) ?? { n: 0, ms: 0 };
    s.n++;
    s.ms += now() - t;
    census.set(key, s);
  }
}

function counted(db: Db): Db {
  const wrap = (q: Queryable): Queryable => ({
    query: (text, values, opts) => timed(label(text), () => q.query(text, values, opts)),
    exec: (sql) => q.exec(sql),
    // Statements sent together are one round trip: counted as one entry.
    pipeline: (statements) =>
      timed(`together: ${statements.map((st) => label(st.text).slice(0, 40)).join(' + ')}`, () => q.pipeline(statements)),
  });
  return {
    ...db,
    ...wrap(db),
    kind: db.kind,
    transaction: (fn, o) => {
      transactions++;
      return db.transaction((tx) => fn(wrap(tx)), o);
    },
    withAdvisoryLock: (k, fn) => db.withAdvisoryLock(k, fn),
    listen: (c, fn) => db.listen(c, fn),
    wake: (c) => db.wake(c),
    close: () => db.close(),
  };
}

/**
 * --deaf: the NOTIFYs are sent and received as usual, but nothing acts on them (nor on in-memory
 * wake-ups): the worker only polls. Against --no-wakeups (no NOTIFY at all, same polling) it
 * isolates what LISTEN/NOTIFY itself costs from what the worker's eager reaction to it costs.
 */
function deafened(db: Db): Db {
  return { ...db, listen: (channel) => db.listen(channel, () => {}), wake: () => {} };
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

function bucket(url: string): string {
  if (!url) return '(native / GC / idle)';
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  if (url.startsWith('node:')) return url;
  const src = url.indexOf('/src/');
  if (src >= 0) return `herald ${url.slice(src + 1)}`;
  const bench = url.indexOf('/bench/');
  return bench >= 0 ? `bench ${url.slice(bench + 1)}` : url;
}

async function main() {
  const argv = process.argv.slice(2);
  const events = Number(argv[argv.indexOf('--events') + 1] || 3000) || 3000;
  const mode = (argv.find((a) => a.startsWith('--pg='))?.slice(5) ?? 'auto') as 'auto';
  const overHttp = argv.includes('--http');
  const serial = argv.includes('--serial');
  const runs = argv.includes('--runs');
  const pgx = await startBenchPostgres({ mode });
  const name = `herald_bench_profile_${process.pid}`;
  const abort = () => void pgx.dropDatabase(name).catch(() => {}).then(() => pgx.cleanup()).then(() => process.exit(130));
  process.once('SIGINT', abort);
  process.once('SIGTERM', abort);
  try {
    const url = await pgx.createDatabase(name);
    const noWakeups = argv.includes('--no-wakeups');
    const deaf = argv.includes('--deaf');
    const pollMs = argv.includes('--poll-ms') ? (argv[argv.indexOf('--poll-ms') + 1] ?? '') : '50';
    if (!/^\d+$/.test(pollMs)) throw new Error(`--poll-ms takes a number of milliseconds, got "${pollMs}"`);
    if (argv.includes('--poll-ms') && !noWakeups && !deaf) throw new Error('--poll-ms applies with --no-wakeups or --deaf');
    if (runs && (overHttp || serial)) throw new Error('--runs is a stream case of its own: not with --http or --serial');
    const env: Record<string, string> = noWakeups || deaf ? { HERALD_JOB_POLL_MS: pollMs } : {};
    const h = await openHerald({
      databaseUrl: url,
      env,
      wrapDb: noWakeups ? (db) => counted(withoutWakeups(db, () => {})) : deaf ? (db) => counted(deafened(db)) : counted,
    });
    const observer = new pg.Client({ connectionString: url });
    await observer.connect();
    const handled = new Set<string>();
    let onHandled: ((id: string) => void) | undefined;
    // With --runs an emit is done when its run's execution completes (the run's id is its payload's).
    const worker = runs
      ? trackedWorker(h.engine, () => {}, (job, outcome) => {
          if (job.kind === RUN_JOB.code && outcome === 'completed') handled.add(String(job.payload.runId));
        })
      : trackedWorker(h.engine, (id) => (handled.add(id), onHandled?.(id)));
    await worker.start();
    const secret = Buffer.from(SIGNING_SECRET);
    const signed = (from: number, n: number): PreparedRequest[] =>
      Array.from({ length: n }, (_, i) => {
        const body = pingBody(from + i);
        return { path: '/api/notifications/emit', body, headers: { 'content-type': 'application/json', 'x-signature': signXSignature(secret, body) } };
      });
    let port = 0;
    if (overHttp) {
      const app = createApp(h.engine);
      await new Promise<void>((resolve) => serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info) => ((port = info.port), resolve())));
    }
    const latencies: number[] = [];
    const emitAndWait = async (seq: number) => {
      const t = now();
      const started = new Promise<void>((resolve) => (onHandled = () => resolve()));
      await h.engine.emit(pingBody(seq));
      await started;
      latencies.push(now() - t);
    };
    const drive = async (from: number, n: number) =>
      overHttp
        ? await httpLoad(port, signed(from, n), 64, 60_000)
        : serial
          ? await closedLoop(1, n, 60_000, (i) => emitAndWait(from + i))
          : await closedLoop(16, n, 60_000, async (i) => void (await h.engine.emit((runs ? startBody : pingBody)(from + i))));
    // warm-up, then reset the counters
    await drive(1_000_000, 300);
    while (handled.size < 300) await sleep(20);
    census.clear();
    transactions = 0;
    handled.clear();
    latencies.length = 0;

    const session = new Session();
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: 200 });
    await session.post('Profiler.start');
    const meter = await startMeter(observer);
    const cpu0 = process.cpuUsage();
    // How long a ready callback (an ack, a query's reply) waits for the event loop.
    const loopDelay = monitorEventLoopDelay({ resolution: 1 });
    loopDelay.enable();
    const t0 = now();
    const loop = await drive(0, events);
    const ackMs = now() - t0;
    while (handled.size < events) await sleep(5);
    const e2eMs = now() - t0;
    loopDelay.disable();
    const usage = await meter.stop();
    const cpu1 = process.cpuUsage(cpu0);
    const { profile } = (await session.post('Profiler.stop')) as { profile: { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] } };
    // The raw profile, for a call-tree view (Chrome DevTools opens it).
    if (process.env.HERALD_PROFILE_OUT) (await import('node:fs')).writeFileSync(process.env.HERALD_PROFILE_OUT, JSON.stringify(profile));
    await worker.stop();

    const out: string[] = [];
    out.push(
      `herald profile: ${events} emits from ${overHttp ? '64 HTTP clients (same process: the CPU profile includes the client)' : serial ? 'one caller, serially (each waits for its handler start)' : '16 in-process callers'}, worker running (${pgx.kind} Postgres ${pgx.version})`,
    );
    if (serial) {
      const sorted = [...latencies].sort((a, b) => a - b);
      const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
      out.push(`emit → handler start: p50 ${fmt(at(50))} ms, p99 ${fmt(at(99))} ms`);
    }
    out.push(`acks: ${fmt((loop.done * 1000) / ackMs)}/s; all handlers started after ${fmt(e2eMs)} ms (${fmt((events * 1000) / e2eMs)}/s e2e)`);
    out.push(`CPU per event: node ${fmt((usage.nodeCpuMs * 1000) / events)} µs + Postgres backends ${fmt((usage.pgCpuMs * 1000) / events)} µs; box ${fmt(usage.boxBusyPct)} % busy of ${200}`);
    const ms = (ns: number) => fmt(ns / 1e6);
    out.push(`node CPU split: user ${fmt(cpu1.user / events)} µs + system ${fmt(cpu1.system / events)} µs per event`);
    out.push(`event-loop delay: p50 ${ms(loopDelay.percentile(50))} / p99 ${ms(loopDelay.percentile(99))} / max ${ms(loopDelay.max)} ms`);
    out.push('', `SQL per event (${fmt(transactions / events)} transactions per event; client-observed time includes waiting for the pool):`, '');
    out.push('| statement | per event | mean ms | total ms |', '|---|---|---|---|');
    const rows = [...census].sort((a, b) => b[1].ms - a[1].ms);
    let total = 0;
    for (const [sql, s] of rows) {
      total += s.n;
      out.push(`| \`${sql}\` | ${fmt(s.n / events)} | ${fmt(s.ms / s.n)} | ${fmt(s.ms)} |`);
    }
    // On a Postgres server a transaction's BEGIN travels with its first statement: COMMIT is its
    // only extra round trip.
    out.push(`| **round trips: the rows above, plus COMMIT ${fmt(transactions / events)}** | **${fmt((total + transactions) / events)}** | | |`);

    // CPU profile: self time by module and by function.
    const dt = new Map<number, number>();
    profile.samples.forEach((id, i) => dt.set(id, (dt.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000));
    const byBucket = new Map<string, number>();
    const byFn = new Map<string, number>();
    let sampled = 0;
    for (const n of profile.nodes) {
      const ms = dt.get(n.id) ?? 0;
      if (!ms) continue;
      const fnName = n.callFrame.functionName || '(anonymous)';
      if (fnName === '(idle)') continue;
      sampled += ms;
      const b = fnName === '(garbage collector)' ? '(garbage collector)' : fnName === '(program)' ? '(program: native, not JS)' : bucket(n.callFrame.url);
      byBucket.set(b, (byBucket.get(b) ?? 0) + ms);
      const f = `${fnName} ${bucket(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;
      byFn.set(f, (byFn.get(f) ?? 0) + ms);
    }
    out.push('', `Node CPU profile (non-idle ${fmt(sampled)} ms sampled = ${fmt((sampled * 1000) / events)} µs per event), self time by module:`, '');
    out.push('| module | ms | µs per event | share |', '|---|---|---|---|');
    for (const [b, ms] of [...byBucket].sort((a, c) => c[1] - a[1]).slice(0, 18)) {
      out.push(`| ${b} | ${fmt(ms)} | ${fmt((ms * 1000) / events)} | ${fmt((100 * ms) / sampled)} % |`);
    }
    out.push('', 'Top functions by self time:', '', '| function | ms | share |', '|---|---|---|');
    for (const [f, ms] of [...byFn].sort((a, c) => c[1] - a[1]).slice(0, 25)) out.push(`| ${f} | ${fmt(ms)} | ${fmt((100 * ms) / sampled)} % |`);
    process.stdout.write(`${out.join('\n')}\n`);
    session.disconnect();
    await observer.end();
    await h.close();
  } finally {
    await pgx.dropDatabase(name).catch(() => {});
    await pgx.cleanup();
  }
}

// exit explicitly: the --http server would keep the process alive (cleanup already ran in finally)
main().then(() => process.exit(0), (err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(1);
});
