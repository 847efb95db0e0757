import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import pino from 'pino';
import { compileRules } from '../../src/rules/compile.ts';
import { loadConfig } from '../../src/config/load-config.ts';
import { resolveSettings } from '../../src/config/settings.ts';
import { createEngine, type Engine } from '../../src/engine.ts';
import { createApp, type HeraldApp } from '../../src/http/app.ts';
import { isSeedEmit, signRequest, signStandardWebhooks, signXSignature } from '../../src/signing.ts';
import { silentLogger, type Logger } from '../../src/log.ts';
import type { HeraldConfig } from '../../src/rules/types.ts';
import { mintUserToken } from '../../src/cli/demo.ts';
import { createTestDb, type TestDb } from './db.ts';

export const SECRET = 'test-signing-secret-0123456789';
export const JWT_SECRET = 'test-jwt-secret-0123456789-0123456789-abcdef';

export interface TestHerald extends TestDb {
  engine: Engine;
  app: HeraldApp;
  /**
   * A signed request (POST unless `method` says otherwise), x-signature by default: over the body
   * for emit, bound to timestamp, method and path for every other route.
   */
  post(path: string, body: unknown, opts?: SignOptions): Promise<Response>;
  /** A request with a user's bearer token. */
  asUser(userId: string, path: string, init?: RequestInit): Promise<Response>;
  token(userId: string): Promise<string>;
  close(): Promise<void>;
}

export interface SignOptions {
  scheme?: 'x-signature' | 'standard-webhooks' | 'none';
  secret?: string;
  headers?: Record<string, string>;
  method?: string;
  /**
   * The path (with its query) the request goes to: x-signature then signs the timestamp, method,
   * path and body, as every route but the seed's emit requires. Without it, the body alone (emit).
   */
  path?: string;
  /** Standard Webhooks, or a bound x-signature. */
  id?: string;
  timestamp?: number;
}

export function signedHeaders(raw: string, opts: SignOptions = {}): Record<string, string> {
  const secret = Buffer.from(opts.secret ?? SECRET);
  const headers: Record<string, string> = { 'content-type': 'application/json', ...opts.headers };
  if (opts.scheme === 'none') return headers;
  if (opts.scheme === 'standard-webhooks') {
    const id = opts.id ?? `msg_${randomUUID().replace(/-/g, '')}`;
    return { ...headers, ...signStandardWebhooks(secret, id, opts.timestamp ?? Math.floor(Date.now() / 1000), raw) };
  }
  const method = opts.method ?? 'POST';
  if (opts.path !== undefined && !isSeedEmit(method, opts.path.split('?')[0]!)) {
    return { ...headers, ...signRequest(secret, opts.timestamp ?? Math.floor(Date.now() / 1000), method, opts.path, raw) };
  }
  return { ...headers, 'x-signature': signXSignature(secret, raw) };
}

/** A herald on a fresh database, with the example config unless `config` is given. */
export async function createTestHerald(
  opts: { env?: Record<string, string>; config?: HeraldConfig } = {},
): Promise<TestHerald> {
  const t = await createTestDb();
  const settings = resolveSettings({
    REQUEST_SIGNING_SECRET: SECRET,
    JWT_SECRET,
    HERALD_JOB_POLL_MS: '50',
    HERALD_MAINTENANCE_MS: '50',
    // Load shedding by pace (HERALD_SHED_TARGET_MS) is off: on a busy test box the event loop runs
    // late and emits slow for reasons of their own, and emits answered 429 at random would make
    // unrelated tests flaky. test/intake/overload.test.ts turns it on where it is the subject.
    HERALD_SHED_TARGET_MS: '0',
    ...opts.env,
  });
  const rules = opts.config ? compileRules(opts.config) : (await loadConfig(undefined, '/nonexistent-dir')).rules;
  const engine = createEngine({ settings, db: t.db, rules, log: silentLogger });
  const app = createApp(engine);
  return {
    ...t,
    engine,
    app,
    async post(path, body, o = {}) {
      const raw = typeof body === 'string' ? body : JSON.stringify(body);
      return app.request(path, { method: o.method ?? 'POST', body: raw, headers: signedHeaders(raw, { path, ...o }) });
    },
    async asUser(userId, path, init = {}) {
      const headers = new Headers(init.headers);
      headers.set('authorization', `Bearer ${await mintUserToken(JWT_SECRET, userId)}`);
      return app.request(path, { ...init, headers });
    },
    token: (userId) => mintUserToken(JWT_SECRET, userId),
    close: () => t.drop(),
  };
}

/** Waits until `check` returns a truthy value (polling; no fixed sleeps), or fails after `ms`. */
export async function eventually<T>(check: () => Promise<T | undefined | false>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A logger at `level` that keeps each JSON line it writes in `lines`: for tests of what herald logs. */
export function capturingLogger(level = 'warn'): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  return { log: pino({ level }, sink), lines };
}
