import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import config from '../fixtures/webhook.config.ts';
import { createChannelHerald, TENANT, type ChannelHerald } from '../helpers/channels.ts';
import { BACKEND } from '../helpers/db.ts';
import { eventually } from '../helpers/herald.ts';
import { startHerald } from '../helpers/processes.ts';

interface Hit {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  at: number;
}

/** A receiver whose behaviour depends on the path; every request is recorded. */
async function startReceiver() {
  const hits: Hit[] = [];
  const flaky = new Map<string, number>();
  const hanging: (() => void)[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '/';
      hits.push({ path, headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), at: Date.now() });
      if (path.startsWith('/flaky')) {
        const n = (flaky.get(path) ?? 0) + 1;
        flaky.set(path, n);
        if (n === 1) return res.writeHead(503, { 'retry-after': '2' }).end('busy');
      }
      if (path.startsWith('/gone')) return res.writeHead(410).end();
      if (path.startsWith('/redirect')) return res.writeHead(307, { location: 'http://169.254.169.254/latest/meta-data' }).end();
      if (path.startsWith('/teapot')) return res.writeHead(418).end('no');
      // The first request to /hang never gets an answer (its worker is killed meanwhile).
      if (path.startsWith('/hang') && hits.filter((h) => h.path === path).length === 1) {
        hanging.push(() => res.destroy());
        return;
      }
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    hits,
    close: () => {
      for (const h of hanging) h();
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe('webhooks', () => {
  let rx: Awaited<ReturnType<typeof startReceiver>>;
  let stranger: Awaited<ReturnType<typeof startReceiver>>;
  let h: ChannelHerald;
  before(async () => {
    rx = await startReceiver();
    stranger = await startReceiver(); // listening, but not allow-listed
    h = await createChannelHerald(config, { OUTBOUND_ALLOWLIST: `127.0.0.1:${rx.port}` });
  });
  after(async () => {
    await h?.close();
    await rx?.close();
    await stranger?.close();
  });

  const endpoint = async (url: string, eventTypes = ['order.shipped']) => {
    const res = await h.admin('/api/webhook-endpoints', { method: 'POST', body: JSON.stringify({ url, eventTypes, tenantId: TENANT }) });
    assert.equal(res.status, 201, await res.clone().text());
    return ((await res.json()) as { endpoint: { id: string; secret: string } }).endpoint;
  };
  const only = async (url: string) => {
    // Each test's event goes to its own endpoint only: disable the others.
    const { endpoints } = (await (await h.admin('/api/webhook-endpoints')).json()) as { endpoints: { id: string; disabled: boolean }[] };
    for (const e of endpoints) if (!e.disabled) await h.admin(`/api/webhook-endpoints/${e.id}`, { method: 'PATCH', body: JSON.stringify({ disabled: true }) });
    return endpoint(url);
  };
  const ship = async (orderId: string) => {
    const eventId = await h.emit('order.shipped', { tenantId: TENANT, orderId });
    const ds = await h.deliveriesOf(eventId);
    assert.equal(ds.length, 1, 'one delivery to the one enabled endpoint');
    return ds[0]!;
  };

  test('the receiver verifies the signature with the standardwebhooks package; webhook-id is the delivery id', async () => {
    const ep = await only(`http://127.0.0.1:${rx.port}/ok`);
    const d = await ship('o-1');
    await h.until(d.id, ['sent']);
    const hit = rx.hits.find((x) => x.headers['webhook-id'] === d.id)!;
    assert.ok(hit, 'the receiver got the delivery');
    const verified = new Webhook(ep.secret).verify(hit.body, hit.headers as Record<string, string>) as { type: string; data: unknown; timestamp: string };
    assert.equal(verified.type, 'order.shipped');
    assert.deepEqual(verified.data, { orderId: 'o-1' });
    assert.ok(!Number.isNaN(Date.parse(verified.timestamp)));
    assert.throws(() => new Webhook(ep.secret).verify(hit.body.replace('o-1', 'o-2'), hit.headers as Record<string, string>), 'a changed body fails verification');
  });

  test('503 with Retry-After is retried after that delay, with the same webhook-id and body', async () => {
    await only(`http://127.0.0.1:${rx.port}/flaky-1`);
    const d = await ship('o-2');
    const sent = await h.until(d.id, ['sent'], 20_000);
    const hits = rx.hits.filter((x) => x.headers['webhook-id'] === d.id);
    assert.equal(hits.length, 2);
    assert.ok(hits[1]!.at - hits[0]!.at >= 1900, `retried ${hits[1]!.at - hits[0]!.at} ms later; Retry-After asked for 2 s`);
    assert.equal(hits[0]!.body, hits[1]!.body);
    assert.equal(sent.attempts, 2);
    const attempts = await h.attempts(d.id);
    assert.deepEqual(attempts.map((a) => a.outcome), ['transient', 'sent']);
    assert.match(attempts[0]!.response ?? '', /^503/);
  });

  test('410 Gone dead-letters the delivery and disables the endpoint; later events skip it', async () => {
    const ep = await only(`http://127.0.0.1:${rx.port}/gone`);
    const d = await ship('o-3');
    const dead = await h.until(d.id, ['dead']);
    assert.match(dead.last_error ?? '', /410/);
    const got = (await (await h.admin(`/api/webhook-endpoints/${ep.id}`)).json()) as { endpoint: { disabled: boolean; disabledReason: string } };
    assert.equal(got.endpoint.disabled, true);
    assert.match(got.endpoint.disabledReason, /410/);
    const next = await h.emit('order.shipped', { tenantId: TENANT, orderId: 'o-4' });
    assert.equal((await h.deliveriesOf(next)).length, 0);
  });

  test('4xx other than 408/429 is permanent; a redirect is not followed', async () => {
    await only(`http://127.0.0.1:${rx.port}/teapot`);
    const teapot = await h.until((await ship('o-5')).id, ['dead']);
    assert.equal(teapot.attempts, 1);
    await only(`http://127.0.0.1:${rx.port}/redirect`);
    const redirected = await h.until((await ship('o-6')).id, ['dead']);
    assert.match(redirected.last_error ?? '', /307 redirect to http:\/\/169\.254\.169\.254\/latest\/meta-data not followed/);
    assert.equal(redirected.attempts, 1);
  });

  for (const [label, url] of [
    ['127.0.0.1 on a port not allow-listed', () => `http://127.0.0.1:${stranger.port}/x`],
    ['[::1]', () => `http://[::1]:${rx.port}/x`],
    ['169.254.169.254', () => 'http://169.254.169.254/latest/meta-data'],
    ['a decimal-encoded 127.0.0.1', () => `http://2130706433:${stranger.port}/x`],
    ['a name that resolves to loopback', () => `http://localhost:${stranger.port}/x`],
  ] as const) {
    test(`the outbound guard refuses ${label}: dead at once, nothing sent`, async () => {
      const before = stranger.hits.length;
      await only(url());
      const dead = await h.until((await ship(`g-${label}`)).id, ['dead']);
      assert.match(dead.last_error ?? '', /refused/);
      assert.equal(dead.attempts, 1, 'a refused address is not retried');
      assert.equal(stranger.hits.length, before, 'the listening server never saw a request');
    });
  }

  test('a worker killed mid-send: the delivery is sent again under the same webhook-id, nothing lost', { skip: BACKEND !== 'postgres' && 'kills a worker process: Postgres only', timeout: 60_000 }, async () => {
    await only(`http://127.0.0.1:${rx.port}/hang`);
    await h.worker.stop();
    const env = {
      DATABASE_URL: h.url!,
      HERALD_CONFIG: fileURLToPath(new URL('../fixtures/webhook.config.ts', import.meta.url)),
      OUTBOUND_ALLOWLIST: `127.0.0.1:${rx.port}`,
      HERALD_JOB_LEASE_MS: '1000',
      HERALD_JOB_POLL_MS: '100',
      HERALD_MAINTENANCE_MS: '100',
    };
    const first = startHerald(['worker'], env);
    try {
      await first.waitFor(/worker started/);
      const res = await h.post('/api/notifications/emit', { type: 'order.shipped', ctx: { tenantId: TENANT, orderId: 'o-crash' } });
      const { eventId } = (await res.json()) as { eventId: string };
      const d = await eventually(async () => (await h.deliveriesOf(eventId))[0]);
      // The worker is in the middle of the POST (the receiver holds it): kill it.
      await eventually(async () => rx.hits.some((x) => x.headers['webhook-id'] === d.id));
      await first.kill('SIGKILL');
      const second = startHerald(['worker'], env);
      try {
        await second.waitFor(/worker started/);
        const sent = await h.until(d.id, ['sent'], 30_000);
        const hits = rx.hits.filter((x) => x.headers['webhook-id'] === d.id);
        assert.equal(hits.length, 2, 'the receiver saw the message twice, under one webhook-id: a detectable duplicate');
        assert.equal(hits[0]!.body, hits[1]!.body);
        assert.equal(sent.attempts, 2);
        assert.deepEqual((await h.attempts(d.id)).map((a) => a.outcome), ['lost', 'sent']);
      } finally {
        await second.kill('SIGKILL');
      }
    } finally {
      await first.kill('SIGKILL');
      await h.worker.start();
    }
  });
});

describe('per-host rate limit', () => {
  let rx: Awaited<ReturnType<typeof startReceiver>>;
  let h: ChannelHerald;
  before(async () => {
    rx = await startReceiver();
    h = await createChannelHerald({ ...config, delivery: { perHost: '2/1h' } }, { OUTBOUND_ALLOWLIST: `127.0.0.1:${rx.port}` });
  });
  after(async () => {
    await h?.close();
    await rx?.close();
  });

  test('beyond N requests per period to one host, a delivery waits for a free slot: not sent, not dropped, no attempt spent', async () => {
    const res = await h.admin('/api/webhook-endpoints', {
      method: 'POST',
      body: JSON.stringify({ url: `http://127.0.0.1:${rx.port}/hooks/rate`, eventTypes: ['order.shipped'], tenantId: TENANT }),
    });
    assert.equal(res.status, 201, await res.clone().text());
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await h.deliveriesOf(await h.emit('order.shipped', { tenantId: TENANT, orderId: `r-${i}` })))[0]!.id);
    const rows = await eventually(async () => {
      const r = (await h.db.query<{ state: string; held_reason: string | null; next_attempt_at: Date | null; attempts: number }>(
        `SELECT state, held_reason, next_attempt_at, attempts FROM herald_deliveries WHERE id = ANY($1::uuid[])`,
        [ids],
      )).rows;
      return r.filter((x) => x.state === 'sent').length === 2 && r.some((x) => x.held_reason) ? r : undefined;
    });
    assert.equal(rx.hits.filter((x) => x.path === '/hooks/rate').length, 2, 'the host got exactly two requests');
    const waiting = rows.find((x) => x.state !== 'sent')!;
    assert.equal(waiting.state, 'queued');
    assert.equal(waiting.held_reason, `rate limit 2/1h per host 127.0.0.1:${rx.port}`);
    assert.equal(waiting.attempts, 0, 'waiting for a slot spends no attempt');
    const inMs = waiting.next_attempt_at!.getTime() - Date.now();
    assert.ok(inMs > 3_500_000 && inMs <= 3_600_100, `next try when the oldest request ages out (in ${inMs} ms)`);
  });
});
