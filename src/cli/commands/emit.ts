import { randomUUID } from 'node:crypto';
import { resolveSettings } from '../../config/settings.ts';
import { signStandardWebhooks } from '../../signing.ts';
import { missingSigningSecret, printBody, request, serverUrl, signatureHeaders, signingSecret } from '../client.ts';

export interface EmitArgs {
  type: string;
  ctx: string | undefined;
  dryRun: boolean;
  url: string | undefined;
  idempotencyKey: string | undefined;
}

/**
 * `herald emit <type> [ctx-json]`: signs with REQUEST_SIGNING_SECRET (or the dev secret of the data
 * directory), posts to a running herald and prints its answer. Emit is signed with Standard Webhooks
 * (its webhook-id makes a retry idempotent); the dry run, like every route but emit, with the
 * x-signature bound to its timestamp, method and path (Standard Webhooks is refused there).
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
  const secret = await signingSecret(env, settings);
  const base = serverUrl(env, settings, args.url);
  const body = JSON.stringify({ type: args.type, ctx });
  const path = args.dryRun ? '/api/notifications/dry-run' : '/api/notifications/emit';
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (secret) {
    Object.assign(
      headers,
      args.dryRun
        ? signatureHeaders(secret, 'POST', path, body)
        : signStandardWebhooks(secret, `msg_${randomUUID().replace(/-/g, '')}`, Math.floor(Date.now() / 1000), body),
    );
  } else if (!settings.signingDisabled) {
    console.error(missingSigningSecret(settings));
    return 2;
  }
  if (args.idempotencyKey) headers['idempotency-key'] = args.idempotencyKey;
  const f = await request(base, path, { method: 'POST', headers, body });
  if (!f.ok) return 1;
  printBody(f);
  return f.res.ok ? 0 : 1;
}
