import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { defineConfig, workflow } from '../../src/index.ts';
import { ADMIN_TOKEN, createWorkflowHerald, QSTASH_TOKEN, type WorkflowHerald } from '../helpers/workflow.ts';

/** Every malformed notify / admin request gets a clear 4xx with an {error} body, never a 5xx. */
const config = defineConfig({
  events: {},
  workflows: {
    waits: workflow<{ key: string }>({
      async run(input, step) {
        return (await step.waitForEvent('w', `bad-${input.key}`, { timeout: '1h' })).eventData;
      },
    }),
  },
});

describe('notify and admin API: bad input', () => {
  let h: WorkflowHerald;
  before(async () => {
    h = await createWorkflowHerald(config, { HERALD_MAX_BODY_BYTES: '4096' });
  });
  after(() => h?.close());

  const call = (path: string, init: RequestInit = {}, token: string | null = QSTASH_TOKEN) => {
    const headers = new Headers(init.headers);
    if (token !== null) headers.set('authorization', `Bearer ${token}`);
    return h.app.request(path, { method: 'POST', ...init, headers });
  };
  const expectError = async (res: Response, status: number, re: RegExp) => {
    assert.equal(res.status, status);
    const body = (await res.json()) as { error?: unknown };
    assert.equal(typeof body.error, 'string', JSON.stringify(body));
    assert.match(body.error as string, re);
  };

  test('missing, wrong, and wrongly-typed tokens are 401 {error}, with a WWW-Authenticate challenge', async () => {
    await expectError(await call('/v2/notify/e1', {}, null), 401, /.+/);
    await expectError(await call('/v2/notify/e1', {}, 'wrong-token-wrong-token'), 401, /.+/);
    await expectError(await call('/v2/notify/e1', { headers: { authorization: `Basic ${QSTASH_TOKEN}` } }, null), 401, /.+/);
    const res = await call('/v2/notify/e1', {}, null);
    assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer/);
    // The query form works; a wrong one does not.
    assert.equal((await call(`/v2/notify/e1?qstash_token=${QSTASH_TOKEN}`, {}, null)).status, 201);
    await expectError(await call('/v2/notify/e1?qstash_token=nope', {}, null), 401, /.+/);
    // The admin API has its own token: the notify token does not open it.
    await expectError(await call('/api/workflows/runs', { method: 'GET' }, QSTASH_TOKEN), 401, /.+/);
    assert.equal((await call('/api/workflows/runs', { method: 'GET' }, ADMIN_TOKEN)).status, 200);
  });

  test('malformed event ids are 400 {error}', async () => {
    for (const id of ['has%20space', 'tab%09x', 'a%2Fb', 'x'.repeat(257), 'nul%00x']) {
      await expectError(await call(`/v2/notify/${id}`), 400, /invalid event id/);
      await expectError(await call(`/v2/waiters/${id}`, { method: 'GET' }), 400, /invalid event id/);
    }
  });

  test('unknown and malformed run ids are 4xx {error}', async () => {
    await expectError(await call('/v2/notify/wfr_doesnotexist/e1'), 404, /not found/);
    await expectError(await call('/v2/notify/bad%20run/e1'), 400, /invalid workflow run id/);
    await expectError(await call('/api/workflows/runs/wfr_nope', { method: 'GET' }, ADMIN_TOKEN), 404, /not found/);
    await expectError(await call('/api/workflows/runs/wfr_nope/cancel', {}, ADMIN_TOKEN), 404, /not found/);
    await expectError(await call('/api/workflows/nope/runs', {}, ADMIN_TOKEN), 404, /no workflow named "nope"/);
  });

  test('a body over the limit is 413 {error}, and nothing is delivered', async () => {
    const runId = await h.start('waits', { key: 'big' });
    await h.waiting(runId, 'bad-big');
    await expectError(await call('/v2/notify/bad-big', { body: 'x'.repeat(5000) }), 413, /exceeds 4096 bytes/);
    await expectError(await call(`/v2/notify/${runId}/bad-big`, { body: new Uint8Array(10_000) }), 413, /exceeds/);
    assert.equal((await h.run(runId)).state, 'running', 'still waiting');
    assert.equal((await call('/v2/notify/bad-big', { body: 'ok' })).status, 201);
    await h.settled(runId, 'completed');
  });

  test('admin bad input: invalid filters and cursors are 400 naming the field', async () => {
    await expectError(await call('/api/workflows/runs?state=sleeping', { method: 'GET' }, ADMIN_TOKEN), 400, /state must be one of/);
    await expectError(await call('/api/workflows/runs?limit=0', { method: 'GET' }, ADMIN_TOKEN), 400, /limit/);
    await expectError(await call('/api/workflows/runs?cursor=!!', { method: 'GET' }, ADMIN_TOKEN), 400, /cursor/);
    await expectError(await call('/api/workflows/waits/runs', { body: '[1,2]', headers: { 'content-type': 'application/json' } }, ADMIN_TOKEN), 400, /.+/);
  });

  test('a burst over HERALD_NOTIFY_RATE_LIMIT is 429 with Retry-After', async () => {
    const limited = await createWorkflowHerald(config, { HERALD_NOTIFY_RATE_LIMIT: '3' });
    try {
      const statuses: number[] = [];
      let retryAfter: string | null = null;
      for (let i = 0; i < 20; i++) {
        const res = await limited.app.request('/v2/notify/burst', { method: 'POST', headers: { authorization: `Bearer ${QSTASH_TOKEN}` } });
        statuses.push(res.status);
        if (res.status === 429) {
          retryAfter = res.headers.get('retry-after');
          await expectError(res, 429, /.+/);
        }
      }
      assert.ok(statuses.includes(429), statuses.join(','));
      assert.ok(statuses.every((s) => s === 201 || s === 429), statuses.join(','));
      assert.match(retryAfter ?? '', /^\d+$/);
    } finally {
      await limited.close();
    }
  });
});
