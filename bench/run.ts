/**
 * herald's benchmark suite: `npm run bench` (full: 3 runs of everything, ≤ 15 min on 2 cores) or
 * `npm run bench -- --quick` (1 run, smaller cases, ≤ 2 min). Options:
 *   --only a,b      subjects to run (see bench/subjects.ts)      --runs N    repetitions
 *   --pg=auto|private|server   where Postgres comes from (auto: a private cluster unless root)
 *   --json FILE     also write every run's raw results
 *   --fanout=1000,10000   waiter counts for the fan-out case (the full default; quick: 500)
 *   --inbox-rows=N  size of the inbox table (default 1,000,000; 10,000,000 takes minutes to build)
 *   --soak          also run the soak after the rest: emits at half the measured capacity for 10 min
 *                   (quick: 1 min); --soak-minutes=N sets its length; --only herald-soak runs it alone
 *   --overload-sockets=N   connections of the overload case's load generator (default 256)
 * Prints a markdown table, the ratios to the peers and raw ceilings, and SPEC §3's bars.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { ChildReply, ChildTask } from './child.ts';
import { barsReport } from './lib/bars.ts';
import { boxSpeedMBps } from './lib/box-speed.ts';
import { compileEntry } from './lib/compile.ts';
import { SUBJECTS } from './subjects.ts';
import { startBenchPostgres, type BenchPostgres } from './lib/postgres.ts';
import type { ModeResult } from './lib/result.ts';
import { FULL, QUICK } from './lib/sizes.ts';
import { markdownTable, summarise } from './lib/table.ts';

const ORDER = ['raw', 'graphile-default', 'graphile-batched', 'pgboss', 'herald', 'herald-runs', 'herald-wakeups', 'herald-http', 'herald-pglite', 'herald-overload', 'herald-fanout', 'herald-inbox'];
/** Run only when asked for (--soak or --only). */
const OPTIONAL = ['herald-soak'];
const CHILD = fileURLToPath(new URL('./child.ts', import.meta.url));
const CHILD_TIMEOUT_MS = 300_000;
let childEntry = CHILD;

function parseArgs(argv: string[]) {
  const opt = (name: string) => {
    const i = argv.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
    if (i < 0) return undefined;
    const a = argv[i]!;
    return a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[i + 1];
  };
  const quick = argv.includes('--quick');
  const sizes = structuredClone(quick ? QUICK : FULL);
  const runs = opt('runs');
  if (runs) sizes.runs = Number(runs);
  const fanout = opt('fanout');
  if (fanout) sizes.fanout = fanout.split(',').map(Number);
  const inboxRows = opt('inbox-rows');
  if (inboxRows) sizes.inboxRows = Number(inboxRows);
  const soakMinutes = opt('soak-minutes');
  if (soakMinutes) {
    sizes.soak.minutes = Number(soakMinutes);
    if (!(sizes.soak.minutes > 0)) throw new Error(`--soak-minutes must be a positive number, got ${soakMinutes}`);
  }
  const sockets = opt('overload-sockets');
  if (sockets) {
    sizes.overload.sockets = Number(sockets);
    if (!(sizes.overload.sockets >= 1)) throw new Error(`--overload-sockets must be a positive number, got ${sockets}`);
  }
  const only = opt('only')?.split(',');
  const known = [...ORDER, ...OPTIONAL];
  for (const s of only ?? []) if (!known.includes(s)) throw new Error(`unknown subject ${s}; one of ${known.join(', ')}`);
  const subjects = only ?? [...ORDER, ...(argv.includes('--soak') || soakMinutes ? ['herald-soak'] : [])];
  return { quick, sizes, subjects, pg: (opt('pg') ?? 'auto') as 'auto' | 'private' | 'server', json: opt('json') };
}

const log = (msg: string) => process.stderr.write(`${msg}\n`);
let current: ChildProcess | undefined;
let pgx: BenchPostgres | undefined;

async function shutdown(code: number) {
  if (current?.pid) current.kill('SIGKILL');
  await pgx?.cleanup();
  process.exit(code);
}
process.once('SIGINT', () => void shutdown(130));
process.once('SIGTERM', () => void shutdown(143));

function runChild(task: ChildTask, timeoutMs: number): Promise<ChildReply> {
  return new Promise((resolve) => {
    const child = fork(childEntry, { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    current = child;
    let reply: ChildReply | undefined;
    const timer = setTimeout(() => {
      reply ??= { ok: false, error: `timed out after ${timeoutMs / 1000} s`, results: [] };
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('message', (m) => (reply = m as ChildReply));
    child.once('exit', (code) => {
      clearTimeout(timer);
      current = undefined;
      resolve(reply ?? { ok: false, error: `exited with code ${code} without results`, results: [] });
    });
    child.send(task);
  });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const started = Date.now();
  // Every case runs herald's compiled build (dist/, rebuilt if a source is newer), as production does.
  childEntry = await compileEntry(CHILD);
  pgx = await startBenchPostgres({ mode: args.pg });
  const results: ModeResult[] = [];
  const failures: string[] = [];
  const speedBefore = boxSpeedMBps();
  try {
    log(`Postgres ${pgx.version} (${pgx.kind === 'private' ? 'private throw-away cluster' : 'throw-away databases on the local server'}), ${args.sizes.runs} run(s), ${args.quick ? 'quick' : 'full'}`);
    // Rounds: every subject once per round, so drift on the machine spreads over all of them.
    for (let round = 1; round <= args.sizes.runs; round++) {
      for (const subject of args.subjects) {
        if (SUBJECTS[subject]?.once && round > 1) continue;
        const name = `herald_bench_${process.pid}_${subject.replace(/-/g, '_')}_${round}`;
        const t0 = Date.now();
        const url = await pgx.createDatabase(name);
        try {
          const timeoutMs = SUBJECTS[subject]?.timeoutMs?.(args.sizes) ?? CHILD_TIMEOUT_MS;
          const reply = await runChild({ subject, url, adminUrl: pgx.adminUrl, sizes: args.sizes }, timeoutMs);
          results.push(...reply.results);
          if (!reply.ok) {
            failures.push(`${subject} (run ${round}): ${reply.error}`);
            log(`  ${subject} failed: ${reply.error.split('\n')[0]}`);
          }
        } finally {
          await pgx.dropDatabase(name).catch(() => {});
        }
        log(`[run ${round}/${args.sizes.runs}] ${subject}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      }
    }
  } finally {
    await pgx.cleanup();
  }
  const summaries = summarise(results);
  const speed = `box speed (SHA-256, one core): ${Math.round(speedBefore)} MB/s before the cases, ${Math.round(boxSpeedMBps())} MB/s after`;
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB RAM, Node ${process.version}, PostgreSQL ${pgx.version} (${pgx.kind}; ${Object.entries(pgx.settings).map(([k, v]) => `${k}=${v}`).join(', ')}); ${speed}`;
  const out = [
    `## herald benchmarks (${args.quick ? 'quick' : 'full'}, ${args.sizes.runs} run(s), ${((Date.now() - started) / 60_000).toFixed(1)} min)`,
    '',
    machine,
    '',
    markdownTable(summaries),
    '',
    barsReport(summaries),
    ...(failures.length
      ? ['', '### Failures', '', 'The tables and verdicts above use the runs that completed (the runs column counts them).', '', ...failures.map((f) => `- ${f.split('\n').slice(0, 3).join(' ')}`)]
      : []),
  ].join('\n');
  process.stdout.write(`${out}\n`);
  if (args.json) writeFileSync(args.json, JSON.stringify({ machine, results }, null, 1));
  process.exitCode = failures.length || summaries.some((s) => !s.verified.startsWith('ok')) ? 1 : 0;
}

main().catch(async (err) => {
  log((err as Error).stack ?? String(err));
  await pgx?.cleanup();
  process.exit(1);
});
