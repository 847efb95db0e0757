import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { serve as serveHttp, type ServerType } from '@hono/node-server';
import { Client, serve as serveWorkflow } from '@upstash/workflow';
import { QSTASH_DEV } from '../../src/workflow/http/dev-credentials.ts';
import { BACKEND, createTestDb, type TestDb, seededDataDir } from '../helpers/db.ts';
import { eventually } from '../helpers/herald.ts';
import { freePort, startHerald, type Proc } from '../helpers/processes.ts';

/**
 * `herald dev --qstash-dev`: an app in the SDK's dev mode (QSTASH_DEV=true, nothing else but the
 * port) runs its workflows against herald, signature verification on with the dev keys.
 */
let dir = '';
let t: TestDb | undefined;
let herald: Proc | undefined;
let app: ServerType | undefined;
let port = 0;
let appUrl = '';
let handler: (req: Request) => Promise<Response> = async () => new Response('starting', { status: 503 });

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'herald-qstash-dev-'));
  if (BACKEND === 'pglite') seededDataDir(join(dir, 'data')); // skips initdb in the herald processes
  if (BACKEND === 'postgres') t = await createTestDb({ migrate: false });
  port = await freePort();
  await new Promise<void>((resolve) => {
    app = serveHttp({ fetch: (req) => handler(req), port: 0, hostname: '127.0.0.1' }, (info: AddressInfo) => {
      appUrl = `http://127.0.0.1:${info.port}`;
      resolve();
    });
  });
  herald = startHerald(['dev', '--qstash-dev'], {
    ...(t ? { DATABASE_URL: t.url! } : { DATABASE_URL: '' }),
    HERALD_DATA_DIR: join(dir, 'data'),
    QSTASH_DEV_PORT: String(port),
    HERALD_JOB_POLL_MS: '50',
    OUTBOUND_ALLOWLIST: new URL(appUrl).host,
  });
  await herald.waitFor(/qstash\s+: dev mode/);
});
after(async () => {
  app?.close();
  await herald?.kill('SIGTERM');
  await rm(dir, { recursive: true, force: true });
  await t?.drop();
});

test('an app with QSTASH_DEV=true runs its workflow against herald dev --qstash-dev', { timeout: 60_000 }, async () => {
  // As an app would run: the SDK's qstash client reads these from process.env (this file runs in
  // its own process).
  const env = { QSTASH_DEV: 'true', QSTASH_DEV_PORT: String(port) };
  Object.assign(process.env, env);
  let finished: unknown;
  handler = serveWorkflow<{ name: string }>(
    async (context) => {
      const greeting = await context.run('greet', () => `hello ${context.requestPayload.name}`);
      await context.sleep('pause', 1);
      const reply = await context.waitForEvent('reply', `reply-${context.requestPayload.name}`, { timeout: '1h' });
      finished = { greeting, reply: reply.eventData };
      return finished;
    },
    { env, url: `${appUrl}/wf` },
  ).handler;
  const keys = await fetch(`http://127.0.0.1:${port}/v2/keys`, { headers: { authorization: `Bearer ${QSTASH_DEV.token}` } });
  assert.deepEqual(await keys.json(), { current: QSTASH_DEV.currentSigningKey, next: QSTASH_DEV.nextSigningKey });

  const client = new Client({}); // dev mode: no base URL, no token
  const { workflowRunId } = await client.trigger({ url: `${appUrl}/wf`, body: { name: 'ana' } });
  await eventually(async () => (await client.getWaiters({ eventId: 'reply-ana' })).length === 1, 30_000);
  await client.notify({ eventId: 'reply-ana', eventData: 'hi!' });
  await eventually(async () => finished !== undefined, 30_000);
  assert.deepEqual(finished, { greeting: 'hello ana', reply: 'hi!' });
  assert.match(workflowRunId, /^wfr_/);
});
