import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { signRequest } from '../../src/signing.ts';
import { BACKEND, createTestDb, type TestDb, seededDataDir } from '../helpers/db.ts';
import { eventually } from '../helpers/herald.ts';
import { HERALD_BIN, startHerald, type Proc } from '../helpers/processes.ts';

const SECRET = 'a-production-grade-secret-123';
const ADMIN_TOKEN = 'cli-test-admin-token-0123456789';
const USER = '0190a0a0-0000-7000-8000-0000000000c3';
const TENANT = '0190a0a0-0000-7000-8000-0000000000d4';
const exec = promisify(execFile);

let dir = '';
let t: TestDb | undefined;
let server: Proc | undefined;
let url = '';

const herald = (args: string[]) =>
  exec(process.execPath, [HERALD_BIN, ...args], {
    env: { ...process.env, HERALD_URL: url, ADMIN_TOKEN, REQUEST_SIGNING_SECRET: SECRET, HERALD_DATA_DIR: join(dir, 'cli-data') },
  }).then(
    (r) => ({ code: 0, ...r }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'herald-cli-dl-'));
  if (BACKEND === 'pglite') seededDataDir(join(dir, 'data')); // skips initdb in the herald processes
  if (BACKEND === 'postgres') t = await createTestDb({ migrate: false });
  await writeFile(
    join(dir, 'herald.config.ts'),
    `export default {
  events: {
    'report.ready': {
      recipients: (ctx, to) => to.users(ctx.userId),
      email: { subject: 'Your report {{ ctx.name }} is ready', text: 'Download it from the app.' },
      webhook: true,
    },
  },
};
`,
  );
  server = startHerald(
    ['start'],
    { ...(t ? { DATABASE_URL: t.url! } : { DATABASE_URL: '', HERALD_DATA_DIR: join(dir, 'data') }), REQUEST_SIGNING_SECRET: SECRET, ADMIN_TOKEN, PORT: '0', HERALD_JOB_POLL_MS: '50' },
    dir,
  );
  url = (await server.waitFor(/"url":"(http:[^"]+)","msg":"listening"/))[1]!;
  const user = JSON.stringify({ tenantId: TENANT, email: 'carol@example.test', name: 'Carol' });
  const signed = signRequest(Buffer.from(SECRET), Math.floor(Date.now() / 1000), 'PUT', `/api/users/${USER}`, user);
  const put = await fetch(`${url}/api/users/${USER}`, { method: 'PUT', body: user, headers: { 'content-type': 'application/json', ...signed } });
  assert.equal(put.status, 201);
  // An endpoint on a metadata address: the outbound guard refuses it, so its delivery is dead.
  const ep = await fetch(`${url}/api/webhook-endpoints`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ url: 'http://169.254.169.254/hook' }),
  });
  assert.equal(ep.status, 201);
});
after(async () => {
  await server?.kill('SIGTERM');
  await rm(dir, { recursive: true, force: true });
  await t?.drop();
});

test('herald outbox, deliveries and redrive: the dev outbox, the dead-letter list, one delivery, a redrive', { timeout: 60_000 }, async () => {
  const emitted = await herald(['emit', 'report.ready', JSON.stringify({ userId: USER, name: 'Q3' })]);
  assert.equal(emitted.code, 0, emitted.stderr);

  const outbox = await eventually(async () => {
    const r = await herald(['outbox']);
    return r.stdout.includes('Your report Q3 is ready') && r;
  });
  assert.match(outbox.stdout, /── email to carol@example\.test · report\.ready/);
  assert.match(outbox.stdout, /Subject: Your report Q3 is ready\n\nDownload it from the app\./);

  const dead = await eventually(async () => {
    const r = await herald(['deliveries', '--state', 'dead']);
    return /webhook\s+dead/.test(r.stdout) && r;
  });
  assert.match(dead.stdout, /^ID\s+CHANNEL\s+STATE/);
  assert.match(dead.stdout, /refused to connect to 169\.254\.169\.254/);
  const id = /^([0-9a-f-]{36})\s+webhook/m.exec(dead.stdout)![1]!;

  const one = await herald(['deliveries', id]);
  assert.equal(one.code, 0);
  const view = JSON.parse(one.stdout) as { delivery: { state: string }; attempts: { outcome: string }[] };
  assert.equal(view.delivery.state, 'dead');
  assert.deepEqual(view.attempts.map((a) => a.outcome), ['permanent']);

  const redriven = await herald(['deliveries', 'redrive', '--all']);
  assert.equal(redriven.code, 0, redriven.stderr);
  assert.match(redriven.stdout, new RegExp(`redriven 1: ${id}`));
  // Still refused: it is dead again after one more attempt, and the log shows both.
  await eventually(async () => {
    const r = JSON.parse((await herald(['deliveries', id])).stdout) as { delivery: { state: string }; attempts: unknown[] };
    return r.delivery.state === 'dead' && r.attempts.length === 2;
  });

  const usage = await herald(['deliveries', 'redrive']);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /usage: herald deliveries redrive/);
});
