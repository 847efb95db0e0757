import { parseArgs } from 'node:util';
import { SettingsError } from '../config/settings.ts';
import { ConfigError } from '../rules/compile.ts';
import { TemplateError } from '../rules/templates.ts';
import { apiCommand, signCommand } from './commands/api.ts';
import { devCommand } from './commands/dev.ts';
import { emitCommand } from './commands/emit.ts';
import { migrateCommand } from './commands/migrate.ts';
import { notifyCommand } from './commands/notify.ts';
import { deliveriesCommand } from './commands/deliveries.ts';
import { runsCommand } from './commands/runs.ts';
import { startCommand } from './commands/start.ts';
import { tokenCommand } from './commands/token.ts';

const HELP = `herald — notifications and durable workflows on Postgres

Usage: herald <command> [options]

Commands:
  dev                      Run everything in one process on embedded PGlite with the example
                           rules and generated development secrets (printed at start).
      --qstash-dev         Also be Upstash's local QStash server for apps with QSTASH_DEV=true
                           (port 8080 or $QSTASH_DEV_PORT, the SDK's dev token and signing keys).
  start                    Run the HTTP server and a worker (production: secrets required).
  worker                   Run a worker only (scale out: any number against one Postgres).
  migrate                  Apply pending database migrations and exit.
      --print-bootstrap    Print the SQL a superuser runs once so a non-superuser owner can migrate
                           (docs/DEPLOYMENT.md); connects to nothing.
  emit <type> [ctx-json]   Sign and send an event to a running herald.
      --dry-run            Show what the event would produce, and why, without storing anything.
      --url <url>          herald's address (default $HERALD_URL or http://127.0.0.1:$PORT).
      --idempotency-key <k>
  api <METHOD> <path> [body]  Send a signed request to the server-to-server API (the users
                           directory, preferences, the dry run), e.g.
                           herald api PUT /api/users/<id> '{"tenantId":"…"}'   --url <url>
  sign <METHOD> <path> [body] Print that request's signature headers (for curl: -H @<(herald sign …)).
  notify <eventId> [data]  Wake the workflows waiting for <eventId> (the notify API; $QSTASH_TOKEN).
      --run <runId>        Only that run; kept for its next wait if it is not waiting yet.
      --file <path>        Send a file's bytes (application/octet-stream) instead of [data].
      --content-type <t>   Default: application/json when [data] is JSON, else text/plain.
  runs [runId]             List workflow runs, or show one run's steps ($ADMIN_TOKEN).
      --state <s>          running | completed | failed | cancelled
      --workflow <name>    --limit <n>    --json    --cancel (with a run id)
  deliveries [id]          Email, WhatsApp and webhook deliveries, or one with its attempts ($ADMIN_TOKEN).
      --state <s>          queued | held | sending | sent | failed | dead (dead: the dead-letter list)
      --channel <c>        email | whatsapp | webhook    --limit <n>    --json
  deliveries redrive <id…> | --all   Send dead deliveries again.
  outbox                   Messages captured by the dev outbox (no provider configured), as sent.
  token <userId>           Print an inbox JWT for that user (JWT_SECRET, or herald dev's secret;
      --ttl <30d>          production: JWT_SECRET only).

Environment: DATABASE_URL (Postgres; otherwise PGlite in HERALD_DATA_DIR, default ./.herald),
REQUEST_SIGNING_SECRET, JWT_SECRET, QSTASH_TOKEN, ADMIN_TOKEN, PORT (3000), HOST (127.0.0.1), HERALD_CONFIG,
WORKFLOWS_DISABLED=1 (direct mode), REQUEST_SIGNING_DISABLED=1 (development only).
See README.md.`;

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'dev': {
        const { values } = parseArgs({ args: rest, options: { 'qstash-dev': { type: 'boolean' } } });
        return await devCommand(env, { qstashDev: values['qstash-dev'] ?? false });
      }
      case 'start':
        return await startCommand(env, { http: true, worker: true });
      case 'worker':
        return await startCommand(env, { http: false, worker: true });
      case 'migrate': {
        const { values } = parseArgs({ args: rest, options: { 'print-bootstrap': { type: 'boolean' } } });
        return await migrateCommand(env, { printBootstrap: values['print-bootstrap'] ?? false });
      }
      case 'emit': {
        const { values, positionals } = parseArgs({
          args: rest,
          allowPositionals: true,
          options: { 'dry-run': { type: 'boolean' }, url: { type: 'string' }, 'idempotency-key': { type: 'string' } },
        });
        const [type, ctx, ...extra] = positionals;
        if (!type || extra.length) {
          console.error('usage: herald emit <type> [ctx-json] [--dry-run] [--url <url>] [--idempotency-key <key>]');
          return 2;
        }
        return await emitCommand(env, {
          type,
          ctx,
          dryRun: values['dry-run'] ?? false,
          url: values.url,
          idempotencyKey: values['idempotency-key'],
        });
      }
      case 'api':
      case 'sign': {
        const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { url: { type: 'string' } } });
        const [method, path, body, ...extra] = positionals;
        if (!method || !path || extra.length) {
          console.error(`usage: herald ${command} <METHOD> <path> [body] [--url <url>]`);
          return 2;
        }
        const args = { method, path, body, url: values.url };
        return await (command === 'api' ? apiCommand(env, args) : signCommand(env, args));
      }
      case 'notify': {
        const { values, positionals } = parseArgs({
          args: rest,
          allowPositionals: true,
          options: { run: { type: 'string' }, file: { type: 'string' }, 'content-type': { type: 'string' }, url: { type: 'string' } },
        });
        const [eventId, data, ...extra] = positionals;
        if (!eventId || extra.length) {
          console.error('usage: herald notify <eventId> [data] [--run <runId>] [--file <path>] [--content-type <type>] [--url <url>]');
          return 2;
        }
        return await notifyCommand(env, {
          eventId,
          data,
          file: values.file,
          runId: values.run,
          contentType: values['content-type'],
          url: values.url,
        });
      }
      case 'token': {
        const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { ttl: { type: 'string' } } });
        return await tokenCommand(env, { userId: positionals.length === 1 ? positionals[0]! : '', ttl: values.ttl ?? '30d' });
      }
      case 'runs': {
        const { values, positionals } = parseArgs({
          args: rest,
          allowPositionals: true,
          options: {
            state: { type: 'string' },
            workflow: { type: 'string' },
            limit: { type: 'string' },
            cancel: { type: 'boolean' },
            json: { type: 'boolean' },
            url: { type: 'string' },
          },
        });
        if (positionals.length > 1) {
          console.error('usage: herald runs [runId] [--state <s>] [--workflow <name>] [--limit <n>] [--json] [--cancel]');
          return 2;
        }
        return await runsCommand(env, {
          runId: positionals[0],
          state: values.state,
          workflow: values.workflow,
          limit: values.limit,
          cancel: values.cancel ?? false,
          json: values.json ?? false,
          url: values.url,
        });
      }
      case 'deliveries':
      case 'outbox': {
        const { values, positionals } = parseArgs({
          args: rest,
          allowPositionals: true,
          options: {
            state: { type: 'string' },
            channel: { type: 'string' },
            limit: { type: 'string' },
            all: { type: 'boolean' },
            json: { type: 'boolean' },
            url: { type: 'string' },
          },
        });
        const redriving = command === 'deliveries' && positionals[0] === 'redrive';
        const ids = redriving ? positionals.slice(1) : positionals;
        if (!redriving && ids.length > 1) {
          console.error('usage: herald deliveries [id] [--state <s>] [--channel <c>] [--limit <n>] [--json] | herald deliveries redrive <id…> | --all');
          return 2;
        }
        return await deliveriesCommand(env, {
          action: command === 'outbox' ? 'outbox' : redriving ? 'redrive' : ids.length ? 'show' : 'list',
          ids,
          all: values.all ?? false,
          state: values.state,
          channel: values.channel,
          limit: values.limit,
          json: values.json ?? false,
          url: values.url,
        });
      }
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        console.log(HELP);
        return command === undefined ? 2 : 0;
      default:
        console.error(`unknown command "${command}"\n\n${HELP}`);
        return 2;
    }
  } catch (err) {
    if (err instanceof SettingsError || err instanceof ConfigError || err instanceof TemplateError) {
      console.error(`herald: ${err.message}`);
      return 1;
    }
    if (err instanceof TypeError && /Unknown option|Unexpected argument/.test(err.message)) {
      console.error(`herald: ${err.message}`);
      return 2;
    }
    console.error(`herald: ${(err as Error).message}`);
    return 1;
  }
}
