import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { secretBytes } from '../../src/config/settings.ts';
import { DEMO } from '../../src/cli/demo.ts';
import { signXSignature } from '../../src/signing.ts';
import { BACKEND, createTestDb, type TestDb } from '../helpers/db.ts';
import { HERALD_BIN, startHerald, type Proc } from '../helpers/processes.ts';

// `herald migrate` and a running `herald dev`/`start` on one PGlite directory: PGlite is one
// process's files, and a second process opening them aborted PGlite (5 of 7 rounds) and once left
// a directory every later `dev` refused with `Aborted()`. migrate takes the same pid-file lock.

const run = promisify(execFile);
const herald = (args: string[], env: Record<string, string>) =>
  run(process.execPath, [HERALD_BIN, ...args], { env: { ...process.env, DATABASE_URL: '', ...env }, timeout: 60_000 }).then(
    (r) => ({ code: 0, ...r }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );

const PGLITE_ONLY = BACKEND !== 'pglite' && 'the data-dir lock guards a PGlite directory; the PGlite run covers it';
const POSTGRES_ONLY = BACKEND !== 'postgres' && 'needs a Postgres server (DATABASE_URL)';

let root = '';
let t: TestDb | undefined;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'herald-migrate-lock-'));
  if (BACKEND === 'postgres') t = await createTestDb({ migrate: false });
});
after(async () => {
  await rm(root, { recursive: true, force: true });
  await t?.drop();
});

const devEnv = (dataDir: string) => ({ HERALD_DATA_DIR: dataDir, DATABASE_URL: '', PORT: '0', HERALD_FROM_SOURCE: '' });
const listening = async (p: Proc) => (await p.waitFor(/listening on (http:\/\/\S+)/, 60_000))[1]!;

test('herald migrate beside a running herald dev refuses, naming its pid, and the directory stays usable', { skip: PGLITE_ONLY, timeout: 120_000 }, async () => {
  const dataDir = join(root, 'busy');
  const dev = startHerald(['dev'], devEnv(dataDir));
  try {
    const url = await listening(dev);
    const owner = readFileSync(join(dataDir, 'herald.pid'), 'utf8').trim();
    assert.equal(owner, String(dev.child.pid), 'dev holds the lock');

    const r = await herald(['migrate'], { HERALD_DATA_DIR: dataDir });
    assert.notEqual(r.code, 0, `migrate must refuse; it printed:\n${r.stdout}${r.stderr}`);
    assert.match(r.stderr, new RegExp(`in use by herald process ${owner}\\b`));
    assert.doesNotMatch(r.stdout, /applied|up to date/, 'it never opened the database');
    assert.equal(readFileSync(join(dataDir, 'herald.pid'), 'utf8').trim(), owner, 'the refused migrate leaves the lock to dev');

    // dev keeps serving: an emit (signed with the directory's dev secret) is accepted.
    const { signingSecret } = JSON.parse(readFileSync(join(dataDir, 'dev-secrets.json'), 'utf8')) as { signingSecret: string };
    const res = await emitSigned(url, signingSecret);
    assert.equal(res.status, 200, await res.text());
    assert.equal((await fetch(`${url}/readyz`)).status, 200);
  } finally {
    await dev.kill('SIGTERM');
  }
  assert.equal(dev.child.exitCode, 0, dev.output());
  assert.equal(existsSync(join(dataDir, 'herald.pid')), false, 'dev released its lock');

  // Stopped: a new dev opens the directory and serves from it.
  const again = startHerald(['dev'], devEnv(dataDir));
  try {
    const url = await listening(again);
    assert.equal((await fetch(`${url}/readyz`)).status, 200);
  } finally {
    await again.kill('SIGTERM');
  }
});

test('herald migrate takes over a stale lock (its process is gone) and releases it', { skip: PGLITE_ONLY, timeout: 60_000 }, async () => {
  const dataDir = join(root, 'stale');
  await mkdir(dataDir, { recursive: true });
  await writeFile(join(dataDir, 'herald.pid'), String(await deadPid()));
  const r = await herald(['migrate'], { HERALD_DATA_DIR: dataDir });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /applied 0001_foundation/);
  assert.equal(existsSync(join(dataDir, 'herald.pid')), false, 'released when migrate is done');
});

test('with DATABASE_URL, herald migrate runs beside a running herald start (Postgres takes its own advisory lock)', { skip: POSTGRES_ONLY, timeout: 60_000 }, async () => {
  // Same HERALD_DATA_DIR for both: the PGlite lock must not get in the way of a Postgres deployment.
  const env = { DATABASE_URL: t!.url!, HERALD_DATA_DIR: join(root, 'pg'), REQUEST_SIGNING_SECRET: 'a-production-grade-secret-123', JWT_SECRET: 'x'.repeat(32), PORT: '0' };
  const start = startHerald(['start'], env);
  try {
    await start.waitFor(/"msg":"listening"/, 60_000);
    const r = await herald(['migrate'], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /up to date/);
  } finally {
    await start.kill('SIGTERM');
  }
});

/**
 * A pid no process can have: above the kernel's pid_max (a recently exited child's pid could be
 * reused by the time migrate looks, and then it would rightly refuse).
 */
async function deadPid(): Promise<number> {
  const max = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8').trim()) || 4_194_304;
  return max + 1;
}

async function emitSigned(url: string, secret: string): Promise<Response> {
  const ctx = { tenantId: DEMO.tenantId, actorId: DEMO.users[0].id, obra: { id: 'obra-1', name: 'Escuela', percentage: 100 } };
  const body = JSON.stringify({ type: 'obra.completed', ctx });
  return fetch(`${url}/api/notifications/emit`, {
    method: 'POST',
    body,
    headers: { 'content-type': 'application/json', 'x-signature': signXSignature(secretBytes(secret), body) },
  });
}
