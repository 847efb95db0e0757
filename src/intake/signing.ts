import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Verification of signed server-to-server requests (emit, the users directory API).
 *
 * Two schemes, told apart by their headers:
 * - Standard Webhooks v1: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64> ...`
 *   over `${id}.${timestamp}.${body}`, timestamp within ±tolerance in both directions.
 * - The seed's `x-signature: <hex HMAC-SHA256(secret, body)>` (also `sha256=<hex>`). It carries no
 *   timestamp, so replays are contained by idempotency (see intake/idempotency.ts).
 *
 * Every secret in rotation is tried; every comparison is constant-time on decoded 32-byte digests,
 * and header grammar is checked before decoding (Node's decoders silently skip bad characters).
 */

export type Headers = (name: string) => string | undefined;

export type VerifyResult =
  | { ok: true; scheme: 'standard-webhooks'; webhookId: string }
  | { ok: true; scheme: 'x-signature' }
  | { ok: false; reason: string };

const HEX_SHA256 = /^(?:sha256=)?([0-9a-fA-F]{64})$/;
const WEBHOOK_ID = /^[A-Za-z0-9_-]{1,128}$/;
const TIMESTAMP = /^\d{1,12}$/;
const V1_SIG = /^v1,([A-Za-z0-9+/]{43}=)$/;

const hmac = (key: Buffer, ...parts: (string | Buffer)[]) => {
  const h = createHmac('sha256', key);
  for (const p of parts) h.update(p);
  return h.digest();
};

/** Constant-time equality of two digests; false (not an exception) when lengths differ. */
export function digestsEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

export interface VerifyInput {
  headers: Headers;
  /** The exact bytes received; for bodyless requests, see `bodylessMessage`. */
  body: Buffer;
  secrets: Buffer[];
  nowSeconds: number;
  toleranceSeconds?: number;
}

export function verifySignature(input: VerifyInput): VerifyResult {
  const { headers, body, secrets } = input;
  if (secrets.length === 0) return { ok: false, reason: 'no signing secret configured' };
  const swSignature = headers('webhook-signature');
  if (swSignature !== undefined) return verifyStandardWebhooks(input, swSignature);

  const legacy = headers('x-signature');
  if (legacy === undefined) return { ok: false, reason: 'missing signature headers' };
  const m = HEX_SHA256.exec(legacy.trim());
  if (!m) return { ok: false, reason: 'malformed x-signature (expected 64 hex characters)' };
  const given = Buffer.from(m[1]!.toLowerCase(), 'hex');
  for (const secret of secrets) {
    if (digestsEqual(hmac(secret, body), given)) return { ok: true, scheme: 'x-signature' };
  }
  return { ok: false, reason: 'x-signature does not match any active secret' };
}

function verifyStandardWebhooks(input: VerifyInput, header: string): VerifyResult {
  const id = input.headers('webhook-id');
  const ts = input.headers('webhook-timestamp');
  if (id === undefined || !WEBHOOK_ID.test(id)) return { ok: false, reason: 'missing or malformed webhook-id' };
  if (ts === undefined || !TIMESTAMP.test(ts)) return { ok: false, reason: 'missing or malformed webhook-timestamp' };
  const skew = input.nowSeconds - Number(ts);
  const tolerance = input.toleranceSeconds ?? 300;
  if (skew > tolerance) return { ok: false, reason: `webhook-timestamp too old (${skew}s)` };
  if (skew < -tolerance) return { ok: false, reason: `webhook-timestamp in the future (${-skew}s)` };

  const given = header
    .split(' ')
    .map((s) => V1_SIG.exec(s.trim()))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Buffer.from(m[1]!, 'base64'));
  if (given.length === 0) return { ok: false, reason: 'webhook-signature has no well-formed v1 signature' };
  for (const secret of input.secrets) {
    const expected = hmac(secret, `${id}.${ts}.`, input.body);
    if (given.some((g) => digestsEqual(expected, g))) return { ok: true, scheme: 'standard-webhooks', webhookId: id };
  }
  return { ok: false, reason: 'webhook-signature does not match any active secret' };
}

/**
 * A request without a body (GET, DELETE) signed with x-signature signs `${METHOD} ${path}`
 * instead of the empty body, so one captured signature cannot be replayed against another path.
 */
export const bodylessMessage = (method: string, path: string) => Buffer.from(`${method.toUpperCase()} ${path}`);

/** Signs a request the way herald verifies it (used by the CLI, tests and client examples). */
export function signStandardWebhooks(secret: Buffer, id: string, timestamp: number, body: Buffer | string) {
  return {
    'webhook-id': id,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': `v1,${hmac(secret, `${id}.${timestamp}.`, body).toString('base64')}`,
  };
}

export function signXSignature(secret: Buffer, body: Buffer | string): string {
  return hmac(secret, body).toString('hex');
}
