#!/usr/bin/env node
// Runs the whole test suite once per backend (PGlite, then Postgres) and prints one closing line,
// "N passed, N failed[, N skipped]", summed from the runs' own closing counts (scripts/run-reporter.mjs).
//   node scripts/test.mjs [--backend pglite|postgres] [test files or directories...]
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const args = process.argv.slice(2);
let backends = ['pglite', 'postgres'];
const bi = args.indexOf('--backend');
if (bi >= 0) {
  backends = [args[bi + 1]];
  args.splice(bi, 2);
}
const walk = (dir) =>
  readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.test.ts') ? [p] : [];
  });
// A directory stands for the test files under it (node --test does not expand one).
const files = (args.length ? args : ['test']).flatMap((a) => (statSync(a).isDirectory() ? walk(a).sort() : [a]));

const totals = { pass: 0, fail: 0, skipped: 0 };
const pgUrl = process.env.HERALD_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
if (backends.includes('postgres') && !(await postgresReachable(pgUrl))) {
  const msg = `Postgres is not reachable at ${pgUrl} (set HERALD_TEST_DATABASE_URL).`;
  if (process.env.CI || bi >= 0) {
    console.error(`${msg} The Postgres run is required here.`);
    totals.fail++;
  } else {
    console.error(`\n*** ${msg} Running the PGlite backend only. ***\n`);
  }
  backends = backends.filter((b) => b !== 'postgres');
}

async function postgresReachable(url) {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.end();
    return true;
  } catch {
    return false;
  }
}
// Every node process of the run — the test files and the herald processes they start — fails on a
// deprecation warning of pg's own (scripts/fail-on-pg-deprecation.mjs), so what pg 9 removes
// cannot come back silently; test/storage/pg-deprecation-guard.test.ts checks it is loaded.
const guard = new URL('./fail-on-pg-deprecation.mjs', import.meta.url).href;
const NODE_OPTIONS = [process.env.NODE_OPTIONS, `--import=${guard}`].filter(Boolean).join(' ');
/**
 * The databases every test file's own starts from (test/helpers/db-templates.ts): made once per
 * backend, so no file pays for initdb or the migrations. If they cannot be made, each file makes
 * its own as before (slower, same tests).
 */
async function prepareTemplates(backend, folder) {
  const out = await new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', templatesScript, 'prepare', backend, folder], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, NODE_OPTIONS },
    });
    let text = '';
    child.stdout.on('data', (d) => (text += d));
    child.on('exit', (c) => resolve(c === 0 ? text : undefined));
  });
  if (out) return JSON.parse(out);
  console.error(`*** could not prepare the ${backend} template database; every file creates its own ***`);
  return {};
}
async function dropTemplates(env) {
  if (!env.HERALD_TEST_PG_TEMPLATE) return;
  await new Promise((resolve) =>
    spawn(process.execPath, ['--import', 'tsx', templatesScript, 'drop', 'postgres', env.HERALD_TEST_PG_TEMPLATE], {
      stdio: 'inherit',
      env: { ...process.env, NODE_OPTIONS },
    }).on('exit', resolve),
  );
}
const summaryReporter = new URL('./run-reporter.mjs', import.meta.url).href;
const templatesScript = new URL('../test/helpers/db-templates.ts', import.meta.url).pathname;

/**
 * Files whose first lines say `// herald-test: no database` test nothing of either backend: they
 * run once, with the first backend, not once per backend.
 */
const NO_DATABASE = /^\/\/ herald-test: no database\b/m;
const needsNoDatabase = (file) => NO_DATABASE.test(readFileSync(file, 'utf8').slice(0, 2000));
const databaseFree = new Set(files.filter(needsNoDatabase));

/**
 * One backend after the other, `--test-concurrency` files at a time (HERALD_TEST_CONCURRENCY,
 * default 2: the box's cores). Both backends at once was measured slower in total than this, and
 * its extra load made the timing-sensitive fault tests fail: the suite is bound by CPU, mostly
 * each file's start (node and tsx, imports, a PGlite instance: ~3 s of CPU a file).
 */
const concurrency = Number(process.env.HERALD_TEST_CONCURRENCY ?? 2);

async function runBackend(backend, ownFiles) {
  const started = Date.now();
  const summaryFile = join(tmpdir(), `herald-tests-${process.pid}-${backend}.json`);
  const folder = mkdtempSync(join(tmpdir(), `herald-templates-${backend}-`));
  const templates = await prepareTemplates(backend, folder);
  const code = await new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [
        '--import', 'tsx',
        '--test', `--test-concurrency=${concurrency}`,
        '--test-reporter=spec', '--test-reporter-destination=stdout',
        `--test-reporter=${summaryReporter}`, `--test-reporter-destination=${summaryFile}`,
        ...ownFiles,
      ],
      { stdio: 'inherit', env: { ...process.env, ...templates, NODE_OPTIONS, HERALD_TEST_BACKEND: backend } },
    );
    child.on('exit', (c) => resolve(c ?? 1));
  });
  await dropTemplates(templates);
  rmSync(folder, { recursive: true, force: true });
  let summary = { counts: {}, files: {} };
  try {
    summary = JSON.parse(readFileSync(summaryFile, 'utf8'));
  } catch {
    // No summary: the run crashed before its end; its exit code counts as a failure below.
  }
  rmSync(summaryFile, { force: true });
  const count = (k) => summary.counts[k] ?? 0;
  const run = { pass: count('pass'), fail: count('fail') + count('cancelled'), skipped: count('skipped') + count('todo') };
  return { backend, code, run, seconds: Math.round((Date.now() - started) / 1000), fileMs: summary.files };
}

const suiteStarted = Date.now();
const filesOf = (i) => (i === 0 ? files : files.filter((f) => !databaseFree.has(f)));
if (databaseFree.size > 0 && backends.length > 1) {
  console.log(`(${databaseFree.size} database-free test files run once, with ${backends[0]})`);
}
const results = [];
for (const [i, backend] of backends.entries()) {
  console.log(`\n=== tests on ${backend} ===`);
  results.push(await runBackend(backend, filesOf(i)));
}
let failedRuns = 0;
console.log('');
for (const r of results) {
  console.log(`--- ${r.backend}: ${r.run.pass} passed, ${r.run.fail} failed, ${r.run.skipped} skipped (${r.seconds} s)`);
  for (const k of Object.keys(totals)) totals[k] += r.run[k];
  printSlowest(r.fileMs);
  if (r.code !== 0) failedRuns++;
}
if (results.length > 1) console.log(`--- both backends: ${Math.round((Date.now() - suiteStarted) / 1000)} s`);
/** The files whose tests took longest, to show where the time goes. */
function printSlowest(fileMs, shown = Number(process.env.HERALD_TEST_SLOWEST ?? 8)) {
  const slowest = Object.entries(fileMs)
    .map(([file, ms]) => ({ ms, file: file.replace(`${process.cwd()}/`, '') }))
    .sort((a, b) => b.ms - a.ms);
  if (slowest.length < 2 || shown <= 0) return;
  console.log(`    slowest: ${slowest.slice(0, shown).map((f) => `${f.file} ${(f.ms / 1000).toFixed(1)} s`).join(', ')}`);
}
if (failedRuns > 0 && totals.fail === 0) totals.fail = failedRuns; // a run crashed outside any test
console.log(`\n${totals.pass} passed, ${totals.fail} failed${totals.skipped ? `, ${totals.skipped} skipped` : ''}`);
process.exit(totals.fail > 0 ? 1 : 0);
