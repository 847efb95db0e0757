/**
 * What an expansion batch costs apart from its events. Run
 *   node --import tsx bench/batch-cost.ts [--events 30000] [--batch-max 3,100] [--rounds 2] [--pg=server|private]
 * For each HERALD_JOB_BATCH_MAX in --batch-max (jobs per batch; a job holds one group commit's
 * events, ~16 with 16 callers), alternated --rounds times: --events emits are queued with the worker
 * stopped (16 in-process callers), then the worker drains them alone — no intake competing — and the
 * drain's rate and CPU per event (herald's node process, its Postgres backends) are printed as a
 * markdown table. Every event must come back with exactly its one notification.
 *
 * The difference between a small and a large batch size, times the events per small batch, is the
 * fixed cost of a batch (its round trips and statements): what the worker pays per wake-up under
 * load, where batches are as large as what arrived while the previous one ran (docs/BENCHMARKS.md).
 * The drain should last seconds: in a short one the fresh connections' first queries dominate.
 */
import pg from 'pg';
import { closedLoop } from './lib/drive.ts';
import { openHerald, pingBody, trackedWorker } from './lib/herald.ts';
import { startBenchPostgres } from './lib/postgres.ts';
import { fmt, now, sleep } from './lib/stats.ts';
import { startMeter } from './lib/usage.ts';

const argv = process.argv.slice(2);
const arg = (name: string, fallback: string) => (argv.includes(name) ? (argv[argv.indexOf(name) + 1] ?? fallback) : fallback);
const events = Number(arg('--events', '30000'));
const batchMax = arg('--batch-max', '3,100').split(',').map(Number);
const rounds = Number(arg('--rounds', '2'));
if (!(events > 0) || batchMax.some((b) => !(b >= 1)) || !(rounds >= 1)) {
  console.error('usage: bench/batch-cost.ts [--events N] [--batch-max 3,100] [--rounds 2] [--pg=server|private]');
  process.exit(2);
}
const mode = (argv.find((a) => a.startsWith('--pg='))?.slice(5) ?? 'auto') as 'auto';

const pgx = await startBenchPostgres({ mode });
const rows: string[] = [];
let current: string | undefined;
const abort = () => void (current ? pgx.dropDatabase(current) : Promise.resolve()).catch(() => {}).then(() => pgx.cleanup()).then(() => process.exit(130));
process.once('SIGINT', abort);
process.once('SIGTERM', abort);

async function drain(jobsPerBatch: number): Promise<string> {
  const name = (current = `herald_bench_batch_cost_${process.pid}_${jobsPerBatch}`);
  const url = await pgx.createDatabase(name);
  const h = await openHerald({ databaseUrl: url, env: { HERALD_JOB_BATCH_MAX: String(jobsPerBatch) } });
  const observer = new pg.Client({ connectionString: url });
  await observer.connect();
  try {
    process.stderr.write(`batch max ${jobsPerBatch}: queueing ${events.toLocaleString('en-US')} events… `);
    const queued = await closedLoop(16, events, 600_000, async (i) => void (await h.engine.emit(pingBody(i))));
    if (queued.done !== events) throw new Error(`only ${queued.done} of ${events} emits were acknowledged`);
    await observer.query('CHECKPOINT');
    const handled = new Set<string>();
    let duplicates = 0;
    const worker = trackedWorker(h.engine, (id) => (handled.has(id) ? duplicates++ : handled.add(id)));
    const meter = await startMeter(observer);
    const t0 = now();
    await worker.start();
    const deadline = t0 + 600_000;
    while (handled.size < events && now() < deadline) await sleep(2);
    const ms = now() - t0;
    const usage = await meter.stop();
    await worker.stop();
    process.stderr.write(`drained in ${fmt(ms)} ms\n`);
    // Exactly once: every event processed, one notification each, no job left over.
    const { rows: check } = await observer.query<{ processed: number; notes: number; distinct_events: number; jobs: number }>(
      `SELECT (SELECT count(processed_at)::int FROM herald_events) AS processed,
              (SELECT count(*)::int FROM notifications) AS notes,
              (SELECT count(DISTINCT event_id)::int FROM notifications) AS distinct_events,
              (SELECT count(*)::int FROM herald_jobs) AS jobs`,
    );
    const c = check[0]!;
    const verdict =
      handled.size !== events || duplicates
        ? `${handled.size} handled, ${duplicates} twice`
        : c.processed !== events || c.notes !== events || c.distinct_events !== events || c.jobs !== 0
          ? `${c.processed} processed, ${c.notes} rows for ${c.distinct_events} events, ${c.jobs} jobs left`
          : 'ok';
    const per = (cpuMs: number) => fmt((cpuMs * 1000) / events);
    return `| ${jobsPerBatch} | ${fmt((events * 1000) / ms)} | ${per(usage.nodeCpuMs)} | ${per(usage.pgCpuMs)} | ${per(usage.nodeCpuMs + usage.pgCpuMs)} | ${verdict} |`;
  } finally {
    await observer.end();
    await h.close();
    await pgx.dropDatabase(name).catch(() => {});
    current = undefined;
  }
}

try {
  for (let r = 0; r < rounds; r++) for (const b of batchMax) rows.push(await drain(b));
  console.log(`expansion drain of ${events.toLocaleString('en-US')} queued events, worker alone (${pgx.kind} Postgres ${pgx.version})\n`);
  console.log('| jobs per batch (max) | drained /s | node µs/event | Postgres µs/event | total µs/event | exactly once |');
  console.log('|---|---|---|---|---|---|');
  for (const row of rows) console.log(row);
} finally {
  await pgx.cleanup();
}
