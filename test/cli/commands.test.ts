import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { jwtVerify } from 'jose';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { BACKEND, createTestDb, type TestDb, seededDataDir } from '../helpers/db.ts';
import { distIsFresh } from '../../scripts/dist.mjs';
import { HERALD_BIN, startHerald } from '../helpers/processes.ts';
import { loadOrCreateDevSecrets } from '../../src/cli/dev-secrets.ts';

const run = promisify(execFile);
const herald = (args: string[], env: Record<string, string>, cwd?: string) =>
  // Bounded: a command that should refuse to start but serves instead fails the test, not hangs it.
  run(process.execPath, [HERALD_BIN, ...args], { env: { ...process.env, DATABASE_URL: '', ...env }, cwd, timeout: 60_000 }).then(
    (r) => ({ code: 0, ...r }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );

let dir = '';
let t: TestDb | undefined;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'herald-cli-'));
  if (BACKEND === 'pglite') seededDataDir(join(dir, 'data'), 'empty'); // skips initdb in the herald processes (migrate still applies every migration)
  if (BACKEND === 'postgres') t = await createTestDb({ migrate: false });
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
  await t?.drop();
});
const dbEnv = (): Record<string, string> => (t ? { DATABASE_URL: t.url! } : { HERALD_DATA_DIR: join(dir, 'data') });

test('herald start refuses to run without a signing secret (fail closed)', async () => {
  const r = await herald(['start'], { ...dbEnv(), REQUEST_SIGNING_SECRET: '', REQUEST_SIGNING_DISABLED: '', PORT: '0' });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /REQUEST_SIGNING_SECRET is not set/);
});

test('REQUEST_SIGNING_DISABLED=1 is refused in production', async () => {
  const r = await herald(['start'], { ...dbEnv(), REQUEST_SIGNING_DISABLED: '1', NODE_ENV: 'production', PORT: '0' });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /refused when NODE_ENV=production/);
});

test('a missing HERALD_CONFIG stops herald start before it touches the database', async () => {
  const untouched = join(dir, 'untouched');
  const r = await herald(['start'], {
    HERALD_DATA_DIR: untouched, HERALD_CONFIG: join(dir, 'nope.config.ts'), REQUEST_SIGNING_SECRET: 'a-production-grade-secret-123', PORT: '0',
  });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /config file not found: .*nope\.config\.ts/);
  // (The data-directory lock may be taken; the database in it is never created or migrated.)
  assert.equal(existsSync(join(untouched, 'pgdata')), false, 'no database created, nothing migrated');
});

test('a boolean variable that is not 1, 0, true or false stops herald start, naming it', async () => {
  const r = await herald(['start'], { ...dbEnv(), WORKFLOWS_DISABLED: 'yes', REQUEST_SIGNING_SECRET: 'a-production-grade-secret-123', PORT: '0' });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /WORKFLOWS_DISABLED must be 1, 0, true or false \(or unset\), got "yes"/);
});

test('herald migrate applies, then reports up to date', async () => {
  const first = await herald(['migrate'], dbEnv());
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /applied 0001_foundation/);
  const second = await herald(['migrate'], dbEnv());
  assert.match(second.stdout, /up to date/);
});

test('herald start serves /healthz and /readyz, and stops cleanly on SIGTERM', { timeout: 60_000 }, async () => {
  const p = startHerald(['start'], { ...dbEnv(), REQUEST_SIGNING_SECRET: 'a-production-grade-secret-123', JWT_SECRET: 'x'.repeat(32), PORT: '0', DATABASE_URL: dbEnv().DATABASE_URL ?? '' });
  try {
    const m = await p.waitFor(/"url":"(http:[^"]+)","msg":"listening"/);
    const ready = await fetch(`${m[1]}/readyz`);
    assert.equal(ready.status, 200);
    assert.equal((await fetch(`${m[1]}/healthz`)).status, 200);
  } finally {
    await p.kill('SIGTERM');
  }
  assert.equal(p.child.exitCode, 0, p.output());
});

test('a SIGTERM that arrives while herald start is still starting its worker stops it cleanly', { timeout: 60_000 }, async () => {
  // "listening" is logged before the worker has started; the signal lands in between (or just after).
  for (let i = 0; i < 3; i++) {
    const p = startHerald(['start'], { ...dbEnv(), REQUEST_SIGNING_SECRET: 'a-production-grade-secret-123', JWT_SECRET: 'x'.repeat(32), PORT: '0', DATABASE_URL: dbEnv().DATABASE_URL ?? '' });
    await p.waitFor(/"msg":"listening"/);
    await p.kill('SIGTERM');
    assert.equal(p.child.exitCode, 0, p.output());
    assert.match(p.output(), /shutting down/);
  }
});

// npm install builds dist/ (the prepare script); bin/herald.js runs it only while no source file is
// newer, else the sources, so an edit is never silently ignored.
test('herald start runs the compiled build when it is current, the sources otherwise', { timeout: 60_000 }, async (t) => {
  const env = { ...dbEnv(), REQUEST_SIGNING_SECRET: 'a-production-grade-secret-123', JWT_SECRET: 'x'.repeat(32), PORT: '0', DATABASE_URL: dbEnv().DATABASE_URL ?? '' };
  const builds: string[] = [];
  for (const fromSource of ['', '1']) {
    const p = startHerald(['start'], { ...env, HERALD_FROM_SOURCE: fromSource });
    try {
      builds.push((await p.waitFor(/"build":"(\w+)"[^\n]*"msg":"listening"/))[1]!);
    } finally {
      await p.kill('SIGTERM');
    }
  }
  assert.equal(builds[1], 'source');
  if (!distIsFresh()) return t.skip('dist/ is missing or older than src/ (run npm run build): only the fallback was checked');
  assert.equal(builds[0], 'compiled');
});

test('a broken config stops startup with the template error and where it is', async () => {
  await writeFile(
    join(dir, 'herald.config.ts'),
    `export default { events: { 'x.y': { recipients: (c, to) => to.users([]), inApp: { title: '{{ unclosed ' } } } };\n`,
  );
  const r = await herald(['start'], { ...dbEnv(), REQUEST_SIGNING_SECRET: 'a-production-grade-secret-123', PORT: '0' }, dir);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /events\["x\.y"\]\.inApp\.title/);
});

test('herald token mints an inbox JWT for a user: with JWT_SECRET, or herald dev\'s secret; refused in production without JWT_SECRET', async () => {
  const user = '0b5e7a1c-0000-4000-8000-00000000b0b0';
  const secret = 'y'.repeat(32);
  const withEnv = await herald(['token', user], { JWT_SECRET: secret, HERALD_DATA_DIR: join(dir, 'no-dev') });
  assert.equal(withEnv.code, 0, withEnv.stderr);
  const { payload } = await jwtVerify(withEnv.stdout.trim(), Buffer.from(secret));
  assert.equal(payload.sub, user);
  assert.ok(payload.exp! - payload.iat! === 30 * 86_400, 'valid 30 days by default');

  const devDir = join(dir, 'dev-data');
  const dev = await loadOrCreateDevSecrets(devDir);
  const fromDev = await herald(['token', user, '--ttl', '2h'], { HERALD_DATA_DIR: devDir });
  assert.equal(fromDev.code, 0, fromDev.stderr);
  const checked = await jwtVerify(fromDev.stdout.trim(), Buffer.from(dev.jwtSecret));
  assert.equal(checked.payload.exp! - checked.payload.iat!, 7_200);

  const prod = await herald(['token', user], { NODE_ENV: 'production', HERALD_DATA_DIR: devDir });
  assert.equal(prod.code, 1);
  assert.match(prod.stderr, /JWT_SECRET is not set/);
  const none = await herald(['token', user], { HERALD_DATA_DIR: join(dir, 'no-dev') });
  assert.equal(none.code, 1);
  assert.match(none.stderr, /JWT_SECRET is not set.*herald dev/);
  const bad = await herald(['token', 'not-a-uuid'], { JWT_SECRET: secret });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /usage: herald token <userId>/);
});

test('herald emit explains usage errors and unreachable servers', async () => {
  const usage = await herald(['emit'], {});
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /usage: herald emit/);
  const badJson = await herald(['emit', 'obra.completed', '{nope'], { REQUEST_SIGNING_SECRET: 'a-production-grade-secret-123' });
  assert.equal(badJson.code, 2);
  assert.match(badJson.stderr, /ctx is not valid JSON/);
  const down = await herald(['emit', 'obra.completed', '{}', '--url', 'http://127.0.0.1:9'], { REQUEST_SIGNING_SECRET: 'a-production-grade-secret-123' });
  assert.equal(down.code, 1);
  assert.match(down.stderr, /could not reach herald/);
});
