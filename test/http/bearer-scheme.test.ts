import assert from 'node:assert/strict';
import { createHmac, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { createTestHerald, JWT_SECRET, type TestHerald } from '../helpers/herald.ts';

/**
 * Issue 24 item 15: the auth-scheme is case-insensitive (RFC 7235 §2.1) on every bearer-token API:
 * the inbox's JWT, the admin API and the QStash-compatible /v2 API; and the inbox refuses a JWT whose
 * signature is spelled non-canonically (trailing bits in its last character).
 */

const ADMIN_TOKEN = 'bearer-test-admin-token-0123456789';
const QSTASH_TOKEN = 'bearer-test-qstash-token-0123456789';
const SPELLINGS = ['Bearer', 'bearer', 'BEARER', 'bEaReR'];

describe('Authorization: Bearer, whatever its case', () => {
  let h: TestHerald;
  before(async () => {
    h = await createTestHerald({ env: { ADMIN_TOKEN, QSTASH_TOKEN } });
  });
  after(async () => h?.close());

  const status = async (path: string, authorization: string) => (await h.app.request(path, { headers: { authorization } })).status;

  test('the inbox (JWT) accepts every spelling of the scheme, and one or more spaces after it', async () => {
    const token = await h.token(randomUUID());
    for (const scheme of SPELLINGS) assert.equal(await status('/api/notifications', `${scheme} ${token}`), 200, scheme);
    assert.equal(await status('/api/notifications', `bearer  ${token}`), 200, 'two spaces');
    for (const bad of [`Bearer${token}`, `Bearerx ${token}`, `Basic ${token}`, token]) {
      assert.equal(await status('/api/notifications', bad), 401, bad.slice(0, 12));
    }
  });

  test('the admin API accepts every spelling of the scheme', async () => {
    for (const scheme of SPELLINGS) {
      assert.equal(await status('/api/workflows/runs', `${scheme} ${ADMIN_TOKEN}`), 200, `runs, ${scheme}`);
      assert.equal(await status('/api/deliveries', `${scheme} ${ADMIN_TOKEN}`), 200, `deliveries, ${scheme}`);
    }
    assert.equal(await status('/api/workflows/runs', `Basic ${ADMIN_TOKEN}`), 401);
  });

  test('the /v2 QStash API accepts every spelling of the scheme', async () => {
    for (const scheme of SPELLINGS) assert.equal(await status('/v2/waiters/some-event', `${scheme} ${QSTASH_TOKEN}`), 200, scheme);
    assert.equal(await status('/v2/waiters/some-event', `Basic ${QSTASH_TOKEN}`), 401);
  });

  test('the inbox refuses a JWT whose signature has trailing bits set (same bytes, another spelling)', async () => {
    const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const input = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub: randomUUID(), exp: Math.floor(Date.now() / 1000) + 600 })}`;
    const sig = createHmac('sha256', JWT_SECRET).update(input).digest('base64url');
    assert.equal(await status('/api/notifications', `Bearer ${input}.${sig}`), 200, 'canonical');
    const tweaked = sig.slice(0, -1) + ALPHABET[ALPHABET.indexOf(sig.at(-1)!) + 1]!;
    assert.equal(await status('/api/notifications', `Bearer ${input}.${tweaked}`), 401, 'trailing bits set');
  });
});
