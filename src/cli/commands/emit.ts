import { randomUUID } from 'node:crypto';
import { resolveSettings, ENV, secretBytes } from '../../config/settings.ts';
import { signStandardWebhooks } from '../../intake/signing.ts';
import { readDevSecrets } from '../dev-secrets.ts';

export interface EmitArgs {
  type: string;
  ctx: string | undefined;
  dryRun: boolean;
  url: string | undefined;
  idempotencyKey: string | undefined;
}

/**
 * `herald emit <type> [ctx-json]`: signs with REQUEST_SIGNING_SECRET (or the dev secret of the data
 * directory) using Standard Webhooks, posts to a running herald and prints its answer.
 */
export async function emitCommand(env: NodeJS.ProcessEnv, args: EmitArgs): Promise<number> {
  let ctx: unknown = {};
  if (args.ctx !== undefined) {
    try {
      ctx = JSON.parse(args.ctx);
    } catch (err) {
      console.error(`ctx is not valid JSON: ${(err as Error).message}`);
      return 2;
    }
  }
  const settings = resolveSettings(env);
  const secret = (env[ENV.signingSecret] || '').split(/\s+/).find(Boolean) ?? (await readDevSecrets(settings.dataDir))?.signingSecret;
  const base = args.url ?? env[ENV.url] ?? `http://127.0.0.1:${settings.port}`;
  const body = JSON.stringify({ type: args.type, ctx });
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (secret) {
    Object.assign(headers, signStandardWebhooks(secretBytes(secret), `msg_${randomUUID().replace(/-/g, '')}`, Math.floor(Date.now() / 1000), body));
  } else if (!settings.signingDisabled) {
    console.error(`no signing secret: set ${ENV.signingSecret}, or run from the directory where \`herald dev\` keeps ${settings.dataDir}`);
    return 2;
  }
  if (args.idempotencyKey) headers['idempotency-key'] = args.idempotencyKey;
  const path = args.dryRun ? '/api/notifications/dry-run' : '/api/notifications/emit';
  let res: Response;
  try {
    res = await fetch(new URL(path, base), { method: 'POST', headers, body });
  } catch (err) {
    console.error(`could not reach herald at ${base}: ${(err as Error).message} (is it running? set HERALD_URL or --url)`);
    return 1;
  }
  const text = await res.text();
  let out = text;
  try {
    out = JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    /* print as is */
  }
  (res.ok ? console.log : console.error)(out);
  return res.ok ? 0 : 1;
}
