import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { serve as serveHttp, type ServerType } from '@hono/node-server';
import { Client, serve as serveWorkflow } from '@upstash/workflow';
import { BACKEND, createTestDb, type TestDb, seededDataDir } from '../helpers/db.ts';
import { eventually } from '../helpers/herald.ts';
import { freePort, startHerald, type Proc } from '../helpers/processes.ts';

/**
 * An @upstash/workflow app's runs survive herald restarts: herald is stopped in the middle of a
 * sleep and again while the run waits for an event (SIGKILL on Postgres, a crash; SIGTERM on
 * PGlite, whose single-process data directory is only safe across clean stops), started again on
 * the same port, and the run finishes with every step run once.
 */
const QSTASH_TOKEN = 'restart-test-qstash-token-0123';
const SIGNING = { QSTASH_CURRENT_SIGNING_KEY: 'sig_restart_current_0123456', QSTASH_NEXT_SIGNING_KEY: 'sig_restart_next_0123456' };
const stopSignal = BACKEND === 'postgres' ? 'SIGKILL' : 'SIGTERM';

let dir = '';
let t: TestDb | undefined;
let herald: Proc | undefined;
let app: ServerType | undefined;
let appUrl = '';
let heraldPort = 0;
const executions: Record<string, number> = {};
let handler: (req: Request) => Promise<Response> = async () => new Response('starting', { status: 503 });

function startHeraldProcess(): Proc {
  return startHerald(['start'], {
    ...(t ? { DATABASE_URL: t.url! } : { DATABASE_URL: '', HERALD_DATA_DIR: join(dir, 'data') }),
    REQUEST_SIGNING_SECRET: 'a-production-grade-secret-123',
    QSTASH_TOKEN,
    ...SIGNING,
    PORT: String(heraldPort),
    HERALD_JOB_POLL_MS: '50',
    HERALD_JOB_LEASE_MS: '2000',
    OUTBOUND_ALLOWLIST: new URL(appUrl).host,
  });
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'herald-restart-'));
  if (BACKEND === 'pglite') seededDataDir(join(dir, 'data')); // skips initdb in the herald processes
  if (BACKEND === 'postgres') t = await createTestDb({ migrate: false });
  heraldPort = await freePort();
  await new Promise<void>((resolve) => {
    app = serveHttp({ fetch: (req) => handler(req), port: 0, hostname: '127.0.0.1' }, (info: AddressInfo) => {
      appUrl = `http://127.0.0.1:${info.port}`;
      resolve();
    });
  });
  const env = { QSTASH_URL: `http://127.0.0.1:${heraldPort}`, QSTASH_TOKEN, ...SIGNING };
  handler = serveWorkflow<{ id: string }>(
    async (context) => {
      const a = await context.run('a', () => {
        executions.a = (executions.a ?? 0) + 1;
        return 'A';
      });
      await context.sleep('nap', 3);
      const b = await context.run('b', () => {
        executions.b = (executions.b ?? 0) + 1;
        return 'B';
      });
      const go = await context.waitForEvent('go', `go-${context.requestPayload.id}`, { timeout: '1h' });
      return { a, b, go: go.eventData };
    },
    { env, url: `${appUrl}/wf` },
  ).handler;
  herald = startHeraldProcess();
  await herald.waitFor(/"msg":"listening"/);
});
after(async () => {
  app?.close();
  await herald?.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
  await t?.drop();
});

test(`a run continues across herald restarts (${stopSignal}) during a sleep and during a wait`, { timeout: 90_000 }, async () => {
  const client = new Client({ baseUrl: `http://127.0.0.1:${heraldPort}`, token: QSTASH_TOKEN });
  const { workflowRunId } = await client.trigger({ url: `${appUrl}/wf`, body: { id: 'r1' } });
  const stepNames = async () => {
    const { runs } = await client.logs({ workflowRunId });
    return { state: runs[0]?.workflowState, steps: (runs[0]?.steps ?? []).flatMap((g) => g.steps as unknown as { stepName: string }[]).map((s) => s.stepName) };
  };
  // Stop herald while the run sleeps.
  await eventually(async () => (await stepNames()).steps.includes('nap'), 20_000);
  await herald!.kill(stopSignal);
  herald = startHeraldProcess();
  await herald.waitFor(/"msg":"listening"/);

  // Stop it again while the run waits for its event.
  await eventually(async () => (await client.getWaiters({ eventId: 'go-r1' })).length === 1, 30_000);
  await herald!.kill(stopSignal);
  herald = startHeraldProcess();
  await herald.waitFor(/"msg":"listening"/);

  const waiters = await client.getWaiters({ eventId: 'go-r1' });
  assert.equal(waiters.length, 1, 'the waiter is still there after the restart');
  await client.notify({ eventId: 'go-r1', eventData: 'after restarts' });
  await eventually(async () => (await stepNames()).state === 'RUN_SUCCESS', 30_000);
  const { runs } = await client.logs({ workflowRunId });
  assert.deepEqual(JSON.parse(runs[0]!.workflowRunResponse!), { a: 'A', b: 'B', go: 'after restarts' });
  assert.deepEqual(executions, { a: 1, b: 1 }, 'no step ran twice');
});
