import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { BACKEND, createTestDb, type TestDb, seededDataDir } from '../helpers/db.ts';
import { eventually } from '../helpers/herald.ts';
import { HERALD_BIN, startHerald, type Proc } from '../helpers/processes.ts';

const QSTASH_TOKEN = 'cli-test-qstash-token-0123456789';
const ADMIN_TOKEN = 'cli-test-admin-token-0123456789';
const exec = promisify(execFile);

let dir = '';
let t: TestDb | undefined;
let server: Proc | undefined;
let url = '';

/** Runs the CLI against the server started below; `env` overrides (e.g. no tokens). */
const herald = (args: string[], env: Record<string, string> = {}) =>
  exec(process.execPath, [HERALD_BIN, ...args], {
    env: { ...process.env, HERALD_URL: url, QSTASH_TOKEN, ADMIN_TOKEN, HERALD_DATA_DIR: join(dir, 'cli-data'), ...env },
  }).then(
    (r) => ({ code: 0, ...r }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'herald-cli-wf-'));
  if (BACKEND === 'pglite') seededDataDir(join(dir, 'data')); // skips initdb in the herald processes
  if (BACKEND === 'postgres') t = await createTestDb({ migrate: false });
  // A project's own config: one workflow that waits for an approval.
  await writeFile(
    join(dir, 'herald.config.ts'),
    `export default {
  events: {},
  workflows: {
    approval: {
      async run(input, step) {
        const got = await step.waitForEvent('approved', 'approval-' + input.id, { timeout: '1h' });
        return { approved: got.eventData };
      },
    },
  },
};
`,
  );
  server = startHerald(
    ['start'],
    {
      ...(t ? { DATABASE_URL: t.url! } : { DATABASE_URL: '', HERALD_DATA_DIR: join(dir, 'data') }),
      REQUEST_SIGNING_SECRET: 'a-production-grade-secret-123',
      JWT_SECRET: 'x'.repeat(32),
      QSTASH_TOKEN,
      ADMIN_TOKEN,
      PORT: '0',
      HERALD_JOB_POLL_MS: '50',
    },
    dir,
  );
  url = (await server.waitFor(/"url":"(http:[^"]+)","msg":"listening"/))[1]!;
});
after(async () => {
  await server?.kill('SIGTERM');
  await rm(dir, { recursive: true, force: true });
  await t?.drop();
});

test('herald runs and herald notify: list, inspect, wake a waiting run', { timeout: 60_000 }, async () => {
  const empty = await herald(['runs']);
  assert.equal(empty.code, 0, empty.stderr);
  assert.match(empty.stdout, /no runs/);

  const started = await fetch(`${url}/api/workflows/approval/runs`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ id: 'po-7' }),
  });
  assert.equal(started.status, 201);
  const { workflowRunId } = (await started.json()) as { workflowRunId: string };

  const shown = await eventually(async () => {
    const r = await herald(['runs', workflowRunId]);
    return /waiting for "approval-po-7"/.test(r.stdout) && r;
  });
  assert.match(shown.stdout, new RegExp(`^${workflowRunId}  approval  running`));
  assert.match(shown.stdout, /approved\s+wait\s+waiting/);

  const list = await herald(['runs', '--state', 'running']);
  assert.match(list.stdout, /^RUN\s+WORKFLOW\s+STATE/);
  assert.ok(list.stdout.includes(workflowRunId));

  const woke = await herald(['notify', 'approval-po-7', '{"by":"ana"}']);
  assert.equal(woke.code, 0, woke.stderr);
  assert.match(woke.stderr, /reached 1 waiter/);
  assert.equal((JSON.parse(woke.stdout) as { workflowRunId: string }[])[0]!.workflowRunId, workflowRunId);

  const done = await eventually(async () => {
    const r = await herald(['runs', workflowRunId, '--json']);
    const body = JSON.parse(r.stdout) as { run: { state: string; result: unknown } };
    return body.run.state === 'completed' && body;
  });
  assert.deepEqual(done.run.result, { approved: { by: 'ana' } });

  const nobody = await herald(['notify', 'approval-nobody', 'plain text']);
  assert.equal(nobody.code, 0);
  assert.match(nobody.stderr, /no waiter for "approval-nobody": nothing was delivered and nothing kept/);

  const ended = await herald(['notify', 'approval-po-7', '{}', '--run', workflowRunId]);
  assert.equal(ended.code, 1);
  assert.match(ended.stderr, /is not running \(it is completed\)/);

  const cancelEnded = await herald(['runs', workflowRunId, '--cancel']);
  assert.equal(cancelEnded.code, 1);
  assert.match(cancelEnded.stderr, /already ended/);
});

test('the workflow commands explain a missing token, a wrong token and bad usage', async () => {
  const noToken = await herald(['notify', 'x'], { QSTASH_TOKEN: '' });
  assert.equal(noToken.code, 2);
  assert.match(noToken.stderr, /no token: set QSTASH_TOKEN/);

  const wrong = await herald(['runs'], { ADMIN_TOKEN: 'not-the-admin-token-at-all' });
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /"error"/);

  const usage = await herald(['notify']);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /usage: herald notify/);

  const badState = await herald(['runs', '--state', 'sleeping']);
  assert.equal(badState.code, 1);
  assert.match(badState.stderr, /state must be one of/);
});
