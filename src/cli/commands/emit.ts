import { randomUUID } from 'node:crypto';
import { resolveSettings, ENV, secretBytes } from '../../config/settings.ts';
import { signStandardWebhooks } from '../../intake/signing.ts';
import { printBody, request, serverUrl, tokenFor } from '../client.ts';

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
  // REQUEST_SIGNING_SECRET may list several secrets (rotation): the first one signs.
  const secret = (await tokenFor(env, settings, ENV.signingSecret, 'signingSecret'))?.split(/\s+/)[0];
  const base = serverUrl(env, settings, args.url);
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
  const f = await request(base, path, { method: 'POST', headers, body });
  if (!f.ok) return 1;
  printBody(f);
  return f.res.ok ? 0 : 1;
}
