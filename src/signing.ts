import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Verification of signed server-to-server requests (emit, dry-run, the users directory API).
 *
 * The seed's emit route (`POST /api/notifications/emit`, seed 004) accepts two schemes, told apart
 * by their headers (`verifySignature`):
 * - Standard Webhooks v1: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64> ...`
 *   over `${id}.${timestamp}.${body}`, timestamp within ±tolerance in both directions.
 * - The seed's `x-signature: <hex HMAC-SHA256(secret, body)>` (also `sha256=<hex>`). It carries no
 *   timestamp, so replays are contained by idempotency (see intake/idempotency.ts).
 *
 * Every other signed route (`verifyRequestSignature`) binds the signature to the request: header
 * `x-signature-timestamp: <unix seconds>` (±tolerance) and `x-signature = hex(HMAC-SHA256(secret,
 * "<timestamp>\n<METHOD> <path>\n<body>"))`, the path as sent with its query string. A body-only
 * signature there let any captured request (an old emit) be replayed as `DELETE /api/users/{id}`,
 * to another user id, or to the dry run (issue 24). Standard Webhooks is refused there: its signed
 * content (`id.timestamp.body`) has no method or path, so it cannot be bound without inventing a
 * variant no Standard Webhooks library would produce.
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
  /** The exact bytes received (empty for a bodyless request). */
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

/** The seed's emit route: the only one whose signature covers the body alone (seed 004). */
export const EMIT_PATH = '/api/notifications/emit';
export const isSeedEmit = (method: string, path: string) => method.toUpperCase() === 'POST' && path === EMIT_PATH;

export interface RequestVerifyInput extends VerifyInput {
  method: string;
  /** The path as sent, with its query string (`/api/users/8c…?x=1`). */
  path: string;
}

/** The string a bound x-signature signs: `<timestamp>\n<METHOD> <path>\n<body>`. */
const requestMessage = (timestamp: string, method: string, path: string) => `${timestamp}\n${method.toUpperCase()} ${path}\n`;

/**
 * A request to any signed route but the seed's emit: x-signature bound to the timestamp, method,
 * path and body. The reasons (for the log, never the client) say what a client on the old
 * body-only scheme has to change.
 */
export function verifyRequestSignature(input: RequestVerifyInput): VerifyResult {
  const { headers, secrets } = input;
  if (secrets.length === 0) return { ok: false, reason: 'no signing secret configured' };
  if (headers('webhook-signature') !== undefined) {
    return {
      ok: false,
      reason: `Standard Webhooks signatures are accepted on POST ${EMIT_PATH} only: they do not cover the method and path; sign this route with x-signature-timestamp and x-signature`,
    };
  }
  const given = headers('x-signature');
  if (given === undefined) return { ok: false, reason: 'missing x-signature and x-signature-timestamp' };
  const ts = headers('x-signature-timestamp');
  if (ts === undefined) {
    return { ok: false, reason: 'missing x-signature-timestamp: this route signs "<timestamp>\\n<METHOD> <path>\\n<body>", not the body alone' };
  }
  if (!TIMESTAMP.test(ts)) return { ok: false, reason: 'malformed x-signature-timestamp (expected unix seconds)' };
  const skew = input.nowSeconds - Number(ts);
  const tolerance = input.toleranceSeconds ?? 300;
  if (skew > tolerance) return { ok: false, reason: `x-signature-timestamp too old (${skew}s)` };
  if (skew < -tolerance) return { ok: false, reason: `x-signature-timestamp in the future (${-skew}s)` };
  const m = HEX_SHA256.exec(given.trim());
  if (!m) return { ok: false, reason: 'malformed x-signature (expected 64 hex characters)' };
  const digest = Buffer.from(m[1]!.toLowerCase(), 'hex');
  const message = requestMessage(ts, input.method, input.path);
  for (const secret of secrets) {
    if (digestsEqual(hmac(secret, message, input.body), digest)) return { ok: true, scheme: 'x-signature' };
  }
  return { ok: false, reason: `x-signature does not match any active secret (signed string: "<timestamp>\\n${input.method.toUpperCase()} <path>\\n<body>")` };
}

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

/**
 * Headers of a request to a signed route other than emit (used by the CLI and tests):
 * `x-signature-timestamp` and the x-signature over `<timestamp>\n<METHOD> <path>\n<body>`.
 */
export function signRequest(secret: Buffer, timestamp: number, method: string, path: string, body: Buffer | string = '') {
  const ts = String(timestamp);
  return { 'x-signature-timestamp': ts, 'x-signature': hmac(secret, requestMessage(ts, method, path), body).toString('hex') };
}
