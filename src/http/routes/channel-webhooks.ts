import { Hono } from 'hono';
import { verifyUnsubscribeToken } from '../../channels/unsubscribe.ts';
import { parseWhatsAppWebhook, verifyMetaSignature } from '../../channels/whatsapp.ts';
import { HttpError } from '../../errors.ts';
import { setPreference } from '../../storage/queries/preferences.ts';
import { recordProviderStatus } from '../../storage/queries/provider-statuses.ts';
import { recordInbound } from '../../storage/queries/whatsapp-sessions.ts';
import type { AppEnv } from '../context.ts';
import { tokenMatches } from '../middleware/bearer-token.ts';

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
const page = (title: string, body: string) =>
  `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>${escapeHtml(title)}</title></head>` +
  `<body style="font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem"><h1>${escapeHtml(title)}</h1>${body}</body></html>`;

/**
 * Endpoints that mail clients and providers call: one-click unsubscribe (RFC 8058) and the
 * WhatsApp Cloud API webhook (statuses of sent messages, and inbound messages that open the
 * 24-hour session window).
 */
export const channelWebhookRoutes = new Hono<AppEnv>()
  // GET never changes anything (link scanners follow links); it shows a confirmation button.
  .get('/api/unsubscribe', (c) => {
    const secret = c.get('engine').settings.unsubscribeSecret;
    const token = c.req.query('token') ?? '';
    const grant = secret ? verifyUnsubscribeToken(secret, token) : undefined;
    if (!grant) return c.html(page('Link not valid', '<p>This unsubscribe link is not valid. Change your preferences in the app instead.</p>'), 400);
    const what = grant.scope === '*' ? 'all notifications' : grant.scope.startsWith('category:') ? `"${grant.scope.slice(9)}" notifications` : `"${grant.scope}" notifications`;
    return c.html(
      page(
        'Unsubscribe',
        `<p>Stop receiving ${escapeHtml(what)} by ${grant.channel}?</p>` +
          `<form method="post" action="?token=${encodeURIComponent(token)}"><button type="submit" name="List-Unsubscribe" value="One-Click">Unsubscribe</button></form>`,
      ),
    );
  })
  // RFC 8058: the mail client POSTs "List-Unsubscribe=One-Click" to the URL; no cookies, no login.
  .post('/api/unsubscribe', async (c) => {
    const engine = c.get('engine');
    const secret = engine.settings.unsubscribeSecret;
    const grant = secret ? verifyUnsubscribeToken(secret, c.req.query('token') ?? '') : undefined;
    if (!grant) throw new HttpError(400, 'this unsubscribe link is not valid');
    await setPreference(engine.db, grant.userId, { channel: grant.channel, scope: grant.scope, enabled: false });
    engine.log.info({ userId: grant.userId, channel: grant.channel, scope: grant.scope }, 'unsubscribed by link');
    if ((c.req.header('accept') ?? '').includes('text/html')) return c.html(page('Unsubscribed', '<p>Done. You will not receive these emails any more.</p>'));
    return c.json({ ok: true, unsubscribed: grant });
  })
  // Meta's verification handshake when the webhook is configured.
  .get('/api/webhooks/whatsapp', (c) => {
    const expected = c.get('engine').settings.whatsappVerifyToken;
    const given = c.req.query('hub.verify_token') ?? '';
    if (c.req.query('hub.mode') !== 'subscribe' || !expected || !tokenMatches(given, expected)) throw new HttpError(403, 'verification failed');
    return c.text(c.req.query('hub.challenge') ?? '');
  })
  .post('/api/webhooks/whatsapp', async (c) => {
    const engine = c.get('engine');
    const requestId = c.get('requestId');
    const raw = Buffer.from(await c.req.arrayBuffer());
    const secret = engine.settings.whatsappAppSecret;
    if (!secret || !verifyMetaSignature(secret, raw, c.req.header('x-hub-signature-256'))) {
      engine.log.warn({ requestId, reason: secret ? 'bad X-Hub-Signature-256' : 'WHATSAPP_APP_SECRET is not set' }, 'rejected WhatsApp webhook');
      throw new HttpError(401, 'unauthorized');
    }
    let body: unknown;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch {
      throw new HttpError(400, 'the body is not JSON');
    }
    const { statuses, inbound } = parseWhatsAppWebhook(body);
    let matched = 0;
    for (const s of statuses) {
      const id = await recordProviderStatus(engine.db, { provider: 'whatsapp-cloud', providerMessageId: s.providerMessageId, status: s.status, reportedAt: s.at, detail: s.detail });
      if (id) matched++;
      else engine.log.info({ requestId, providerMessageId: s.providerMessageId, status: s.status }, 'WhatsApp status for a message herald did not send');
    }
    for (const m of inbound) await recordInbound(engine.db, m.phone, m.at);
    return c.json({ ok: true, statuses: statuses.length, matched, inbound: inbound.length });
  });
