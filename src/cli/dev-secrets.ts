import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';

export interface DevSecrets {
  signingSecret: string;
  jwtSecret: string;
  /** Bearer token of the notify API (/v2/*), as QSTASH_TOKEN. */
  qstashToken: string;
  /** Bearer token of the admin API (/api/workflows/*), as ADMIN_TOKEN. */
  adminToken: string;
}

export const devSecretsPath = (dataDir: string) => join(dataDir, 'dev-secrets.json');

const generators: { [K in keyof DevSecrets]: () => string } = {
  signingSecret: () => `dev_${randomBytes(24).toString('hex')}`,
  jwtSecret: () => randomBytes(32).toString('hex'),
  qstashToken: () => `dev_qstash_${randomBytes(20).toString('hex')}`,
  adminToken: () => `dev_admin_${randomBytes(20).toString('hex')}`,
};

/**
 * Development secrets, generated once per data directory so restarts keep tokens valid. A file
 * written by an older herald gains the secrets it lacks; the ones it has are kept.
 */
export async function loadOrCreateDevSecrets(dataDir: string): Promise<DevSecrets> {
  const path = devSecretsPath(dataDir);
  const existing = (await readDevSecrets(dataDir)) ?? {};
  const secrets = { ...existing } as DevSecrets;
  let changed = false;
  for (const key of Object.keys(generators) as (keyof DevSecrets)[]) {
    if (typeof secrets[key] !== 'string' || !secrets[key]) {
      secrets[key] = generators[key]();
      changed = true;
    }
  }
  if (changed) {
    await mkdir(dataDir, { recursive: true });
    await writeFile(path, JSON.stringify(secrets, null, 2) + '\n', { mode: 0o600 });
  }
  return secrets;
}

export async function readDevSecrets(dataDir: string): Promise<Partial<DevSecrets> | undefined> {
  const path = devSecretsPath(dataDir);
  return existsSync(path) ? (JSON.parse(await readFile(path, 'utf8')) as Partial<DevSecrets>) : undefined;
}
