import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';

export interface DevSecrets {
  signingSecret: string;
  jwtSecret: string;
}

export const devSecretsPath = (dataDir: string) => join(dataDir, 'dev-secrets.json');

/** Development secrets, generated once per data directory so restarts keep tokens valid. */
export async function loadOrCreateDevSecrets(dataDir: string): Promise<DevSecrets> {
  const path = devSecretsPath(dataDir);
  if (existsSync(path)) return JSON.parse(await readFile(path, 'utf8')) as DevSecrets;
  const secrets: DevSecrets = {
    signingSecret: `dev_${randomBytes(24).toString('hex')}`,
    jwtSecret: randomBytes(32).toString('hex'),
  };
  await mkdir(dataDir, { recursive: true });
  await writeFile(path, JSON.stringify(secrets, null, 2) + '\n', { mode: 0o600 });
  return secrets;
}

export async function readDevSecrets(dataDir: string): Promise<DevSecrets | undefined> {
  const path = devSecretsPath(dataDir);
  return existsSync(path) ? (JSON.parse(await readFile(path, 'utf8')) as DevSecrets) : undefined;
}
