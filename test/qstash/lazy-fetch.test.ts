import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { serve as serveHttp, type ServerType } from '@hono/node-server';
import { Client, serve as serveWorkflow } from '@upstash/workflow';
import { defineConfig, rule, z } from '../../src/index.ts';
import { eventually } from '../helpers/herald.ts';
import { createWorkflowHerald, QSTASH_TOKEN, type WorkflowHerald } from '../helpers/workflow.ts';

/**
 * Lazy fetch: with HERALD_LAZY_FETCH_BYTES=0 every delivery goes with an empty body, and the real
 * SDK fetches the run's history from herald (GET /v2/workflows/runs/{id}) before each step.
 */
const config = defineConfig({ events: { noop: rule({ schema: z.object({}), recipients: (_c, to) => to.users([]), inApp: { title: 'x' } }) } });

let h: WorkflowHerald;
let heraldServer: ServerType;
let appServer: ServerType;
let heraldUrl = '';
let appUrl = '';
let handler: (req: Request) => Promise<Response> = async () => new Response('starting', { status: 503 });
const bodies: number[] = [];

const listen = (fetch: (req: Request) => Response | Promise<Response>) =>
  new Promise<{ server: ServerType; url: string }>((resolve) => {
    const server = serveHttp({ fetch, port: 0, hostname: '127.0.0.1' }, (info: AddressInfo) => resolve({ server, url: `http://127.0.0.1:${info.port}` }));
  });

before(async () => {
  const app = await listen(async (req) => {
    bodies.push((await req.clone().arrayBuffer()).byteLength);
    return handler(req);
  });
  appServer = app.server;
  appUrl = app.url;
  h = await createWorkflowHerald(config, { HERALD_LAZY_FETCH_BYTES: '0', OUTBOUND_ALLOWLIST: new URL(appUrl).host });
  const herald = await listen(h.app.fetch);
  heraldServer = herald.server;
  heraldUrl = herald.url;
  handler = serveWorkflow<{ n: number }>(
    async (context) => {
      const a = await context.run('a', () => context.requestPayload.n + 1);
      const b = await context.run('b', () => a * 10);
      const got = await context.waitForEvent('w', 'lazy-go', { timeout: '1h' });
      return { a, b, got: got.eventData };
    },
    { env: { QSTASH_URL: heraldUrl, QSTASH_TOKEN }, url: `${appUrl}/wf` },
  ).handler;
});
after(async () => {
  appServer?.close();
  heraldServer?.close();
  await h?.close();
});

test('every delivery has an empty body and the SDK fetches the history from herald', { timeout: 60_000 }, async () => {
  const client = new Client({ baseUrl: heraldUrl, token: QSTASH_TOKEN });
  const { workflowRunId } = await client.trigger({ url: `${appUrl}/wf`, body: { n: 4 } });
  await eventually(async () => (await client.getWaiters({ eventId: 'lazy-go' })).length === 1, 20_000);
  await client.notify({ eventId: 'lazy-go', eventData: 'now' });
  const run = await h.settled(workflowRunId, 'completed', 20_000);
  assert.deepEqual(run.result, { a: 5, b: 50, got: 'now' });
  assert.ok(bodies.length >= 4, `several deliveries (${bodies.length})`);
  assert.ok(bodies.every((n) => n === 0), `all delivery bodies were empty: ${bodies.join(',')}`);
  // Once the run has ended, the history is gone for the SDK (404 means "ended").
  const gone = await fetch(`${heraldUrl}/v2/workflows/runs/${workflowRunId}`, { headers: { authorization: `Bearer ${QSTASH_TOKEN}` } });
  assert.equal(gone.status, 404);
});
