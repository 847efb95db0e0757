import { resolveSettings } from '../../config/settings.ts';
import { unconfinedRole } from '../../storage/role-check.ts';
import { acquireDataDirLock } from '../data-dir-lock.ts';
import { openRuntime, run } from '../runtime.ts';

/**
 * `herald start` (server + worker) and `herald worker` (worker only). Production settings: the
 * signing secret is required (fail closed).
 */
export async function startCommand(env: NodeJS.ProcessEnv, parts: { http: boolean; worker: boolean }): Promise<number> {
  const settings = resolveSettings(env, { requireSecrets: parts.http });
  if (!settings.databaseUrl) await acquireDataDirLock(settings.dataDir);
  if (settings.signingDisabled) {
    console.error('WARNING: REQUEST_SIGNING_DISABLED=1 — emits are accepted unsigned. Never do this in production.');
  }
  const rt = await openRuntime(settings);
  const unconfined = await unconfinedRole(rt.engine.db);
  if (unconfined) rt.log.warn(unconfined);
  if (parts.http && !settings.jwtSecret) rt.log.warn('JWT_SECRET is not set: the inbox API answers 503');
  await run(rt, parts);
  return new Promise<number>(() => {});
}
