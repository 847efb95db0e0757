import { createHash, randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';

/** Signing keys, imported once each (jose imports raw bytes again on every signature). */
const keys = new Map<string, Promise<CryptoKey>>();
function hmacKey(key: string): Promise<CryptoKey> {
  let k = keys.get(key);
  if (!k) {
    if (keys.size >= 8) keys.clear(); // rotated keys: only the current few are ever in use
    k = crypto.subtle.importKey('raw', new TextEncoder().encode(key), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    keys.set(key, k);
  }
  return k;
}

/**
 * `Upstash-Signature` for a delivery, as QStash signs it: an HS256 JWT with the signing key as the
 * secret, `iss: "Upstash"`, `sub` the destination URL, a 5-minute lifetime, and `body` the
 * base64url SHA-256 of the exact body sent. The SDK's Receiver verifies it with the current key,
 * then the next.
 */
export async function upstashSignature(key: string, url: string, body: string | Buffer): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ body: createHash('sha256').update(body).digest('base64url') })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuer('Upstash')
    .setSubject(url)
    .setIssuedAt(now)
    .setNotBefore(now)
    .setExpirationTime(now + 300)
    .setJti(`jwt_${randomUUID().replace(/-/g, '')}`)
    .sign(await hmacKey(key));
}
