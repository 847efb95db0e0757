import { ENV, resolveSettings } from '../../config/settings.ts';
import { isUuid } from '../../ids.ts';
import { tokenFor } from '../client.ts';
import { mintUserToken } from '../demo.ts';

/**
 * `herald token <userId>`: an inbox JWT for that user (HS256, `sub` = the id), signed with
 * JWT_SECRET, or in development with `herald dev`'s generated secret — so a developer can call the
 * inbox API as any user of theirs. In production only JWT_SECRET will do: herald never mints
 * tokens with a secret the operator did not set.
 */
export async function tokenCommand(env: NodeJS.ProcessEnv, args: { userId: string; ttl: string }): Promise<number> {
  if (!isUuid(args.userId) || !/^\d+[smhdw]$/.test(args.ttl)) {
    console.error('usage: herald token <userId> [--ttl 30d]   (userId: a UUID; ttl: a number and s, m, h, d or w)');
    return 2;
  }
  const settings = resolveSettings(env);
  const secret = settings.production ? env[ENV.jwtSecret]?.trim() || undefined : await tokenFor(env, settings, ENV.jwtSecret, 'jwtSecret');
  if (!secret) {
    console.error(
      settings.production
        ? `${ENV.jwtSecret} is not set: in production herald mints tokens only with the secret its server verifies them with`
        : `${ENV.jwtSecret} is not set, and ${settings.dataDir} holds no secrets of \`herald dev\` (run herald dev, or set ${ENV.jwtSecret})`,
    );
    return 1;
  }
  process.stdout.write(`${await mintUserToken(secret, args.userId.toLowerCase(), args.ttl)}\n`);
  return 0;
}
