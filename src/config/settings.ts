import { createHmac } from 'node:crypto';
import { parseAllowlist } from '../outbound/guard.ts';
/**
 * Runtime settings, resolved once from explicit options > environment > defaults, validated with
 * messages that name the fix, and frozen. This is the only module that reads the environment.
 */
export const ENV = {
  databaseUrl: 'DATABASE_URL',
  dbConnectTimeoutMs: 'HERALD_DB_CONNECT_TIMEOUT_MS',
  dbStatementTimeoutMs: 'HERALD_DB_STATEMENT_TIMEOUT_MS',
  dbIdleInTransactionTimeoutMs: 'HERALD_DB_IDLE_TX_TIMEOUT_MS',
  dataDir: 'HERALD_DATA_DIR',
  configPath: 'HERALD_CONFIG',
  signingSecret: 'REQUEST_SIGNING_SECRET',
  signingSecretNext: 'REQUEST_SIGNING_SECRET_NEXT',
  signingDisabled: 'REQUEST_SIGNING_DISABLED',
  workflowsDisabled: 'WORKFLOWS_DISABLED',
  workflowsEnabled: 'WORKFLOWS_ENABLED',
  jwtSecret: 'JWT_SECRET',
  port: 'PORT',
  host: 'HOST',
  nodeEnv: 'NODE_ENV',
  maxBodyBytes: 'HERALD_MAX_BODY_BYTES',
  logLevel: 'HERALD_LOG_LEVEL',
  leaseMs: 'HERALD_JOB_LEASE_MS',
  pollMs: 'HERALD_JOB_POLL_MS',
  maintenanceMs: 'HERALD_MAINTENANCE_MS',
  idempotencyTtlHours: 'HERALD_IDEMPOTENCY_TTL_HOURS',
  url: 'HERALD_URL',
  qstashToken: 'QSTASH_TOKEN',
  adminToken: 'ADMIN_TOKEN',
  notifyRateLimit: 'HERALD_NOTIFY_RATE_LIMIT',
  qstashCurrentSigningKey: 'QSTASH_CURRENT_SIGNING_KEY',
  qstashNextSigningKey: 'QSTASH_NEXT_SIGNING_KEY',
  deliveryTimeoutMs: 'HERALD_DELIVERY_TIMEOUT_MS',
  outboundAllowlist: 'OUTBOUND_ALLOWLIST',
  lazyFetchBytes: 'HERALD_LAZY_FETCH_BYTES',
  smtpUrl: 'SMTP_URL',
  emailFrom: 'EMAIL_FROM',
  whatsappApiUrl: 'WHATSAPP_API_URL',
  whatsappToken: 'WHATSAPP_TOKEN',
  whatsappPhoneNumberId: 'WHATSAPP_PHONE_NUMBER_ID',
  whatsappAppSecret: 'WHATSAPP_APP_SECRET',
  whatsappVerifyToken: 'WHATSAPP_VERIFY_TOKEN',
  unsubscribeSecret: 'HERALD_UNSUBSCRIBE_SECRET',
  channelTimeoutMs: 'HERALD_CHANNEL_TIMEOUT_MS',
  emitBatchMax: 'HERALD_EMIT_BATCH_MAX',
  intakeMaxQueue: 'HERALD_INTAKE_MAX_QUEUE',
  intakeMaxWaitMs: 'HERALD_INTAKE_MAX_WAIT_MS',
  intakeFlushTimeoutMs: 'HERALD_INTAKE_FLUSH_TIMEOUT_MS',
  shedTargetMs: 'HERALD_SHED_TARGET_MS',
  jobBatchMax: 'HERALD_JOB_BATCH_MAX',
} as const;

/**
 * The defaults of HERALD_DB_CONNECT_TIMEOUT_MS, HERALD_DB_STATEMENT_TIMEOUT_MS and
 * HERALD_DB_IDLE_TX_TIMEOUT_MS, also what the Postgres driver uses when opened without settings
 * (tests, benchmarks).
 */
export const DB_TIMEOUT_DEFAULTS = { connectTimeoutMs: 5_000, statementTimeoutMs: 30_000, idleInTransactionTimeoutMs: 60_000 };

export interface Settings {
  databaseUrl: string | undefined;
  /** Postgres: connecting, and waiting for a free pooled connection; past it, the database is unavailable. */
  dbConnectTimeoutMs: number;
  /** Postgres: statement_timeout of herald's connections (0: none), also the base of the client-side bound. */
  dbStatementTimeoutMs: number;
  /** Postgres: idle_in_transaction_session_timeout of herald's connections (0: none). */
  dbIdleInTransactionTimeoutMs: number;
  dataDir: string;
  configPath: string | undefined;
  /** Every active emit signing secret, as key bytes (rotation: all are accepted). */
  signingSecrets: Buffer[];
  signingDisabled: boolean;
  /** Workflow mode: the event and a queued job commit together; a worker expands it. */
  workflowMode: boolean;
  jwtSecret: Buffer | undefined;
  port: number;
  host: string;
  production: boolean;
  maxBodyBytes: number;
  logLevel: string;
  jobLeaseMs: number;
  jobPollMs: number;
  /** How often the leader rescues expired leases and fires due timers (sleeps, wait timeouts). */
  maintenanceMs: number;
  idempotencyTtlHours: number;
  /** herald's public base URL: waiters of code workflows point at it. */
  publicUrl: string | undefined;
  /** Bearer token of the QStash-compatible API (/v2/notify, /v2/waiters). Unset: that API is closed. */
  qstashToken: string | undefined;
  /** Bearer token of the admin API (runs, waiters, starting workflows). Unset: that API is closed. */
  adminToken: string | undefined;
  /** Notify requests per second per client (token bucket; bursts up to twice this). */
  notifyRateLimit: number;
  /**
   * Keys that sign deliveries to HTTP workflows (Upstash-Signature), as QStash's: the SDK verifies
   * with the current key, then the next. Unset: deliveries are unsigned.
   */
  qstashSigningKeys: { current: string; next: string } | undefined;
  /** How long herald waits for a workflow endpoint to answer one delivery. */
  deliveryTimeoutMs: number;
  /** host:port pairs outbound requests may reach even on private or loopback addresses. */
  outboundAllowlist: Set<string>;
  /**
   * A workflow delivery whose history is larger than this goes with an empty body; the SDK then
   * fetches the history (GET /v2/workflows/runs/{id}), as with QStash's large payloads.
   */
  lazyFetchBytes: number;
  /** SMTP server for email (smtp://user:pass@host:587, smtps://…). Unset: emails go to the dev outbox. */
  smtpUrl: string | undefined;
  emailFrom: string;
  /** WhatsApp Cloud API; without token and phone number id, WhatsApp messages go to the dev outbox. */
  whatsapp: { apiUrl: string; token: string; phoneNumberId: string } | undefined;
  /** Verifies X-Hub-Signature-256 on WhatsApp status webhooks. Unset: that webhook is closed. */
  whatsappAppSecret: string | undefined;
  /** Answers Meta's webhook verification handshake (hub.verify_token). */
  whatsappVerifyToken: string | undefined;
  /** Signs one-click unsubscribe links; derived from JWT_SECRET or the signing secret when unset. */
  unsubscribeSecret: Buffer | undefined;
  /** How long one email, WhatsApp or webhook request may take. */
  channelTimeoutMs: number;
  /** Most events one group commit writes (workflow-mode emit). */
  emitBatchMax: number;
  /** Most emits waiting for their group commit; beyond it an emit is refused at once (429). */
  intakeMaxQueue: number;
  /**
   * Longest an emit waits for its group commit to start; one that waited longer is dropped before
   * its write (429), and once the oldest waiting emit has waited half of it, new emits are refused
   * before their body is read.
   */
  intakeMaxWaitMs: number;
  /**
   * Longest an emit waits for its write to answer; then 503 (the outcome is unknown: retry with its
   * key), and until a write answers again, emits are refused at once with 503.
   */
  intakeFlushTimeoutMs: number;
  /**
   * Postgres: how long an accepted emit should take in the server (ms). Emits in progress are
   * limited to about throughput × this, and while the event loop runs later than this, emits are
   * refused at random; the rest get 429. 0 turns both off (the intake queue's bounds still apply).
   * See http/middleware/shed.ts.
   */
  shedTargetMs: number;
  /** Most event-expansion jobs a worker claims and commits together. */
  jobBatchMax: number;
}

export class SettingsError extends Error {
  override name = 'SettingsError';
}

type Env = Record<string, string | undefined>;

function int(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw)) throw new SettingsError(`${name} must be a whole number, got "${raw}"`);
  const n = Number(raw);
  if (n < min || n > max) throw new SettingsError(`${name} must be between ${min} and ${max}, got ${n}`);
  return n;
}

/**
 * A secret is used as its UTF-8 bytes, except the Standard Webhooks form `whsec_<base64>`, which is
 * base64-decoded (so secrets issued by Standard Webhooks tooling work as they are).
 */
export function secretBytes(secret: string): Buffer {
  if (secret.startsWith('whsec_')) {
    const b64 = secret.slice('whsec_'.length);
    const bytes = Buffer.from(b64, 'base64');
    if (bytes.length < 16 || bytes.toString('base64').replace(/=+$/, '') !== b64.replace(/=+$/, '')) {
      throw new SettingsError('a whsec_ signing secret must hold valid base64 of at least 16 bytes');
    }
    return bytes;
  }
  return Buffer.from(secret, 'utf8');
}

export function parseSecrets(...values: (string | undefined)[]): Buffer[] {
  const secrets = values
    .flatMap((v) => (v ?? '').split(/\s+/))
    .filter((s) => s.length > 0)
    .map(secretBytes);
  for (const s of secrets) {
    if (s.length < 16) throw new SettingsError('each signing secret must be at least 16 bytes long');
  }
  return secrets;
}

function token(env: Env, name: string): string | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  if (Buffer.byteLength(raw) < 16) throw new SettingsError(`${name} must be at least 16 characters`);
  return raw;
}

function whatsapp(env: Env): Settings['whatsapp'] {
  const token = env[ENV.whatsappToken] || undefined;
  const phoneNumberId = env[ENV.whatsappPhoneNumberId] || undefined;
  if (!token && !phoneNumberId) return undefined;
  if (!token || !phoneNumberId) throw new SettingsError(`${ENV.whatsappToken} and ${ENV.whatsappPhoneNumberId} must be set together`);
  const apiUrl = env[ENV.whatsappApiUrl] || 'https://graph.facebook.com/v21.0';
  try {
    const u = new URL(apiUrl);
    if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error();
  } catch {
    throw new SettingsError(`${ENV.whatsappApiUrl} must be an http(s) URL such as https://graph.facebook.com/v21.0`);
  }
  return { apiUrl, token, phoneNumberId };
}

function smtpUrl(env: Env): string | undefined {
  const raw = env[ENV.smtpUrl] || undefined;
  if (raw && !/^smtps?:\/\//.test(raw)) throw new SettingsError(`${ENV.smtpUrl} must start with smtp:// or smtps://`);
  return raw;
}

function emailFrom(env: Env): string {
  const from = env[ENV.emailFrom] || 'herald <notifications@herald.localhost>';
  if (/[\r\n\0]/.test(from) || !/@[^\s@>]+>?\s*$/.test(from)) throw new SettingsError(`${ENV.emailFrom} must be an address such as "Acme <notify@acme.com>"`);
  return from;
}

function allowlist(env: Env): Set<string> {
  try {
    return parseAllowlist(env[ENV.outboundAllowlist]);
  } catch (err) {
    throw new SettingsError((err as Error).message);
  }
}

function signingKeys(env: Env): Settings['qstashSigningKeys'] {
  const current = env[ENV.qstashCurrentSigningKey] || undefined;
  const next = env[ENV.qstashNextSigningKey] || undefined;
  if (!current && !next) return undefined;
  if (!current) throw new SettingsError(`${ENV.qstashNextSigningKey} is set without ${ENV.qstashCurrentSigningKey}`);
  // Without a next key, the current one doubles as next (what the SDK verifies second).
  return { current, next: next ?? current };
}

function unsubscribeSecret(env: Env, jwt: string | undefined, signing: Buffer[]): Buffer | undefined {
  const own = env[ENV.unsubscribeSecret];
  if (own) {
    if (Buffer.byteLength(own) < 16) throw new SettingsError(`${ENV.unsubscribeSecret} must be at least 16 characters`);
    return Buffer.from(own, 'utf8');
  }
  // Derived, never the raw secret: an unsubscribe token must not be usable as anything else.
  const root = jwt ? Buffer.from(jwt, 'utf8') : signing[0];
  return root ? createHmac('sha256', root).update('herald unsubscribe links').digest() : undefined;
}

/**
 * A boolean variable: exactly 1 / true or 0 / false, or unset (undefined). Anything else is refused
 * at start: read as "not 1", a `yes` or `TRUE` would silently mean the opposite of what was meant.
 */
function bool(env: Env, name: string): boolean | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  if (raw === '1' || raw === 'true') return true;
  if (raw === '0' || raw === 'false') return false;
  throw new SettingsError(`${name} must be 1, 0, true or false (or unset), got "${raw.slice(0, 40)}"`);
}

/**
 * DATABASE_URL: a postgres:// or postgresql:// URL, or a Unix-socket directory (what pg accepts);
 * anything else is refused here, naming the variable, rather than failing later as a DNS lookup
 * of part of it. The value is never echoed: it may hold a password.
 */
function databaseUrl(env: Env): string | undefined {
  const raw = env[ENV.databaseUrl];
  if (raw === undefined || raw === '') return undefined;
  if (raw.startsWith('/')) return raw;
  let protocol = '';
  try {
    protocol = new URL(raw).protocol;
  } catch {
    // not a URL at all
  }
  if (protocol !== 'postgres:' && protocol !== 'postgresql:') {
    throw new SettingsError(
      `${ENV.databaseUrl} must be a postgres:// or postgresql:// connection URL (postgres://user:password@host:5432/database), or unset for embedded PGlite`,
    );
  }
  return raw;
}

export interface ResolveOptions {
  /** Fail closed: refuse to run without a signing secret (unless signing is disabled for dev). */
  requireSecrets?: boolean;
}

export function resolveSettings(env: Env = process.env, opts: ResolveOptions = {}): Readonly<Settings> {
  const production = env[ENV.nodeEnv] === 'production';
  const signingDisabled = bool(env, ENV.signingDisabled) === true;
  // Both read before either is used: a bad value of one is refused whatever the other says.
  const workflowsDisabled = bool(env, ENV.workflowsDisabled) === true;
  const workflowsEnabled = bool(env, ENV.workflowsEnabled) === true;
  if (signingDisabled && production) {
    throw new SettingsError(
      `${ENV.signingDisabled}=1 is refused when NODE_ENV=production: unsigned emits would let anyone inject notifications`,
    );
  }
  const signingSecrets = parseSecrets(env[ENV.signingSecret], env[ENV.signingSecretNext]);
  if (opts.requireSecrets && signingSecrets.length === 0 && !signingDisabled) {
    throw new SettingsError(
      `${ENV.signingSecret} is not set. herald refuses to accept unsigned events: set ${ENV.signingSecret} ` +
        `(at least 16 characters), or ${ENV.signingDisabled}=1 for local development only`,
    );
  }
  const jwt = env[ENV.jwtSecret];
  if (jwt !== undefined && jwt !== '' && Buffer.byteLength(jwt) < 32) {
    throw new SettingsError(`${ENV.jwtSecret} must be at least 32 bytes for HS256`);
  }
  const settings: Settings = {
    databaseUrl: databaseUrl(env),
    dbConnectTimeoutMs: int(env, ENV.dbConnectTimeoutMs, DB_TIMEOUT_DEFAULTS.connectTimeoutMs, 100, 600_000),
    dbStatementTimeoutMs: int(env, ENV.dbStatementTimeoutMs, DB_TIMEOUT_DEFAULTS.statementTimeoutMs, 0, 86_400_000),
    dbIdleInTransactionTimeoutMs: int(env, ENV.dbIdleInTransactionTimeoutMs, DB_TIMEOUT_DEFAULTS.idleInTransactionTimeoutMs, 0, 86_400_000),
    dataDir: env[ENV.dataDir] || './.herald',
    configPath: env[ENV.configPath] || undefined,
    signingSecrets,
    signingDisabled,
    // The seed: workflow mode when WORKFLOWS_DISABLED is not 1, or WORKFLOWS_ENABLED=1 (`true`
    // is read as 1; anything but 1, 0, true and false is refused, so a "yes" is not taken for 0).
    workflowMode: !workflowsDisabled || workflowsEnabled,
    jwtSecret: jwt ? Buffer.from(jwt, 'utf8') : undefined,
    port: int(env, ENV.port, 3000, 0, 65535),
    host: env[ENV.host] || '127.0.0.1',
    production,
    maxBodyBytes: int(env, ENV.maxBodyBytes, 256 * 1024, 1024, 64 * 1024 * 1024),
    logLevel: env[ENV.logLevel] || 'info',
    jobLeaseMs: int(env, ENV.leaseMs, 30_000, 100, 3_600_000),
    jobPollMs: int(env, ENV.pollMs, 1_000, 10, 600_000),
    maintenanceMs: int(env, ENV.maintenanceMs, 1_000, 10, 600_000),
    idempotencyTtlHours: int(env, ENV.idempotencyTtlHours, 24, 1, 24 * 30),
    publicUrl: env[ENV.url] || undefined,
    qstashToken: token(env, ENV.qstashToken),
    adminToken: token(env, ENV.adminToken),
    notifyRateLimit: int(env, ENV.notifyRateLimit, 500, 1, 1_000_000),
    qstashSigningKeys: signingKeys(env),
    deliveryTimeoutMs: int(env, ENV.deliveryTimeoutMs, 15 * 60_000, 100, 12 * 3_600_000),
    outboundAllowlist: allowlist(env),
    lazyFetchBytes: int(env, ENV.lazyFetchBytes, 1024 * 1024, 0, 1024 * 1024 * 1024),
    smtpUrl: smtpUrl(env),
    emailFrom: emailFrom(env),
    whatsapp: whatsapp(env),
    whatsappAppSecret: env[ENV.whatsappAppSecret] || undefined,
    whatsappVerifyToken: env[ENV.whatsappVerifyToken] || undefined,
    unsubscribeSecret: unsubscribeSecret(env, jwt, signingSecrets),
    channelTimeoutMs: int(env, ENV.channelTimeoutMs, 30_000, 100, 600_000),
    emitBatchMax: int(env, ENV.emitBatchMax, 1000, 1, 10_000),
    intakeMaxQueue: int(env, ENV.intakeMaxQueue, 5000, 1, 1_000_000),
    intakeMaxWaitMs: int(env, ENV.intakeMaxWaitMs, 1000, 1, 600_000),
    intakeFlushTimeoutMs: int(env, ENV.intakeFlushTimeoutMs, 3000, 100, 600_000),
    shedTargetMs: int(env, ENV.shedTargetMs, 10, 0, 10_000),
    jobBatchMax: int(env, ENV.jobBatchMax, 100, 1, 1000),
  };
  return Object.freeze(settings);
}
