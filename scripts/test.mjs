#!/usr/bin/env node
// Runs the whole test suite once per backend (PGlite, then Postgres) and prints one closing line,
// "N passed, N failed[, N skipped]", summed from the runs' real TAP results.
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
const templatesScript = new URL('../test/helpers/db-templates.ts', import.meta.url).pathname;

let failedRuns = 0;
const seconds = {};
for (const backend of backends) {
  const started = Date.now();
  const tap = join(tmpdir(), `herald-tests-${process.pid}-${backend}.tap`);
  console.log(`\n=== tests on ${backend} ===`);
  const folder = mkdtempSync(join(tmpdir(), `herald-templates-${backend}-`));
  const templates = await prepareTemplates(backend, folder);
  const code = await new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [
        '--import', 'tsx',
        '--test', '--test-concurrency=2',
        '--test-reporter=spec', '--test-reporter-destination=stdout',
        '--test-reporter=tap', `--test-reporter-destination=${tap}`,
        ...files,
      ],
      { stdio: 'inherit', env: { ...process.env, ...templates, NODE_OPTIONS, HERALD_TEST_BACKEND: backend } },
    );
    child.on('exit', (c) => resolve(c ?? 1));
  });
  await dropTemplates(templates);
  rmSync(folder, { recursive: true, force: true });
  seconds[backend] = Math.round((Date.now() - started) / 1000);
  const out = readFileSync(tap, 'utf8');
  rmSync(tap, { force: true });
  // The TAP footer of the top-level run: "# pass N", "# fail N", ...
  const count = (k) => [...out.matchAll(new RegExp(`^# ${k} (\\d+)$`, 'gm'))].reduce((s, m) => s + Number(m[1]), 0);
  const run = { pass: count('pass'), fail: count('fail') + count('cancelled'), skipped: count('skipped') + count('todo') };
  console.log(`--- ${backend}: ${run.pass} passed, ${run.fail} failed, ${run.skipped} skipped (${seconds[backend]} s)`);
  for (const k of Object.keys(totals)) totals[k] += run[k];
  if (code !== 0) failedRuns++;
}
if (failedRuns > 0 && totals.fail === 0) totals.fail = failedRuns; // a run crashed outside any test
console.log(`\n${totals.pass} passed, ${totals.fail} failed${totals.skipped ? `, ${totals.skipped} skipped` : ''}`);
process.exit(totals.fail > 0 ? 1 : 0);
