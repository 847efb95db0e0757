import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { serve as serveHttp, type ServerType } from '@hono/node-server';
import { Hono } from 'hono';
import { Client, serve as serveWorkflow, WorkflowNonRetryableError } from '@upstash/workflow';
import { createWorkflow, serveMany } from '@upstash/workflow/hono';
import { defineConfig, rule, workflow, z } from '../../src/index.ts';
import { getMessages } from '../../src/storage/queries/http-workflows.ts';
import { getRun } from '../../src/storage/queries/runs.ts';
import { eventually } from '../helpers/herald.ts';
import { createWorkflowHerald, QSTASH_TOKEN, type WorkflowHerald } from '../helpers/workflow.ts';

/**
 * An unmodified @upstash/workflow app (serve() from the real package) runs against herald: QSTASH_URL
 * points at herald, signature verification on, the Client triggers and notifies.
 */
const SIGNING = { QSTASH_CURRENT_SIGNING_KEY: 'sig_test_current_0123456789', QSTASH_NEXT_SIGNING_KEY: 'sig_test_next_0123456789' };

const config = defineConfig({
  events: { 'noop': rule({ schema: z.object({}), recipients: (_c, to) => to.users([]), inApp: { title: 'x' } }) },
  workflows: {
    // A code-first workflow: the SDK's client.notify wakes it like an HTTP one.
    'code-waiter': workflow<{ key: string }>({
      async run(input, step) {
        return (await step.waitForEvent('wait', `code-${input.key}`, { timeout: '1h' })).eventData;
      },
    }),
  },
});

/** How often each context.run body executed, per run id and step name. */
const executions = new Map<string, number>();
const executed = (runId: string, step: string) => executions.set(`${runId}/${step}`, (executions.get(`${runId}/${step}`) ?? 0) + 1);
let fragileBroken = true;
let inFlight = 0;
let maxInFlight = 0;
const failures: { runId: string; failStatus: number; failResponse: string; payload: unknown; tenant: string | null }[] = [];
const count = (runId: string, step: string) => executions.get(`${runId}/${step}`) ?? 0;

function listen(fetch: (req: Request) => Response | Promise<Response>): Promise<{ server: ServerType; url: string }> {
  return new Promise((resolve) => {
    const server = serveHttp({ fetch, port: 0, hostname: '127.0.0.1' }, (info: AddressInfo) =>
      resolve({ server, url: `http://127.0.0.1:${info.port}` }),
    );
  });
}

describe('@upstash/workflow serve() against herald', () => {
  let h: WorkflowHerald;
  let herald: { server: ServerType; url: string };
  let app: { server: ServerType; url: string };
  let client: Client;

  before(async () => {
    const routes = new Map<string, (req: Request) => Promise<Response>>();
    app = await listen(async (req) => {
      if (process.env.DEBUG_QSTASH) {
        const body = await req.clone().text();
        try {
          const steps = (JSON.parse(body) as { messageId: string; body: string }[]).map((s) => [s.messageId.slice(0, 10), Buffer.from(s.body, 'base64').toString()]);
          console.log(new URL(req.url).pathname, req.headers.get('upstash-message-id'), JSON.stringify(steps));
        } catch {
          console.log(new URL(req.url).pathname, body.slice(0, 200));
        }
      }
      const route = routes.get(new URL(req.url).pathname);
      return route ? route(req) : new Response('not found', { status: 404 });
    });
    // The app is on loopback: herald's outbound guard refuses it unless allow-listed.
    h = await createWorkflowHerald(config, { ...SIGNING, OUTBOUND_ALLOWLIST: new URL(app.url).host });
    herald = await listen(h.app.fetch);
    const env = { QSTASH_URL: herald.url, QSTASH_TOKEN, ...SIGNING };

    routes.set(
      '/approval',
      serveWorkflow<{ id: string }>(
        async (context) => {
          const { id } = context.requestPayload;
          const first = await context.run('first', () => {
            executed(context.workflowRunId, 'first');
            return { id, n: 1 };
          });
          await context.sleep('nap', 1);
          const approval = await context.waitForEvent('approval', `approve-${id}`, { timeout: '1h' });
          const never = await context.waitForEvent('never', `never-${id}`, { timeout: '1s' });
          return context.run('last', () => {
            executed(context.workflowRunId, 'last');
            return { first, approval: approval.eventData, approvalTimedOut: approval.timeout, neverTimedOut: never.timeout };
          });
        },
        { env, url: `${app.url}/approval` },
      ).handler,
    );
    // Parallel steps, context.notify to another run, forwarded user headers, a flaky step.
    routes.set(
      '/parallel',
      serveWorkflow<{ key: string }>(
        async (context) => {
          const tenant = context.headers.get('x-tenant');
          const [a, b] = await Promise.all([
            context.run('a', () => {
              executed(context.workflowRunId, 'a');
              return 'A';
            }),
            context.run('b', () => {
              executed(context.workflowRunId, 'b');
              return 'B';
            }),
          ]);
          const flaky = await context.run('flaky', () => {
            executed(context.workflowRunId, 'flaky');
            if (count(context.workflowRunId, 'flaky') < 3) throw new Error('not yet');
            return count(context.workflowRunId, 'flaky');
          });
          const told = await context.notify('tell', `ping-${context.requestPayload.key}`, { from: 'parallel' });
          return { a, b, flaky, tenant, reached: told.notifyResponse.length };
        },
        { env, url: `${app.url}/parallel` },
      ).handler,
    );
    routes.set(
      '/ping',
      serveWorkflow<{ key: string }>(
        async (context) => {
          const got = await context.waitForEvent('ping', `ping-${context.requestPayload.key}`, { timeout: '1h' });
          return { got: got.eventData, tenant: context.headers.get('x-tenant') };
        },
        { env, url: `${app.url}/ping` },
      ).handler,
    );
    routes.set(
      '/refuse',
      serveWorkflow(
        async (context) => {
          await context.run('check', () => {
            throw new WorkflowNonRetryableError('the order is invalid');
          });
        },
        { env, url: `${app.url}/refuse` },
      ).handler,
    );
    routes.set(
      '/cancel-self',
      serveWorkflow(
        async (context) => {
          await context.run('before', () => 1);
          await context.cancel();
        },
        { env, url: `${app.url}/cancel-self` },
      ).handler,
    );
    routes.set(
      '/doomed',
      serveWorkflow<{ order: string }>(
        async (context) => {
          await context.run('charge', () => {
            throw new Error('card processor unavailable');
          });
        },
        {
          env,
          url: `${app.url}/doomed`,
          failureFunction: async ({ context, failStatus, failResponse }) => {
            failures.push({ runId: context.workflowRunId, failStatus, failResponse, payload: context.requestPayload, tenant: context.headers.get('x-tenant') });
          },
        },
      ).handler,
    );
    // A third-party API for context.call: fails its first call, then echoes.
    let thirdPartyCalls = 0;
    routes.set('/third-party', async (req) => {
      thirdPartyCalls++;
      if (thirdPartyCalls === 1) return new Response('busy', { status: 503 });
      return Response.json({ method: req.method, auth: req.headers.get('authorization'), got: await req.json(), calls: thirdPartyCalls }, { headers: { 'x-api': 'yes' } });
    });
    routes.set(
      '/caller',
      serveWorkflow(
        async (context) => {
          const res = await context.call<{ got: unknown; calls: number }>('ask', {
            url: `${app.url}/third-party`,
            method: 'PUT',
            body: JSON.stringify({ q: 'hello' }),
            headers: { authorization: 'Bearer third-party-key' },
            retries: 2,
          });
          return { status: res.status, body: res.body, api: res.header['x-api'] };
        },
        { env, url: `${app.url}/caller` },
      ).handler,
    );
    routes.set(
      '/fragile',
      serveWorkflow<{ key: string }>(
        async (context) => {
          const before = await context.run('before', () => {
            executed(context.requestPayload.key, 'before');
            return 'done once';
          });
          const after = await context.run('breaks', () => {
            executed(context.requestPayload.key, 'breaks');
            if (fragileBroken) throw new Error('downstream is broken');
            return 'fixed';
          });
          return { before, after };
        },
        { env, url: `${app.url}/fragile` },
      ).handler,
    );
    // context.invoke between two workflows served together (serveMany, as the SDK requires).
    const child = createWorkflow(
      async (context) => {
        const doubled = await context.run('double', () => (context.requestPayload as { n: number }).n * 2);
        if (doubled > 100) throw new WorkflowNonRetryableError('too big');
        return { doubled };
      },
      { env },
    );
    const parent = createWorkflow(
      async (context) => {
        const ok = await context.invoke('small', { workflow: child, body: { n: 21 } });
        const bad = await context.invoke('big', { workflow: child, body: { n: 99 }, retries: 0 });
        return { ok: ok.body, okFailed: ok.isFailed, badFailed: bad.isFailed };
      },
      { env },
    );
    const many = new Hono().post('/many/:workflowId', serveMany({ parent, child }));
    routes.set('/many/parent', async (req) => many.fetch(req));
    routes.set('/many/child', async (req) => many.fetch(req));
    // sleepUntil, then parallel branches where one runs and one waits for an event.
    routes.set(
      '/timing',
      serveWorkflow<{ key: string; until: number; xDelayMs?: number }>(
        async (context) => {
          await context.sleepUntil('until', context.requestPayload.until);
          const [x, w] = await Promise.all([
            context.run('x', async () => {
              await new Promise((r) => setTimeout(r, context.requestPayload.xDelayMs ?? 0));
              return 'X';
            }),
            context.waitForEvent('w', `par-${context.requestPayload.key}`, { timeout: '1h' }),
          ]);
          return { x, w: w.eventData, slept: Date.now() >= context.requestPayload.until * 1000 };
        },
        { env, url: `${app.url}/timing` },
      ).handler,
    );
    // Flow control: each delivery holds the endpoint for a while; we record how many overlap.
    routes.set(
      '/throttled',
      (() => {
        const wf = serveWorkflow<{ n: number }>(
          async (context) => {
            await context.run('work', () => context.requestPayload.n);
          },
          { env, url: `${app.url}/throttled` },
        ).handler;
        return async (req: Request) => {
          inFlight++;
          maxInFlight = Math.max(maxInFlight, inFlight);
          try {
            await new Promise((r) => setTimeout(r, 60));
            return await wf(req);
          } finally {
            inFlight--;
          }
        };
      })(),
    );
    // Mid-rotation: the app still has an old current key, and herald's key as its next one.
    routes.set(
      '/rotated',
      serveWorkflow(
        async (context) => context.run('ok', () => 'verified with the next key'),
        { env: { ...env, QSTASH_CURRENT_SIGNING_KEY: 'sig_previous_key_000000', QSTASH_NEXT_SIGNING_KEY: SIGNING.QSTASH_CURRENT_SIGNING_KEY }, url: `${app.url}/rotated` },
      ).handler,
    );
    // Verifies signatures with keys herald does not sign with: every delivery is refused.
    routes.set(
      '/wrong-keys',
      serveWorkflow(
        async (context) => {
          await context.run('never', () => executed(context.workflowRunId, 'never'));
        },
        { env: { ...env, QSTASH_CURRENT_SIGNING_KEY: 'sig_someone_else_000000', QSTASH_NEXT_SIGNING_KEY: 'sig_someone_else_111111' }, url: `${app.url}/wrong-keys` },
      ).handler,
    );
    client = new Client({ baseUrl: herald.url, token: QSTASH_TOKEN });
  });

  const settled = (runId: string) =>
    eventually(async () => {
      const r = await getRun(h.db, runId);
      return r && r.state !== 'running' && r;
    }, 30_000);

  after(async () => {
    app?.server.close();
    herald?.server.close();
    await h?.close();
  });

  test('trigger → run → sleep → waitForEvent notified → waitForEvent timed out → result', { timeout: 60_000 }, async () => {
    const { workflowRunId } = await client.trigger({ url: `${app.url}/approval`, body: { id: 'po-1' } });
    assert.match(workflowRunId, /^wfr_/);

    const waiters = await eventually(async () => {
      const w = await client.getWaiters({ eventId: 'approve-po-1' });
      return w.length > 0 && w;
    }, 20_000);
    assert.equal(waiters.length, 1);
    assert.equal(waiters[0]!.url, `${app.url}/approval`);

    const notified = await client.notify({ eventId: 'approve-po-1', eventData: { approved: true, by: 'ana' } });
    assert.equal(notified.length, 1);
    assert.equal((notified[0] as unknown as { workflowRunId: string }).workflowRunId, workflowRunId);

    const run = await eventually(async () => {
      const r = await getRun(h.db, workflowRunId);
      return r && r.state !== 'running' && r;
    }, 20_000);
    assert.equal(run.state, 'completed', run.error ?? '');
    assert.deepEqual(run.result, {
      first: { id: 'po-1', n: 1 },
      approval: { approved: true, by: 'ana' },
      approvalTimedOut: false,
      neverTimedOut: true,
    });
    assert.equal(executions.get(`${workflowRunId}/first`), 1, 'a step body runs once');
    assert.equal(executions.get(`${workflowRunId}/last`), 1);
  });

  test('run-scoped notify sent before the run waits is kept and consumed (lookback)', { timeout: 60_000 }, async () => {
    const { workflowRunId } = await client.trigger({ url: `${app.url}/approval`, body: { id: 'po-2' } });
    // The run is still at its first step or its sleep: nobody waits for approve-po-2 yet.
    const early = await client.notify({ eventId: 'approve-po-2', eventData: 'yes', workflowRunId });
    assert.equal(early.length, 1);
    const run = await settled(workflowRunId);
    assert.equal(run.state, 'completed', run.error ?? '');
    assert.equal((run.result as { approval: unknown }).approval, 'yes');
  });

  test('parallel steps, retried steps, context.notify waking another run, forwarded headers', { timeout: 60_000 }, async () => {
    const { workflowRunId: pinged } = await client.trigger({ url: `${app.url}/ping`, body: { key: 'k1' }, headers: { 'x-tenant': 'acme' } });
    await eventually(async () => (await client.getWaiters({ eventId: 'ping-k1' })).length === 1, 20_000);
    const { workflowRunId } = await client.trigger({ url: `${app.url}/parallel`, body: { key: 'k1' }, headers: { 'x-tenant': 'globex' } });
    const run = await settled(workflowRunId);
    assert.equal(run.state, 'completed', run.error ?? '');
    assert.deepEqual(run.result, { a: 'A', b: 'B', flaky: 3, tenant: 'globex', reached: 1 });
    assert.equal(count(workflowRunId, 'a'), 1);
    assert.equal(count(workflowRunId, 'b'), 1);
    const other = await settled(pinged);
    assert.deepEqual(other.result, { got: { from: 'parallel' }, tenant: 'acme' });
  });

  test('WorkflowNonRetryableError fails the run without retries', { timeout: 60_000 }, async () => {
    const { workflowRunId } = await client.trigger({ url: `${app.url}/refuse`, body: {} });
    const run = await settled(workflowRunId);
    assert.equal(run.state, 'failed');
    assert.match(run.error!, /489/);
  });

  test('context.cancel() cancels the run; the ended run refuses more steps and its history is gone (404)', { timeout: 60_000 }, async () => {
    const { workflowRunId } = await client.trigger({ url: `${app.url}/cancel-self`, body: {} });
    const run = await settled(workflowRunId);
    assert.equal(run.state, 'cancelled');
    const history = await h.app.request(`/v2/workflows/runs/${workflowRunId}`, { headers: { authorization: `Bearer ${QSTASH_TOKEN}` } });
    assert.equal(history.status, 404);
    const late = await h.app.request('/v2/batch', {
      method: 'POST',
      headers: { authorization: `Bearer ${QSTASH_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify([{ destination: `${app.url}/cancel-self`, headers: { 'Upstash-Workflow-RunId': workflowRunId }, body: '{}' }]),
    });
    assert.equal(late.status, 400);
  });

  test('deliveries are signed: an app verifying with other keys refuses them and the run fails after its retries', { timeout: 60_000 }, async () => {
    const { workflowRunId } = await client.trigger({ url: `${app.url}/wrong-keys`, body: {}, retries: 0 });
    const run = await settled(workflowRunId);
    assert.equal(run.state, 'failed');
    assert.equal(count(workflowRunId, 'never'), 0, 'the app never ran a step from an unverified request');
  });

  test('after its last retry a run fails and its failureFunction runs once, with the error and the payload', { timeout: 60_000 }, async () => {
    const { workflowRunId } = await client.trigger({ url: `${app.url}/doomed`, body: { order: 'o-9' }, retries: 1, headers: { 'x-tenant': 'acme' } });
    const run = await settled(workflowRunId);
    assert.equal(run.state, 'failed');
    assert.match(run.error!, /card processor unavailable/);
    const called = await eventually(async () => {
      const f = failures.filter((x) => x.runId === workflowRunId);
      return f.length > 0 && f;
    }, 20_000);
    assert.equal(called.length, 1);
    assert.equal(called[0]!.failStatus, 500);
    assert.match(called[0]!.failResponse, /card processor unavailable/);
    assert.deepEqual(called[0]!.payload, { order: 'o-9' });
    assert.equal(called[0]!.tenant, 'acme');
  });

  test('client.logs shows a run with its state, result and steps; client.cancel cancels by id and by URL prefix', { timeout: 60_000 }, async () => {
    const { workflowRunId: done } = await client.trigger({ url: `${app.url}/approval`, body: { id: 'po-logs' } });
    await eventually(async () => (await client.getWaiters({ eventId: 'approve-po-logs' })).length === 1, 20_000);
    await client.notify({ eventId: 'approve-po-logs', eventData: { ok: 1 } });
    assert.equal((await settled(done)).state, 'completed');

    const { runs } = await client.logs({ workflowRunId: done });
    assert.equal(runs.length, 1);
    const log = runs[0]!;
    assert.equal(log.workflowRunId, done);
    assert.equal(log.workflowUrl, `${app.url}/approval`);
    assert.equal(log.workflowState, 'RUN_SUCCESS');
    assert.deepEqual(JSON.parse(log.workflowRunResponse!), (await getRun(h.db, done))!.result);
    const logged = log.steps.flatMap((g) => g.steps as unknown as Record<string, unknown>[]);
    const names = logged.map((st) => st.stepName);
    assert.deepEqual(names, ['first', 'nap', 'approval', 'never', 'last']);
    const approval = logged.find((st) => st.stepName === 'approval')!;
    assert.equal(approval.waitEventId, 'approve-po-logs');
    assert.equal(approval.waitTimeout, false);

    const a = (await client.trigger({ url: `${app.url}/ping`, body: { key: 'cancel-a' } })).workflowRunId;
    const b = (await client.trigger({ url: `${app.url}/ping`, body: { key: 'cancel-b' } })).workflowRunId;
    await eventually(async () => (await client.getWaiters({ eventId: 'ping-cancel-b' })).length === 1, 20_000);
    assert.deepEqual(await client.cancel({ ids: [a] }), { cancelled: 1 });
    assert.equal((await getRun(h.db, a))!.state, 'cancelled');
    assert.equal((await client.getWaiters({ eventId: 'ping-cancel-a' })).length, 0, "the cancelled run's waiter is gone");
    assert.deepEqual(await client.cancel({ urlStartingWith: `${app.url}/pi` }), { cancelled: 1 });
    assert.equal((await getRun(h.db, b))!.state, 'cancelled');
    assert.equal((await getRun(h.db, done))!.state, 'completed', 'finished runs are not touched');
  });

  test('context.call: herald makes the call (retrying a 503), and the workflow gets status, body and headers', { timeout: 60_000 }, async () => {
    const { workflowRunId } = await client.trigger({ url: `${app.url}/caller`, body: {} });
    const run = await settled(workflowRunId);
    assert.equal(run.state, 'completed', run.error ?? '');
    assert.deepEqual(run.result, {
      status: 200,
      body: { method: 'PUT', auth: 'Bearer third-party-key', got: { q: 'hello' }, calls: 2 },
      api: ['yes'],
    });
  });

  test('the outbound guard: a workflow URL on a loopback address that is not allow-listed is refused and the run fails', { timeout: 60_000 }, async () => {
    // Same app, but named "localhost": its host:port is not on the allow-list, and it resolves to loopback.
    const url = `http://localhost:${new URL(app.url).port}/approval`;
    const { workflowRunId } = await client.trigger({ url, body: { id: 'guarded' } });
    const run = await settled(workflowRunId);
    assert.equal(run.state, 'failed');
    assert.match(run.error!, /refused to connect to localhost .*OUTBOUND_ALLOWLIST/);
  });

  test('a failed run lands in the DLQ; resume continues from the failed step, restart from the start; delete removes', { timeout: 90_000 }, async () => {
    fragileBroken = true;
    const a = (await client.trigger({ url: `${app.url}/fragile`, body: { key: 'dlq-a' }, retries: 0 })).workflowRunId;
    const b = (await client.trigger({ url: `${app.url}/fragile`, body: { key: 'dlq-b' }, retries: 0 })).workflowRunId;
    const c = (await client.trigger({ url: `${app.url}/fragile`, body: { key: 'dlq-c' }, retries: 0 })).workflowRunId;
    for (const id of [a, b, c]) assert.equal((await settled(id)).state, 'failed');

    const { messages } = await client.dlq.list({ filter: { workflowRunId: a } });
    assert.equal(messages.length, 1);
    const entry = messages[0]!;
    assert.equal(entry.workflowRunId, a);
    assert.equal(entry.workflowUrl, `${app.url}/fragile`);
    assert.equal(entry.responseStatus, 500);
    assert.match(entry.responseBody, /downstream is broken/);
    assert.deepEqual(JSON.parse(entry.body), { key: 'dlq-a' });

    fragileBroken = false;
    const resumed = await client.dlq.resume({ dlqId: entry.dlqId });
    assert.notEqual(resumed.workflowRunId, a, 'resume starts a new run');
    const done = await settled(resumed.workflowRunId);
    assert.equal(done.state, 'completed', done.error ?? '');
    assert.deepEqual(done.result, { before: 'done once', after: 'fixed' });
    assert.equal(count('dlq-a', 'before'), 1, 'resume kept the steps that had succeeded');

    const dlqB = (await client.dlq.list({ filter: { workflowRunId: b } })).messages[0]!;
    const restarted = await client.dlq.restart({ dlqId: dlqB.dlqId });
    assert.equal((await settled(restarted.workflowRunId)).state, 'completed');
    assert.equal(count('dlq-b', 'before'), 2, 'restart ran the workflow from the beginning');

    const dlqC = (await client.dlq.list({ filter: { workflowRunId: c } })).messages[0]!;
    assert.equal((await client.dlq.delete(dlqC.dlqId)).deleted, 1);
    assert.equal((await client.dlq.list({ filter: { workflowRunId: c } })).messages.length, 0);
    assert.equal((await client.dlq.list({ filter: { workflowRunId: a } })).messages.length, 0, 'a resumed entry leaves the DLQ');
  });

  test('context.invoke starts a child run and hands its result (or its failure) back to the parent', { timeout: 60_000 }, async () => {
    const { workflowRunId } = await client.trigger({ url: `${app.url}/many/parent`, body: {} });
    const run = await settled(workflowRunId);
    assert.equal(run.state, 'completed', run.error ?? '');
    assert.deepEqual(run.result, { ok: { doubled: 42 }, okFailed: false, badFailed: true });
  });

  test('POST /v2/trigger/{url} (REST trigger, no SDK client) runs the workflow through the SDK\'s two-phase start', { timeout: 60_000 }, async () => {
    const res = await fetch(`${herald.url}/v2/trigger/${app.url}/approval`, {
      method: 'POST',
      headers: { authorization: `Bearer ${QSTASH_TOKEN}`, 'content-type': 'application/json', 'Upstash-Retries': '2' },
      body: JSON.stringify({ id: 'rest-1' }),
    });
    assert.equal(res.status, 200);
    const { workflowRunId, workflowCreatedAt } = (await res.json()) as { workflowRunId: string; workflowCreatedAt: number };
    assert.match(workflowRunId, /^wfr_/);
    assert.equal(typeof workflowCreatedAt, 'number');
    await eventually(async () => (await client.getWaiters({ eventId: 'approve-rest-1' })).length === 1, 20_000);
    await client.notify({ eventId: 'approve-rest-1', eventData: 'via rest' });
    const run = await settled(workflowRunId);
    assert.equal(run.state, 'completed', run.error ?? '');
    assert.equal((run.result as { approval: unknown }).approval, 'via rest');
    assert.equal(run.max_attempts, 3, 'the REST trigger\'s Upstash-Retries is kept');
    assert.equal(((run.config as { retries: number }).retries), 2);
  });

  test('sleepUntil, then Promise.all of a run and a wait', { timeout: 60_000 }, async () => {
    const until = Math.ceil(Date.now() / 1000) + 2;
    const { workflowRunId } = await client.trigger({ url: `${app.url}/timing`, body: { key: 't1', until } });
    await eventually(async () => (await client.getWaiters({ eventId: 'par-t1' })).length === 1, 20_000);
    assert.ok(Date.now() >= until * 1000 - 1000, 'the wait was registered after the sleepUntil time (database clock)');
    await client.notify({ eventId: 'par-t1', eventData: { go: true } });
    const run = await settled(workflowRunId);
    assert.equal(run.state, 'completed', run.error ?? '');
    assert.deepEqual(run.result, { x: 'X', w: { go: true }, slept: true });
  });

  test('a parallel branch whose result lands after its sibling started waiting still completes the run', { timeout: 60_000 }, async () => {
    // The wait registers first and the run's result arrives later: the resumed wait must come
    // after that result in the history the SDK is sent, or neither delivery holds both branches.
    const { workflowRunId } = await client.trigger({ url: `${app.url}/timing`, body: { key: 't2', until: 0, xDelayMs: 500 } });
    await eventually(async () => (await client.getWaiters({ eventId: 'par-t2' })).length === 1, 20_000);
    const isResultOfX = (bytes: Buffer | null) => {
      const step = JSON.parse(bytes?.toString('utf8') || '{}') as { stepName?: string; targetStep?: number };
      return step.stepName === 'x' && !step.targetStep;
    };
    await eventually(async () => (await getMessages(h.db, workflowRunId)).some((m) => isResultOfX(m.output_bytes)), 20_000);
    await client.notify({ eventId: 'par-t2', eventData: { go: 2 } });
    const run = await settled(workflowRunId);
    assert.equal(run.state, 'completed', run.error ?? '');
    assert.deepEqual(run.result, { x: 'X', w: { go: 2 }, slept: true });
  });

  test('client.notify from the SDK wakes a code-first herald workflow too', { timeout: 30_000 }, async () => {
    const runId = await h.start('code-waiter', { key: 'k9' });
    await eventually(async () => (await client.getWaiters({ eventId: 'code-k9' })).length === 1, 20_000);
    const [reached] = await client.notify({ eventId: 'code-k9', eventData: { from: 'sdk' } });
    assert.equal((reached as unknown as { workflowRunId: string }).workflowRunId, runId);
    assert.deepEqual((await h.settled(runId, 'completed')).result, { from: 'sdk' });
  });

  test('flow control: parallelism=1 on a key lets one delivery of its runs in flight at a time', { timeout: 60_000 }, async () => {
    maxInFlight = 0;
    const ids = await Promise.all(
      [1, 2, 3, 4, 5].map(async (n) =>
        (await client.trigger({ url: `${app.url}/throttled`, body: { n }, flowControl: { key: 'one-at-a-time', parallelism: 1 } })).workflowRunId,
      ),
    );
    for (const id of ids) assert.equal((await settled(id)).state, 'completed');
    assert.equal(maxInFlight, 1, 'never two deliveries of the key at once');
  });

  test('flow control: the rate window admits `rate` starts per period, then says how long to wait', async () => {
    const { takeFlowRate } = await import('../../src/storage/queries/flow-control.ts');
    const waits = [];
    for (let i = 0; i < 4; i++) waits.push(await h.db.transaction((tx) => takeFlowRate(tx, 'rate-test', 2, 60_000)));
    assert.deepEqual(waits.slice(0, 2), [0, 0]);
    assert.ok(waits[2]! > 0 && waits[2]! <= 60_000 && waits[3]! > 0, JSON.stringify(waits));
  });

  test('key rotation: an app whose next key is herald\'s current key accepts the deliveries', { timeout: 30_000 }, async () => {
    const { workflowRunId } = await client.trigger({ url: `${app.url}/rotated`, body: {} });
    const run = await settled(workflowRunId);
    assert.equal(run.state, 'completed', run.error ?? '');
    assert.equal(run.result, 'verified with the next key');
  });
});
