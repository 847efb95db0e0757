import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { defineConfig, rule, z } from '../../src/index.ts';
import { ANA, BEN, createChannelHerald, type ChannelHerald } from '../helpers/channels.ts';
import { eventually } from '../helpers/herald.ts';

const user = z.object({ userId: z.string().uuid(), title: z.string().default('t') });
const config = defineConfig({
  defaultLocale: 'en',
  events: {
    'invoice.due': rule({
      schema: user,
      category: 'billing',
      recipients: (ctx, to) => to.users(ctx.userId),
      inApp: { title: 'Invoice due' },
      email: { subject: 'Invoice due', text: 'Pay it.', html: '<p>Pay it.</p>' },
    }),
    'security.alert': rule({
      schema: user,
      critical: true,
      recipients: (ctx, to) => to.users(ctx.userId),
      email: { subject: 'New sign-in', text: 'Was it you?' },
    }),
    'pendiente.created': rule({
      schema: user,
      recipients: (ctx, to) => to.users(ctx.userId),
      email: {
        subject: 'New pendiente: {{ ctx.title }}',
        text: '{{ ctx.title }}',
        digest: { window: '2s', subject: '{{ count }} new pendientes', text: '{% for i in items %}- {{ i.ctx.title }}\n{% endfor %}' },
      },
      whatsapp: { template: { name: 'pendiente_nuevo', params: ['{{ ctx.title }}'] } },
    }),
  },
});

const hhmm = (d: Date) => d.toISOString().slice(11, 16);

describe('preferences, quiet hours, digests and the dev outbox', () => {
  let h: ChannelHerald;
  before(async () => {
    h = await createChannelHerald(config);
    await h.user(ANA, { email: 'ana@example.test', phone: '+5491155551234', name: 'Ana' });
    await h.user(BEN, { email: 'ben@example.test', name: 'Ben' });
  });
  after(() => h?.close());

  const emails = async (eventId: string) => (await h.deliveriesOf(eventId)).filter((d) => d.channel === 'email');

  test('with no provider configured, messages land in the dev outbox, rendered as the recipient would see them', async () => {
    const eventId = await h.emit('invoice.due', { userId: BEN });
    const [d] = await emails(eventId);
    const sent = await h.until(d!.id, ['sent']);
    assert.equal(sent.provider, 'outbox');
    const res = await h.admin('/api/outbox?channel=email');
    const { messages } = (await res.json()) as { messages: { id: string; to: string; subject: string; text: string; html: string }[] };
    const m = messages.find((x) => x.id === d!.id)!;
    assert.deepEqual({ to: m.to, subject: m.subject, text: m.text, html: m.html }, { to: 'ben@example.test', subject: 'Invoice due', text: 'Pay it.', html: '<p>Pay it.</p>' });
  });

  test('a user opts out of one channel for one event type with their JWT; in-app stays; RLS keeps preferences private', async () => {
    const put = await h.asUser(BEN, '/api/preferences', {
      method: 'PUT',
      body: JSON.stringify({ preferences: [{ channel: 'email', scope: 'invoice.due', enabled: false }] }),
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(put.status, 200, await put.clone().text());
    const eventId = await h.emit('invoice.due', { userId: BEN });
    assert.equal((await emails(eventId)).length, 0);
    assert.equal((await h.db.query(`SELECT 1 FROM notifications WHERE event_id = $1`, [eventId])).rows.length, 1);

    const dry = (await (await h.post('/api/notifications/dry-run', { type: 'invoice.due', ctx: { userId: BEN } })).json()) as { skipped: { channel: string; userId: string; reason: string }[] };
    assert.deepEqual(dry.skipped, [{ channel: 'email', userId: BEN, reason: 'opted out (email for invoice.due)' }]);

    const anas = (await (await h.asUser(ANA, '/api/preferences')).json()) as { preferences: unknown[]; scopes: string[] };
    assert.deepEqual(anas.preferences, [], "Ana does not see Ben's preferences");
    assert.ok(anas.scopes.includes('category:billing'));
    const bad = await h.asUser(BEN, '/api/preferences', { method: 'PUT', body: JSON.stringify({ preferences: [{ channel: 'email', scope: 'invoice.typo', enabled: false }] }) });
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { error: string }).error, /preferences\.0\.scope/);

    // Critical rules bypass opt-outs, even "everything off".
    await h.post(`/api/users/${BEN}/preferences`, { preferences: [{ channel: '*', scope: '*', enabled: false }] }, { method: 'PUT' });
    const alert = await h.emit('security.alert', { userId: BEN });
    assert.equal((await emails(alert)).length, 1);
    await h.post(`/api/users/${BEN}/preferences`, { preferences: [{ channel: '*', scope: '*', enabled: true }, { channel: 'email', scope: 'invoice.due', enabled: true }] }, { method: 'PUT' });
  });

  test('quiet hours hold a delivery until the window ends in the user\'s zone (database clock), then it is sent', async () => {
    const now = (await h.db.query<{ now: Date }>(`SELECT now() AS now`)).rows[0]!.now;
    const starts = hhmm(new Date(now.getTime() - 3_600_000));
    const ends = hhmm(new Date(now.getTime() + 3_600_000));
    const put = await h.post(`/api/users/${ANA}/preferences`, { quietHours: { starts, ends, timezone: 'UTC' } }, { method: 'PUT' });
    assert.equal(put.status, 200, await put.clone().text());

    const eventId = await h.emit('invoice.due', { userId: ANA });
    const [d] = await emails(eventId);
    assert.equal(d!.state, 'held');
    const end = new Date(now.getTime() + 3_600_000);
    end.setUTCSeconds(0, 0);
    assert.equal(d!.not_before!.toISOString(), end.toISOString(), 'held until the end of the window');
    const job = (await h.db.query<{ run_at: Date }>(`SELECT run_at FROM herald_jobs WHERE key = $1`, [`delivery:${d!.id}`])).rows[0]!;
    assert.equal(job.run_at.toISOString(), end.toISOString(), 'its send job is due when the window ends, not dropped');

    const alert = await h.emit('security.alert', { userId: ANA });
    assert.equal((await emails(alert))[0]!.state !== 'held', true, 'critical rules ignore quiet hours');

    // The window ends (moved, rather than waiting an hour): the held delivery goes out.
    await h.db.query(`UPDATE herald_deliveries SET not_before = now() WHERE id = $1`, [d!.id]);
    await h.db.query(`UPDATE herald_jobs SET run_at = now() WHERE key = $1`, [`delivery:${d!.id}`]);
    await h.until(d!.id, ['sent']);

    // A window that does not contain now holds nothing; one that crosses midnight is understood.
    await h.post(`/api/users/${ANA}/preferences`, { quietHours: { starts: ends, ends: starts, timezone: 'UTC' } }, { method: 'PUT' });
    const free = await h.emit('invoice.due', { userId: ANA });
    assert.notEqual((await emails(free))[0]!.state, 'held');
    await h.post(`/api/users/${ANA}/preferences`, { quietHours: null }, { method: 'PUT' });
  });

  test('a digest collapses the events of one kind within its window into one message', async () => {
    const ids: string[] = [];
    for (const title of ['Planos', 'Presupuesto', 'Visita']) ids.push(await h.emit('pendiente.created', { userId: ANA, title }));
    const all = (await Promise.all(ids.map((id) => emails(id)))).flat();
    assert.equal(all.length, 1, 'one email delivery for three events');
    const d = all[0]!;
    assert.equal(d.digest_count, 3);
    const sent = await h.until(d.id, ['sent'], 10_000);
    assert.equal(sent.digest_count, 3);
    const { messages } = (await (await h.admin('/api/outbox?channel=email')).json()) as { messages: { id: string; subject: string; text: string }[] };
    const m = messages.find((x) => x.id === d.id)!;
    assert.ok(m, 'the digest is in the outbox');
    assert.equal(m.subject, '3 new pendientes');
    assert.equal(m.text, '- Planos\n- Presupuesto\n- Visita\n');
    const view = (await (await h.admin(`/api/deliveries/${d.id}`)).json()) as { delivery: { digestCount: number; message: { items: unknown[] } } };
    assert.equal(view.delivery.message.items.length, 3);
    // After the window, a new event opens a new digest.
    const later = await h.emit('pendiente.created', { userId: ANA, title: 'Otro' });
    const [next] = await emails(later);
    assert.notEqual(next!.id, d.id);
    // WhatsApp has no digest in this rule: one message per event.
    const wa = (await Promise.all(ids.map((id) => h.deliveriesOf(id)))).flat().filter((x) => x.channel === 'whatsapp');
    assert.equal(wa.length, 3);
  });
});

describe('per-recipient rate limit', () => {
  let h: ChannelHerald;
  before(async () => {
    h = await createChannelHerald({ ...config, delivery: { perRecipient: { email: '2/1h' } } });
    await h.user(ANA, { email: 'ana@example.test' });
  });
  after(() => h?.close());

  test('beyond N per period, a delivery waits for a free slot instead of being sent or dropped', async () => {
    const ds: { id: string }[] = [];
    for (let i = 0; i < 3; i++) ds.push((await h.deliveriesOf(await h.emit('invoice.due', { userId: ANA })))[0]!);
    const settled = await eventually(async () => {
      const rows = (await h.db.query<{ state: string; held_reason: string | null; next_attempt_at: Date | null }>(
        `SELECT state, held_reason, next_attempt_at FROM herald_deliveries WHERE id = ANY($1::uuid[]) ORDER BY id`,
        [ds.map((d) => d.id)],
      )).rows;
      return rows.filter((r) => r.state === 'sent').length === 2 && rows.some((r) => r.held_reason) ? rows : undefined;
    });
    const waiting = settled.find((r) => r.state !== 'sent')!;
    assert.equal(waiting.state, 'queued');
    assert.equal(waiting.held_reason, 'rate limit 2/1h per recipient on email');
    const inMs = waiting.next_attempt_at!.getTime() - Date.now();
    assert.ok(inMs > 3_500_000 && inMs <= 3_600_100, `next try when the oldest send ages out (in ${inMs} ms)`);
    const attempts = (await h.db.query(`SELECT 1 FROM herald_delivery_attempts a JOIN herald_deliveries d ON d.id = a.delivery_id WHERE d.state = 'queued'`)).rows;
    assert.equal(attempts.length, 0, 'waiting for a slot spends no attempt');
  });
});
