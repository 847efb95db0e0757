import type { Settings } from '../config/settings.ts';
import { ENV, resolveSettings, secretBytes } from '../config/settings.ts';
import { isSeedEmit, signRequest, signXSignature } from '../signing.ts';
import { readDevSecrets, type DevSecrets } from './dev-secrets.ts';

/** Where a CLI command finds the running herald: --url, then $HERALD_URL, then 127.0.0.1:$PORT. */
export function serverUrl(env: NodeJS.ProcessEnv, settings: Readonly<Settings>, url: string | undefined): string {
  return url ?? env[ENV.url] ?? `http://127.0.0.1:${settings.port}`;
}

/** A secret from the environment, else from `herald dev`'s secrets file in the data directory. */
export async function tokenFor(
  env: NodeJS.ProcessEnv,
  settings: Readonly<Settings>,
  envName: string,
  devKey: keyof DevSecrets,
): Promise<string | undefined> {
  const fromEnv = env[envName]?.trim();
  if (fromEnv) return fromEnv;
  return (await readDevSecrets(settings.dataDir))?.[devKey] || undefined;
}

/**
 * The secret that signs the CLI's server-to-server requests: the first of REQUEST_SIGNING_SECRET
 * (rotation lists several; the first is the current one), else `herald dev`'s.
 */
export async function signingSecret(env: NodeJS.ProcessEnv, settings: Readonly<Settings>): Promise<Buffer | undefined> {
  const secret = (await tokenFor(env, settings, ENV.signingSecret, 'signingSecret'))?.split(/\s+/)[0];
  return secret ? secretBytes(secret) : undefined;
}

export const missingSigningSecret = (settings: Readonly<Settings>) =>
  `no signing secret: set ${ENV.signingSecret}, or run from the directory where \`herald dev\` keeps ${settings.dataDir}`;

/**
 * The x-signature headers of a request as herald verifies it: the seed's emit signs its body alone;
 * every other route signs `<timestamp>\n<METHOD> <path>\n<body>`, `pathAndQuery` as it goes on the
 * wire (take it from a URL object, so it is percent-encoded the way fetch sends it).
 */
export function signatureHeaders(secret: Buffer, method: string, pathAndQuery: string, body: string): Record<string, string> {
  const pathname = pathAndQuery.split('?')[0]!;
  return isSeedEmit(method, pathname)
    ? { 'x-signature': signXSignature(secret, body) }
    : signRequest(secret, Math.floor(Date.now() / 1000), method, pathAndQuery, body);
}

export type Fetched = { ok: true; res: Response; text: string; json: unknown } | { ok: false };

/** fetch with an explanation (not a stack trace) when herald is not there. */
export async function request(base: string, path: string, init: RequestInit): Promise<Fetched> {
  let res: Response;
  try {
    res = await fetch(new URL(path, base), init);
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    console.error(`could not reach herald at ${base}: ${cause ?? (err as Error).message} (is it running? set HERALD_URL or --url)`);
    return { ok: false };
  }
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { ok: true, res, text, json };
}

/** Prints a response body (pretty JSON when it is JSON) on stdout, or stderr when it failed. */
export function printBody(f: { res: Response; text: string; json: unknown }): void {
  const out = f.json === undefined ? f.text : JSON.stringify(f.json, null, 2);
  (f.res.ok ? console.log : console.error)(out);
}

export const missingToken = (envName: string, settings: Readonly<Settings>) =>
  `no token: set ${envName}, or run from the directory where \`herald dev\` keeps ${settings.dataDir}`;

/**
 * Where and how an admin command talks to herald: the server's base URL and the bearer header of
 * ADMIN_TOKEN (or `herald dev`'s). Undefined, after saying why, when there is no token.
 */
export async function adminConnection(
  env: NodeJS.ProcessEnv,
  url: string | undefined,
): Promise<{ base: string; headers: Record<string, string> } | undefined> {
  const settings = resolveSettings(env);
  const token = await tokenFor(env, settings, ENV.adminToken, 'adminToken');
  if (!token) {
    console.error(missingToken(ENV.adminToken, settings));
    return undefined;
  }
  return { base: serverUrl(env, settings, url), headers: { authorization: `Bearer ${token}` } };
}

/** Rows as left-aligned columns (the first row is the header). */
export function textTable(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

/** An ISO timestamp as `2026-11-23 10:00:00Z`, or '' when absent. */
export const shortTime = (iso: string | null | undefined) => (iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '');
