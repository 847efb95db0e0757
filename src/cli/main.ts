import { parseArgs } from 'node:util';
import { SettingsError } from '../config/settings.ts';
import { ConfigError } from '../rules/compile.ts';
import { TemplateError } from '../rules/templates.ts';
import { devCommand } from './commands/dev.ts';
import { emitCommand } from './commands/emit.ts';
import { migrateCommand } from './commands/migrate.ts';
import { startCommand } from './commands/start.ts';

const HELP = `herald — notifications and durable workflows on Postgres

Usage: herald <command> [options]

Commands:
  dev                      Run everything in one process on embedded PGlite with the example
                           rules and generated development secrets (printed at start).
  start                    Run the HTTP server and a worker (production: secrets required).
  worker                   Run a worker only (scale out: any number against one Postgres).
  migrate                  Apply pending database migrations and exit.
  emit <type> [ctx-json]   Sign and send an event to a running herald.
      --dry-run            Show what the event would produce, and why, without storing anything.
      --url <url>          herald's address (default $HERALD_URL or http://127.0.0.1:$PORT).
      --idempotency-key <k>

Environment: DATABASE_URL (Postgres; otherwise PGlite in HERALD_DATA_DIR, default ./.herald),
REQUEST_SIGNING_SECRET, JWT_SECRET, PORT (3000), HOST (127.0.0.1), HERALD_CONFIG,
WORKFLOWS_DISABLED=1 (direct mode), REQUEST_SIGNING_DISABLED=1 (development only).
See README.md.`;

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'dev':
        return await devCommand(env);
      case 'start':
        return await startCommand(env, { http: true, worker: true });
      case 'worker':
        return await startCommand(env, { http: false, worker: true });
      case 'migrate':
        return await migrateCommand(env);
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
