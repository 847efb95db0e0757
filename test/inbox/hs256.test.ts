// herald-test: no database (runs once, not once per backend: scripts/test.mjs)
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { test } from 'node:test';
import { SignJWT } from 'jose';
import { verifyHs256 } from '../../src/http/middleware/hs256.ts';

const SECRET = Buffer.from('test-hs256-secret-0123456789-0123456789');
const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
/** A token signed by hand, so headers and claims jose would refuse to produce can be tried. */
const forge = (header: unknown, claims: unknown, secret = SECRET) => {
  const signingInput = `${b64(header)}.${b64(claims)}`;
  return `${signingInput}.${createHmac('sha256', secret).update(signingInput).digest('base64url')}`;
};
const now = Math.floor(Date.now() / 1000);

test('a token signed by jose verifies, with its claims', async () => {
  const token = await new SignJWT({ sub: 'u1', role: 'authenticated' }).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuedAt().setExpirationTime('1h').sign(SECRET);
  const claims = verifyHs256(token, SECRET);
  assert.equal(claims.sub, 'u1');
  assert.equal(claims.role, 'authenticated');
});

test('refused: another secret, a changed payload, a changed signature', () => {
  assert.throws(() => verifyHs256(forge({ alg: 'HS256' }, { sub: 'u1' }, Buffer.from('another-secret-another-secret-12345')), SECRET), /signature/);
  const [h, , s] = forge({ alg: 'HS256' }, { sub: 'u1' }).split('.');
  assert.throws(() => verifyHs256(`${h}.${b64({ sub: 'admin' })}.${s}`, SECRET), /signature/);
  assert.throws(() => verifyHs256(`${h}.${b64({ sub: 'u1' })}.${s!.slice(0, -2)}`, SECRET), /signature/);
  assert.throws(() => verifyHs256(`${h}.${b64({ sub: 'u1' })}.`, SECRET), /signature/);
});

test('refused: any alg but HS256 (none, HS512, RS256), and crit extensions', () => {
  for (const alg of ['none', 'HS512', 'RS256', undefined]) {
    assert.throws(() => verifyHs256(forge({ alg }, { sub: 'u1' }), SECRET), /alg/, String(alg));
  }
  assert.throws(() => verifyHs256(forge({ alg: 'HS256', crit: ['b64'], b64: false }, { sub: 'u1' }), SECRET), /crit/);
});

test('time claims: expired, not yet valid and non-numeric ones are refused', () => {
  assert.throws(() => verifyHs256(forge({ alg: 'HS256' }, { sub: 'u1', exp: now - 1 }), SECRET), /exp/);
  assert.throws(() => verifyHs256(forge({ alg: 'HS256' }, { sub: 'u1', exp: now }), SECRET), /exp/, 'exp is exclusive');
  assert.throws(() => verifyHs256(forge({ alg: 'HS256' }, { sub: 'u1', nbf: now + 60 }), SECRET), /nbf/);
  assert.throws(() => verifyHs256(forge({ alg: 'HS256' }, { sub: 'u1', exp: String(now + 60) }), SECRET), /exp/);
  assert.throws(() => verifyHs256(forge({ alg: 'HS256' }, { sub: 'u1', iat: 'yesterday' }), SECRET), /iat/);
  assert.equal(verifyHs256(forge({ alg: 'HS256' }, { sub: 'u1', exp: now + 60, nbf: now, iat: now }), SECRET).sub, 'u1');
  assert.equal(verifyHs256(forge({ alg: 'HS256' }, { sub: 'u1' }), SECRET).sub, 'u1', 'no exp: valid (as jose)');
});

test('refused: parts that are not base64url JSON objects', () => {
  assert.throws(() => verifyHs256('a.b', SECRET), /compact/);
  assert.throws(() => verifyHs256(forge({ alg: 'HS256' }, ['sub']), SECRET), /payload is not a JSON object/);
  assert.throws(() => verifyHs256(forge({ alg: 'HS256' }, 'u1'), SECRET), /payload is not a JSON object/);
  const input = `${Buffer.from('{not json').toString('base64url')}.${b64({ sub: 'u1' })}`;
  assert.throws(() => verifyHs256(`${input}.${createHmac('sha256', SECRET).update(input).digest('base64url')}`, SECRET), /header is not base64url JSON/);
});

/**
 * Issue 24 item 15: one signature has one spelling. Node's base64url decoder ignores trailing bits,
 * padding and the '+' / '/' alphabet, so without a canonical check each of these verified.
 */
test('refused: a non-canonical base64url signature (trailing bits, padding, + or /)', () => {
  const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  // Tokens whose signature contains '-' and '_', so the '+' and '/' spellings exist.
  let token = '';
  for (let i = 0; !(/-/.test(token.split('.')[2] ?? '') && /_/.test(token.split('.')[2] ?? '')); i++) token = forge({ alg: 'HS256' }, { sub: `u${i}` });
  const [h, p, s] = token.split('.') as [string, string, string];
  assert.equal(verifyHs256(token, SECRET).sub !== undefined, true, 'the canonical token verifies');
  assert.equal(s.length, 43);
  const last = ALPHABET.indexOf(s.at(-1)!);
  assert.equal(last % 4, 0, 'a canonical 32-byte signature leaves the last character\'s two low bits zero');
  const variants: Record<string, string> = {
    'trailing bits set in the last character': s.slice(0, -1) + ALPHABET[last + 1]!,
    'all trailing bits set': s.slice(0, -1) + ALPHABET[last + 3]!,
    'one = of padding': `${s}=`,
    'two = of padding': `${s}==`,
    "'+' for '-'": s.replace(/-/g, '+'),
    "'/' for '_'": s.replace(/_/g, '/'),
  };
  for (const [name, sig] of Object.entries(variants)) {
    assert.equal(Buffer.from(sig, 'base64url').equals(Buffer.from(s, 'base64url')), true, `${name}: decodes to the same bytes`);
    assert.throws(() => verifyHs256(`${h}.${p}.${sig}`, SECRET), /signature/, name);
  }
});
