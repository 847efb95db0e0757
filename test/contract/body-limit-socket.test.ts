import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, test } from 'node:test';
import { serve, type ServerType } from '@hono/node-server';
import { obraCompleted, seedTenant } from '../helpers/fixtures.ts';
import { createTestHerald, signedHeaders, type TestHerald } from '../helpers/herald.ts';

// The body limit over a real socket, where Node's HTTP parser frames each request: the limit is
// read from Content-Length before the body, a chunked body is counted while it streams, and a
// request with neither has no body. (test/contract/seed.test.ts covers app.request.)

let h: TestHerald;
let server: ServerType;
let port = 0;
before(async () => {
  h = await createTestHerald({ env: { HERALD_MAX_BODY_BYTES: '2048' } });
  await new Promise<void>((resolve) => {
    server = serve({ fetch: h.app.fetch, port: 0, hostname: '127.0.0.1' }, (info) => {
      port = info.port;
      resolve();
    });
  });
});
after(async () => {
  await new Promise((resolve) => server.close(resolve));
  await h?.close();
});

function send(method: string, path: string, headers: Record<string, string>, chunks: string[] = []) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    for (const c of chunks) req.write(c);
    req.end();
  });
}

test('an emit within the limit is accepted, with Content-Length or chunked', async () => {
  const { tenantId, users } = await seedTenant(h);
  for (const chunked of [false, true]) {
    const raw = JSON.stringify(obraCompleted(tenantId, users.actor!, chunked ? 'chunked' : 'sized'));
    const headers = { ...signedHeaders(raw), ...(chunked ? { 'transfer-encoding': 'chunked' } : { 'content-length': String(Buffer.byteLength(raw)) }) };
    const res = await send('POST', '/api/notifications/emit', headers, chunked ? [raw.slice(0, 40), raw.slice(40)] : [raw]);
    assert.equal(res.status, 200, res.body);
    assert.equal(JSON.parse(res.body).ok, true);
  }
});

test('over the limit is 413 before the signature is even checked: declared length, or counted while chunked', async () => {
  const big = 'x'.repeat(3000);
  const sized = await send('POST', '/api/notifications/emit', { 'content-type': 'application/json', 'content-length': String(big.length) }, [big]);
  assert.equal(sized.status, 413);
  assert.match(JSON.parse(sized.body).error, /exceeds 2048 bytes/);
  const chunked = await send('POST', '/api/notifications/emit', { 'content-type': 'application/json', 'transfer-encoding': 'chunked' }, [big.slice(0, 1500), big.slice(1500)]);
  assert.equal(chunked.status, 413);
  assert.match(JSON.parse(chunked.body).error, /exceeds 2048 bytes/);
});

test('a request without a body passes (GET, and a bodiless POST is judged by its route)', async () => {
  const health = await send('GET', '/healthz', {});
  assert.equal(health.status, 200);
  const empty = await send('POST', '/api/notifications/emit', { 'content-type': 'application/json' });
  assert.equal(empty.status, 401, 'unsigned: the route answered, the limit let it through');
});
