import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * One-click unsubscribe links (RFC 8058). The token names the user, channel and scope it turns
 * off and is signed, so a link only ever unsubscribes whom it was sent to. It does not expire:
 * an old email's link must keep working.
 */
export interface UnsubscribeGrant {
  userId: string;
  channel: 'email' | 'whatsapp';
  scope: string;
}

const mac = (secret: Buffer, payload: string) => createHmac('sha256', secret).update(`unsubscribe:${payload}`).digest().subarray(0, 20);

export function unsubscribeToken(secret: Buffer, g: UnsubscribeGrant): string {
  const payload = Buffer.from(JSON.stringify([g.userId, g.channel, g.scope])).toString('base64url');
  return `${payload}.${mac(secret, payload).toString('base64url')}`;
}

export function verifyUnsubscribeToken(secret: Buffer, token: string): UnsubscribeGrant | undefined {
  const m = /^([A-Za-z0-9_-]{1,600})\.([A-Za-z0-9_-]{27})$/.exec(token);
  if (!m) return undefined;
  const given = Buffer.from(m[2]!, 'base64url');
  const want = mac(secret, m[1]!);
  if (given.length !== want.length || !timingSafeEqual(given, want)) return undefined;
  try {
    const [userId, channel, scope] = JSON.parse(Buffer.from(m[1]!, 'base64url').toString('utf8')) as string[];
    if ((channel !== 'email' && channel !== 'whatsapp') || typeof userId !== 'string' || typeof scope !== 'string') return undefined;
    return { userId, channel, scope };
  } catch {
    return undefined;
  }
}
