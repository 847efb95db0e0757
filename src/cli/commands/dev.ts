import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { resolveSettings, ENV, secretBytes } from '../../config/settings.ts';
import { signXSignature } from '../../signing.ts';
import { DEMO, mintUserToken, seedDemoDirectory } from '../demo.ts';
import { loadOrCreateDevSecrets } from '../dev-secrets.ts';
import { acquireDataDirLock } from '../data-dir-lock.ts';
import { openRuntime, run } from '../runtime.ts';
import { QSTASH_DEV } from '../../workflow/http/dev-credentials.ts';

/** How to run the CLI from where the user is: inside herald's own checkout, or a project using it. */
function cliCommand(): string {
  const packageRoot = realpathSync(fileURLToPath(new URL('../../../', import.meta.url)));
  return realpathSync(process.cwd()) === packageRoot ? 'npm run -s herald --' : 'npx herald';
}

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** `herald dev`: embedded PGlite, server and worker in one process, example rules, dev secrets. */
export async function devCommand(env: NodeJS.ProcessEnv, opts: { qstashDev?: boolean } = {}): Promise<number> {
  const base = resolveSettings(env);
  const secrets = await loadOrCreateDevSecrets(base.dataDir);
  // --qstash-dev: be what @upstash/workflow looks for when QSTASH_DEV=true (its port, token and
  // signing keys), so such an app needs no other setting.
  const qstashDev = opts.qstashDev
    ? {
        [ENV.port]: env.QSTASH_DEV_PORT || String(QSTASH_DEV.port),
        [ENV.qstashToken]: QSTASH_DEV.token,
        [ENV.qstashCurrentSigningKey]: QSTASH_DEV.currentSigningKey,
        [ENV.qstashNextSigningKey]: QSTASH_DEV.nextSigningKey,
      }
    : {};
  const settings = resolveSettings({
    ...env,
    [ENV.signingSecret]: env[ENV.signingSecret] || secrets.signingSecret,
    [ENV.jwtSecret]: env[ENV.jwtSecret] || secrets.jwtSecret,
    [ENV.qstashToken]: env[ENV.qstashToken] || secrets.qstashToken,
    [ENV.adminToken]: env[ENV.adminToken] || secrets.adminToken,
    ...qstashDev,
  });
  if (!settings.databaseUrl) await acquireDataDirLock(settings.dataDir);
  // Logs go to stderr in dev so the banner below stays readable on stdout.
  const rt = await openRuntime(settings, 2);
  if (rt.config.isExample) await seedDemoDirectory(rt.engine.db);
  const { url } = await run(rt, { http: true, worker: true });

  const signing = env[ENV.signingSecret] || secrets.signingSecret;
  const reader = DEMO.users[1];
  const token = await mintUserToken(env[ENV.jwtSecret] || secrets.jwtSecret, reader.id);
  const ctx = { tenantId: DEMO.tenantId, actorId: DEMO.users[0].id, obra: { id: 'obra-42', name: 'Escuela N° 42', percentage: 100 } };
  const body = JSON.stringify({ type: 'obra.completed', ctx });
  const cliPrefix = `HERALD_URL=${url}${env[ENV.dataDir] ? ` ${ENV.dataDir}=${shellQuote(env[ENV.dataDir]!)}` : ''} ${cliCommand()}`;
  const lines = [
    '',
    `herald dev — listening on ${url}`,
    `  database : ${settings.databaseUrl ? 'Postgres (DATABASE_URL)' : `PGlite in ${settings.dataDir}`}`,
    `  rules    : ${rt.config.path}${rt.config.isExample ? ' (example; add herald.config.ts to use your own)' : ''}`,
    `  mode     : ${settings.workflowMode ? 'workflow (queued, expanded by the worker)' : 'direct'}`,
    `  secrets  : ${settings.databaseUrl ? 'from the environment / ' : ''}${settings.dataDir}/dev-secrets.json (development only)`,
    ...(opts.qstashDev
      ? [`  qstash   : dev mode — apps with QSTASH_DEV=true${settings.port === QSTASH_DEV.port ? '' : ` and QSTASH_DEV_PORT=${settings.port}`} use herald as is`]
      : [`  qstash   : QSTASH_URL=${url} QSTASH_TOKEN=${settings.qstashToken}`]),
    '',
    'Emit an event (signed for you):',
    `  ${cliPrefix} emit obra.completed ${shellQuote(JSON.stringify(ctx))}`,
    '',
    'Or with curl (x-signature = hex HMAC-SHA256 of the body):',
    `  curl -sS -X POST ${url}/api/notifications/emit -H 'content-type: application/json' \\`,
    `    -H 'x-signature: ${signXSignature(secretBytes(signing), body)}' \\`,
    `    --data ${shellQuote(body)}`,
    '',
    `Read ${reader.name}'s inbox (JWT valid 30 days):`,
    `  curl -sS ${url}/api/notifications -H 'authorization: Bearer ${token}'`,
    '',
    settings.smtpUrl && settings.whatsapp
      ? 'Email (SMTP_URL) and WhatsApp (Cloud API) are sent for real; the delivery log and dead letters:'
      : 'Email and WhatsApp without a provider (SMTP_URL, WHATSAPP_TOKEN) land in the dev outbox:',
    `  ${cliPrefix} outbox`,
    `  ${cliPrefix} deliveries --state dead`,
    '',
    'Workflows: list runs, then wake the ones waiting for an event (notify API, QSTASH_TOKEN):',
    `  ${cliPrefix} runs`,
    `  curl -sS -X POST ${url}/v2/notify/<eventId> -H 'authorization: Bearer ${settings.qstashToken}' --data '{"approved":true}'`,
    '',
  ];
  process.stdout.write(lines.join('\n') + '\n');
  return new Promise<number>(() => {}); // runs until SIGINT/SIGTERM
}
