import { resolveSettings } from '../../config/settings.ts';
import { missingSigningSecret, printBody, request, serverUrl, signatureHeaders, signingSecret } from '../client.ts';

export interface ApiArgs {
  method: string;
  /** Path and query on herald, e.g. /api/users/8c1f…/preferences. */
  path: string;
  body: string | undefined;
  url: string | undefined;
}

const METHOD = /^[A-Za-z]{1,16}$/;

/** The method, upper-cased, and the URL the request goes to; undefined (after saying why) if invalid. */
function target(base: string, args: ApiArgs): { method: string; url: URL; signedPath: string } | undefined {
  if (!METHOD.test(args.method)) {
    console.error(`"${args.method}" is not an HTTP method (GET, PUT, POST, DELETE, …)`);
    return undefined;
  }
  if (!args.path.startsWith('/')) {
    console.error(`the path must start with "/" (e.g. /api/users/<id>), got "${args.path}"`);
    return undefined;
  }
  // Joined, not resolved: `new URL('/api/…', 'https://host/prefix')` would drop a reverse proxy's prefix.
  // The signature covers the path herald receives: without the prefix, which such a proxy strips.
  const url = new URL(base);
  const prefix = url.pathname.replace(/\/+$/, '');
  const [path, query] = args.path.split(/\?(.*)/s, 2) as [string, string | undefined];
  url.pathname = prefix + path;
  url.search = query ? `?${query}` : '';
  const signedPath = url.pathname.slice(prefix.length) + url.search;
  return { method: args.method.toUpperCase(), url, signedPath };
}

/**
 * `herald api <METHOD> <path> [body]`: sends a signed request to herald's server-to-server API (the
 * users directory, preferences, the dry run, emit) and prints the answer. Every route but emit signs
 * `<timestamp>\n<METHOD> <path>\n<body>` (src/signing.ts), which the CLI computes so no one has to.
 */
export async function apiCommand(env: NodeJS.ProcessEnv, args: ApiArgs): Promise<number> {
  const settings = resolveSettings(env);
  const t = target(serverUrl(env, settings, args.url), args);
  if (!t) return 2;
  const secret = await signingSecret(env, settings);
  if (!secret && !settings.signingDisabled) {
    console.error(missingSigningSecret(settings));
    return 2;
  }
  const body = args.body ?? '';
  const headers: Record<string, string> = body ? { 'content-type': 'application/json' } : {};
  // The URL object's path and query are what fetch puts on the wire (percent-encoded), so they are
  // what herald sees and what must be signed.
  if (secret) Object.assign(headers, signatureHeaders(secret, t.method, t.signedPath, body));
  const f = await request(t.url.origin, t.url.pathname + t.url.search, { method: t.method, headers, body: body || undefined });
  if (!f.ok) return 1;
  printBody(f);
  return f.res.ok ? 0 : 1;
}

/**
 * `herald sign <METHOD> <path> [body]`: prints the signature headers of that request, one
 * `name: value` per line, for curl (`-H @<(herald sign …)`) or any other client. They are valid for
 * five minutes (x-signature-timestamp's window); emit's body-only signature does not expire.
 */
export async function signCommand(env: NodeJS.ProcessEnv, args: ApiArgs): Promise<number> {
  const settings = resolveSettings(env);
  const t = target(serverUrl(env, settings, args.url), args);
  if (!t) return 2;
  const secret = await signingSecret(env, settings);
  if (!secret) {
    console.error(missingSigningSecret(settings));
    return 2;
  }
  const headers = signatureHeaders(secret, t.method, t.signedPath, args.body ?? '');
  for (const [name, value] of Object.entries(headers)) console.log(`${name}: ${value}`);
  return 0;
}
