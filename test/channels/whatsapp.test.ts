import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { toE164 } from '../../src/rules/phone.ts';
import { defineConfig, rule, z } from '../../src/index.ts';
import { ANA, BEN, createChannelHerald, type ChannelHerald } from '../helpers/channels.ts';

const TOKEN = 'EAAG-test-token';
const APP_SECRET = 'whatsapp-app-secret-0123456789';

/** A loopback server that speaks the Cloud API's request and error format. */
async function startCloudApi() {
  const requests: { auth: string | undefined; body: any }[] = [];
  const failures: { status: number; code?: number; message?: string }[] = [];
  let n = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      requests.push({ auth: req.headers.authorization, body });
      const send = (status: number, json: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(json));
      if (req.url !== '/v21.0/1098765/messages' || req.method !== 'POST') return send(404, { error: { message: 'Unknown path', type: 'OAuthException', code: 803 } });
      if (req.headers.authorization !== `Bearer ${TOKEN}`) return send(401, { error: { message: 'Invalid OAuth access token', type: 'OAuthException', code: 190 } });
      const f = failures.shift();
      if (f) return send(f.status, { error: { message: f.message ?? 'error', type: 'OAuthException', code: f.code, error_data: { details: 'test' }, fbtrace_id: 'Axyz' } });
      send(200, { messaging_product: 'whatsapp', contacts: [{ input: body.to, wa_id: body.to.slice(1) }], messages: [{ id: `wamid.TEST${++n}` }] });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { port: (server.address() as AddressInfo).port, requests, failNext: (...f: typeof failures) => failures.push(...f), close: () => new Promise<void>((r) => server.close(() => r())) };
}

const config = defineConfig({
  defaultLocale: 'es',
  events: {
    'pendiente.due': rule({
      schema: z.object({ assigneeId: z.string().uuid(), title: z.string() }),
      recipients: (ctx, to) => to.users(ctx.assigneeId),
      whatsapp: {
        template: { name: 'pendiente_vence', params: ['{{ recipient.name }}', '{{ ctx.title }}'] },
        text: 'Hola {{ recipient.name }}: "{{ ctx.title }}" vence hoy.',
      },
    }),
  },
  delivery: { maxAttempts: 4 },
});

describe('WhatsApp Cloud API', () => {
  let api: Awaited<ReturnType<typeof startCloudApi>>;
  let h: ChannelHerald;
  before(async () => {
    api = await startCloudApi();
    h = await createChannelHerald(config, {
      WHATSAPP_API_URL: `http://127.0.0.1:${api.port}/v21.0`,
      WHATSAPP_TOKEN: TOKEN,
      WHATSAPP_PHONE_NUMBER_ID: '1098765',
      WHATSAPP_APP_SECRET: APP_SECRET,
      OUTBOUND_ALLOWLIST: `127.0.0.1:${api.port}`,
    });
    await h.user(ANA, { name: 'Ana', phone: '+54 9 11 5555-1234', locale: 'es-AR' });
    await h.user(BEN, { name: 'Ben', phone: '11 5555 9999' });
  });
  after(async () => {
    await h?.close();
    await api?.close();
  });

  const statusWebhook = (body: unknown, secret = APP_SECRET) => {
    const raw = JSON.stringify(body);
    return h.app.request('/api/webhooks/whatsapp', {
      method: 'POST',
      body: raw,
      headers: { 'content-type': 'application/json', 'x-hub-signature-256': `sha256=${createHmac('sha256', secret).update(raw).digest('hex')}` },
    });
  };
  const due = async (title: string) => {
    const eventId = await h.emit('pendiente.due', { assigneeId: ANA, title });
    const ds = await h.deliveriesOf(eventId);
    assert.equal(ds.length, 1);
    return ds[0]!;
  };

  test('phone numbers are normalised to E.164; one without a country code is skipped with the reason', async () => {
    assert.equal(toE164('+54 9 11 5555-1234'), '+5491155551234');
    assert.equal(toE164('0044 (20) 7946.0958'), '+442079460958');
    assert.equal(toE164('11 5555 9999'), null);
    const res = await h.post('/api/notifications/dry-run', { type: 'pendiente.due', ctx: { assigneeId: BEN, title: 'x' } });
    const plan = (await res.json()) as { deliveries: unknown[]; skipped: { channel: string; reason: string }[] };
    assert.equal(plan.deliveries.length, 0);
    assert.match(plan.skipped[0]!.reason, /not in E\.164 form/);
  });

  test('outside the 24-hour window the approved template goes, with its parameters; the message id is stored', async () => {
    const d = await due('Revisar planos');
    const sent = await h.until(d.id, ['sent']);
    const req = api.requests.at(-1)!;
    assert.equal(req.auth, `Bearer ${TOKEN}`);
    assert.deepEqual(req.body, {
      messaging_product: 'whatsapp',
      recipient_type: 'individual',
      to: '+5491155551234',
      type: 'template',
      template: { name: 'pendiente_vence', language: { code: 'es_AR' }, components: [{ type: 'body', parameters: [{ type: 'text', text: 'Ana' }, { type: 'text', text: 'Revisar planos' }] }] },
    });
    assert.match(sent.provider_message_id ?? '', /^wamid\.TEST\d+$/);
    assert.equal(sent.provider, 'whatsapp-cloud');
  });

  test('inside the window (the user wrote to us) free text goes instead of the template', async () => {
    const res = await statusWebhook({
      object: 'whatsapp_business_account',
      entry: [{ id: 'x', changes: [{ field: 'messages', value: { messaging_product: 'whatsapp', messages: [{ from: '5491155551234', id: 'wamid.IN1', timestamp: String(Math.floor(Date.now() / 1000)), type: 'text', text: { body: 'hola' } }] } }] }],
    });
    assert.equal(res.status, 200);
    const d = await due('Firmar acta');
    await h.until(d.id, ['sent']);
    const req = api.requests.at(-1)!;
    assert.equal(req.body.type, 'text');
    assert.deepEqual(req.body.text, { preview_url: false, body: 'Hola Ana: "Firmar acta" vence hoy.' });
    await h.db.query(`UPDATE herald_whatsapp_sessions SET last_inbound_at = now() - interval '25 hours'`);
    const later = await due('Pagar');
    await h.until(later.id, ['sent']);
    assert.equal(api.requests.at(-1)!.body.type, 'template', 'after 24 hours the template is back');
  });

  for (const [label, failure] of [
    ['rate limit 130429', { status: 400, code: 130429, message: 'Rate limit hit' }],
    ['spam rate limit 131056', { status: 400, code: 131056, message: 'Pair rate limit hit' }],
    ['a 500', { status: 500, code: 1, message: 'Unknown error' }],
  ] as const) {
    test(`${label} is transient: retried, then sent`, async () => {
      api.failNext(failure);
      const d = await due(`retry ${label}`);
      const sent = await h.until(d.id, ['sent']);
      assert.equal(sent.attempts, 2);
      const attempts = await h.attempts(d.id);
      assert.deepEqual(attempts.map((a) => a.outcome), ['transient', 'sent']);
      assert.match(attempts[0]!.error ?? '', new RegExp(`WhatsApp ${failure.status} code ${failure.code}`));
    });
  }

  test('other errors are permanent: dead at once with the provider\'s message', async () => {
    api.failNext({ status: 400, code: 131026, message: 'Message undeliverable' });
    const d = await due('never');
    const dead = await h.until(d.id, ['dead']);
    assert.equal(dead.attempts, 1);
    assert.match(dead.last_error ?? '', /131026: Message undeliverable/);
  });

  test('the status webhook (signed) updates the delivery and its log; a bad signature is refused', async () => {
    const d = await due('Estado');
    const sent = await h.until(d.id, ['sent']);
    const statuses = (status: string) => ({
      object: 'whatsapp_business_account',
      entry: [{ id: 'x', changes: [{ field: 'messages', value: { statuses: [{ id: sent.provider_message_id, status, timestamp: '1763900000', recipient_id: '5491155551234' }] } }] }],
    });
    assert.equal((await statusWebhook(statuses('delivered'), 'wrong-secret-0123456789')).status, 401);
    for (const s of ['sent', 'delivered', 'read']) {
      const res = await statusWebhook(statuses(s));
      assert.equal(res.status, 200);
      assert.equal(((await res.json()) as { matched: number }).matched, 1);
    }
    const view = (await (await h.admin(`/api/deliveries/${d.id}`)).json()) as { delivery: { providerStatus: string }; statuses: { status: string; reportedAt: string }[] };
    assert.equal(view.delivery.providerStatus, 'read');
    assert.deepEqual(view.statuses.map((s) => s.status), ['sent', 'delivered', 'read']);
    assert.equal(view.statuses[0]!.reportedAt, new Date(1763900000 * 1000).toISOString());
  });
});
