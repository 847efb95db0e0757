import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { createTestHerald, type TestHerald } from '../helpers/herald.ts';

/**
 * Issue 24, item 11: inputs that JavaScript accepted and Postgres then refused, answered 500 with a
 * stack trace in the log. Each must be a 400 that names the parameter, on both backends.
 */
const ADMIN_TOKEN = 'bad-input-admin-token-0123456789';
const QSTASH_TOKEN = 'bad-input-qstash-token-0123456789';

let h: TestHerald;
let userToken = '';
before(async () => {
  h = await createTestHerald({ env: { ADMIN_TOKEN, QSTASH_TOKEN } });
  userToken = await h.token(randomUUID());
});
after(() => h?.close());

const cursorOf = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
const NUL = '%00';
const as = (token: string) => ({ authorization: `Bearer ${token}` });

async function expect400(method: string, path: string, token: string, param: string) {
  const res = await h.app.request(path, { method, headers: as(token) });
  const text = await res.text();
  assert.equal(res.status, 400, `${method} ${path}: ${res.status} ${text}`);
  assert.match(JSON.parse(text).error, new RegExp(param.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')), `the error names ${param}: ${text}`);
}

describe('inbox cursors whose date JavaScript accepts and Postgres rejects', () => {
  const uuid = randomUUID();
  for (const date of ['1', '2020', '12/31', '+275760-09-13T00:00:00.000Z']) {
    test(`cursor ["${date}", uuid] is a 400 naming cursor`, () =>
      expect400('GET', `/api/notifications?cursor=${cursorOf([date, uuid])}`, userToken, 'cursor'));
  }
});

describe('NUL bytes in query parameters and path ids', () => {
  const cases: [string, string, 'user' | 'admin' | 'qstash', string][] = [
    ['GET', `/api/notifications?type=a${NUL}b`, 'user', 'type'],
    ['POST', `/api/notifications/read-all?type=a${NUL}b`, 'user', 'type'],
    ['DELETE', `/api/preferences?channel=email&scope=a${NUL}b`, 'user', 'scope'],
    ['GET', `/api/workflows/runs?workflow=a${NUL}b`, 'admin', 'workflow'],
    ['GET', `/v2/workflows/logs?workflowRunId=a${NUL}b`, 'qstash', 'workflowRunId'],
    ['GET', `/v2/workflows/logs?workflowUrl=a${NUL}b`, 'qstash', 'workflowUrl'],
    ['GET', `/v2/dlq?url=a${NUL}b`, 'qstash', 'url'],
    ['POST', `/v2/workflows/dlq/callback/a${NUL}b`, 'qstash', 'dlqId'],
    ['DELETE', `/v2/workflows/dlq/a${NUL}b`, 'qstash', 'dlqId'],
  ];
  for (const [method, path, who, param] of cases) {
    test(`${method} ${path} is a 400 naming ${param}`, () =>
      expect400(method, path, who === 'user' ? userToken : who === 'admin' ? ADMIN_TOKEN : QSTASH_TOKEN, param));
  }
});

describe('dates out of Postgres range', () => {
  test('toDate=99999999999999999999 on /v2/dlq is a 400 naming toDate', () =>
    expect400('GET', '/v2/dlq?toDate=99999999999999999999', QSTASH_TOKEN, 'toDate'));
  test('toDate=99999999999999999999 on /v2/workflows/logs is a 400 naming toDate', () =>
    expect400('GET', '/v2/workflows/logs?toDate=99999999999999999999', QSTASH_TOKEN, 'toDate'));
  // Found by test/http/fuzz.test.ts (seed 1): a run due in year 3e12.
  test('Upstash-Not-Before: 99999999999999999999 on a trigger is a 400 naming the header', async () => {
    const res = await h.app.request('/v2/trigger/https://app.example/wf', { method: 'POST', headers: { ...as(QSTASH_TOKEN), 'upstash-not-before': '99999999999999999999' } });
    const text = await res.text();
    assert.equal(res.status, 400, text);
    assert.match(JSON.parse(text).error, /Upstash-Not-Before/);
  });
});

describe('the other cursors are strict too', () => {
  const bad = cursorOf(['12/31', 'x']);
  test('admin runs cursor', () => expect400('GET', `/api/workflows/runs?cursor=${bad}`, ADMIN_TOKEN, 'cursor'));
  test('QStash logs cursor', () => expect400('GET', `/v2/workflows/logs?cursor=${bad}`, QSTASH_TOKEN, 'cursor'));
  test('DLQ cursor', () => expect400('GET', `/v2/dlq?cursor=${bad}`, QSTASH_TOKEN, 'cursor'));
});

describe('valid inputs still work', () => {
  test('a real inbox cursor pages', async () => {
    const res = await h.app.request(`/api/notifications?cursor=${cursorOf(['2024-05-01T10:00:00.123456Z', randomUUID()])}`, { headers: as(userToken) });
    assert.equal(res.status, 200, await res.text());
  });
  test('a real DLQ filter answers', async () => {
    const res = await h.app.request(`/v2/dlq?toDate=${Date.now()}&url=${encodeURIComponent('https://app.example/wf')}`, { headers: as(QSTASH_TOKEN) });
    assert.equal(res.status, 200, await res.text());
  });
});
