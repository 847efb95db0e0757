import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { ParsedMail } from 'mailparser';
import { defineConfig, rule, z } from '../../src/index.ts';
import { ANA, BEN, createChannelHerald, type ChannelHerald } from '../helpers/channels.ts';
import { eventually } from '../helpers/herald.ts';
import { startSmtp } from '../helpers/smtp.ts';

/** A header exactly as it was on the wire (mailparser structures some of them). */
const rawHeader = (mail: ParsedMail, name: string) => {
  const line = mail.headerLines.find((l) => l.key === name)?.line ?? '';
  return line.slice(line.indexOf(':') + 1).replace(/\r?\n\s+/g, ' ').trim();
};

const config = defineConfig({
  defaultLocale: 'en',
  events: {
    'invoice.due': rule({
      schema: z.object({ userId: z.string().uuid(), amount: z.string(), note: z.string().default('') }),
      category: 'billing',
      recipients: (ctx, to) => to.users(ctx.userId),
      inApp: { title: 'Invoice of {{ ctx.amount }} due' },
      email: {
        subject: 'Invoice of {{ ctx.amount }} due {{ ctx.note }}',
        text: 'Hello {{ recipient.name }}, please pay {{ ctx.amount }}.',
        html: '<p>Hello <b>{{ recipient.name }}</b>, please pay {{ ctx.amount }}.</p>',
        locales: { es: { subject: 'Factura de {{ ctx.amount }} vencida', text: 'Hola {{ recipient.name }}, pagá {{ ctx.amount }}.' } },
      },
    }),
  },
  delivery: { maxAttempts: 3 },
});

describe('email over SMTP', () => {
  let smtp: Awaited<ReturnType<typeof startSmtp>>;
  let h: ChannelHerald;
  before(async () => {
    smtp = await startSmtp();
    h = await createChannelHerald(config, { SMTP_URL: smtp.url, EMAIL_FROM: 'Acme <notify@acme.test>', HERALD_URL: 'https://herald.acme.test' });
    await h.user(ANA, { email: 'ana@example.test', name: 'Ana', locale: 'en' });
    await h.user(BEN, { email: 'ben@example.test', name: 'Ben', locale: 'es-AR' });
  });
  after(async () => {
    await h?.close();
    await smtp?.close();
  });

  test('the received message has the headers, both bodies, a stable Message-ID and a one-click unsubscribe', async () => {
    const eventId = await h.emit('invoice.due', { userId: ANA, amount: '$120' });
    const [d] = await h.deliveriesOf(eventId);
    assert.ok(d, 'the event produced an email delivery');
    const sent = await h.until(d.id, ['sent']);
    const got = smtp.received.find((m) => m.mail.messageId === `<${d.id}@acme.test>`);
    assert.ok(got, 'the SMTP server received the message under the delivery id');
    const { mail } = got;
    assert.equal(mail.subject, 'Invoice of $120 due');
    assert.deepEqual(mail.from?.value, [{ name: 'Acme', address: 'notify@acme.test' }]);
    assert.equal((mail.to as { text: string }).text, 'ana@example.test');
    assert.equal(mail.text?.trim(), 'Hello Ana, please pay $120.');
    assert.equal(mail.html, '<p>Hello <b>Ana</b>, please pay $120.</p>');
    const unsubscribe = rawHeader(mail, 'list-unsubscribe');
    assert.match(unsubscribe, /^<https:\/\/herald\.acme\.test\/api\/unsubscribe\?token=[\w.-]+>$/);
    assert.equal(rawHeader(mail, 'list-unsubscribe-post'), 'List-Unsubscribe=One-Click');
    assert.equal(sent.provider, 'smtp');
    assert.equal(sent.provider_message_id, `<${d.id}@acme.test>`);
    const attempts = await h.attempts(d.id);
    assert.deepEqual(attempts.map((a) => a.outcome), ['sent']);
    assert.match(attempts[0]!.response ?? '', /^250/);
  });

  test("the recipient's locale picks the text", async () => {
    const eventId = await h.emit('invoice.due', { userId: BEN, amount: '$7' });
    const [d] = await h.deliveriesOf(eventId);
    await h.until(d!.id, ['sent']);
    const got = smtp.received.find((m) => m.mail.messageId === `<${d!.id}@acme.test>`)!;
    assert.equal(got.mail.subject, 'Factura de $7 vencida');
    assert.equal(got.mail.text?.trim(), 'Hola Ben, pagá $7.');
  });

  test('a 451 reply is retried and the retry carries the same Message-ID', async () => {
    smtp.replyNext(451);
    const eventId = await h.emit('invoice.due', { userId: ANA, amount: '$1' });
    const [d] = await h.deliveriesOf(eventId);
    const sent = await h.until(d!.id, ['sent']);
    const copies = smtp.received.filter((m) => m.mail.messageId === `<${d!.id}@acme.test>`);
    assert.deepEqual(copies.map((c) => c.reply), [451, 250], 'received twice: refused with 451, then accepted');
    assert.equal(sent.attempts, 2);
    const attempts = await h.attempts(d!.id);
    assert.deepEqual(attempts.map((a) => a.outcome), ['transient', 'sent']);
    assert.match(attempts[0]!.error ?? '', /SMTP 451/);
  });

  test('a 550 reply dead-letters the delivery at once; redrive sends it', async () => {
    smtp.replyNext(550);
    const eventId = await h.emit('invoice.due', { userId: ANA, amount: '$2' });
    const [d] = await h.deliveriesOf(eventId);
    const dead = await h.until(d!.id, ['dead']);
    assert.equal(dead.attempts, 1, 'a permanent failure is not retried');
    assert.match(dead.last_error ?? '', /SMTP 550/);
    const list = (await (await h.admin('/api/deliveries?state=dead&channel=email')).json()) as { deliveries: { id: string }[] };
    assert.ok(list.deliveries.some((x) => x.id === d!.id), 'the dead-letter list shows it');

    const res = await h.admin(`/api/deliveries/${d!.id}/redrive`, { method: 'POST' });
    assert.equal(res.status, 200);
    const sent = await h.until(d!.id, ['sent']);
    assert.equal(sent.attempts, 2);
    const again = await h.admin(`/api/deliveries/${d!.id}/redrive`, { method: 'POST' });
    assert.equal(again.status, 409, 'only dead deliveries are redriven');
  });

  test('CR/LF in a header-bound value is refused, nothing reaches the server', async () => {
    const before = smtp.received.length;
    const eventId = await h.emit('invoice.due', { userId: ANA, amount: '$3', note: 'now\r\nBcc: victim@example.test' });
    const [d] = await h.deliveriesOf(eventId);
    const dead = await h.until(d!.id, ['dead']);
    assert.match(dead.last_error ?? '', /header injection/);
    assert.equal(smtp.received.length, before);
  });

  test('the one-click unsubscribe link turns the preference off; the next email is skipped with the reason', async () => {
    const eventId = await h.emit('invoice.due', { userId: BEN, amount: '$9' });
    const [d] = await h.deliveriesOf(eventId);
    await h.until(d!.id, ['sent']);
    const mail = smtp.received.find((m) => m.mail.messageId === `<${d!.id}@acme.test>`)!.mail;
    const url = new URL(rawHeader(mail, 'list-unsubscribe').slice(1, -1));

    const page = await h.app.request(`${url.pathname}${url.search}`);
    assert.equal(page.status, 200, 'GET shows a confirmation and changes nothing');
    assert.equal((await h.db.query(`SELECT 1 FROM herald_preferences WHERE user_id = $1`, [BEN])).rows.length, 0);

    const res = await h.app.request(`${url.pathname}${url.search}`, {
      method: 'POST',
      body: 'List-Unsubscribe=One-Click',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    assert.equal(res.status, 200);
    const { rows } = await h.db.query<{ channel: string; scope: string; enabled: boolean }>(`SELECT channel, scope, enabled FROM herald_preferences WHERE user_id = $1`, [BEN]);
    assert.deepEqual(rows, [{ channel: 'email', scope: 'category:billing', enabled: false }]);

    const tampered = await h.app.request(`${url.pathname}?token=${url.searchParams.get('token')!.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A'))}`, { method: 'POST' });
    assert.equal(tampered.status, 400);

    const next = await h.emit('invoice.due', { userId: BEN, amount: '$10' });
    assert.equal((await h.deliveriesOf(next)).length, 0, 'no email for an opted-out user');
    const inbox = await h.db.query(`SELECT 1 FROM notifications WHERE event_id = $1`, [next]);
    assert.equal(inbox.rows.length, 1, 'the in-app notification is unaffected');
  });

  test('an SMTP server that is down is a transient failure: retried, then dead after the last attempt', async () => {
    const down = await createChannelHerald(config, { SMTP_URL: 'smtp://127.0.0.1:1', EMAIL_FROM: 'notify@acme.test' });
    try {
      await down.user(ANA, { email: 'ana@example.test' });
      const eventId = await down.emit('invoice.due', { userId: ANA, amount: '$4' });
      const [d] = await down.deliveriesOf(eventId);
      const dead = await down.until(d!.id, ['dead'], 20_000);
      assert.equal(dead.attempts, 3);
      assert.match(dead.last_error ?? '', /gave up after 3 attempts/);
      const attempts = await down.attempts(d!.id);
      assert.deepEqual(attempts.map((a) => a.outcome), ['transient', 'transient', 'transient']);
      await eventually(async () => (await down.db.query(`SELECT 1 FROM herald_jobs WHERE kind = 'delivery.send'`)).rows.length === 0);
    } finally {
      await down.close();
    }
  });
});
