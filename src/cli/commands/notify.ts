import { readFile } from 'node:fs/promises';
import { resolveSettings, ENV } from '../../config/settings.ts';
import { missingToken, printBody, request, serverUrl, tokenFor } from '../client.ts';

export interface NotifyArgs {
  eventId: string;
  data: string | undefined;
  file: string | undefined;
  runId: string | undefined;
  contentType: string | undefined;
  url: string | undefined;
}

/**
 * `herald notify <eventId> [data]`: the notify API from the command line. Without --run it is a
 * broadcast (every current waiter; nothing kept when there is none); with --run it is kept for
 * that run's next wait on the event id.
 */
export async function notifyCommand(env: NodeJS.ProcessEnv, args: NotifyArgs): Promise<number> {
  const settings = resolveSettings(env);
  const token = await tokenFor(env, settings, ENV.qstashToken, 'qstashToken');
  if (!token) {
    console.error(missingToken(ENV.qstashToken, settings));
    return 2;
  }
  let body: Buffer;
  let contentType = args.contentType;
  if (args.file !== undefined) {
    if (args.data !== undefined) {
      console.error('give the data either as an argument or with --file, not both');
      return 2;
    }
    try {
      body = await readFile(args.file);
    } catch (err) {
      console.error(`cannot read ${args.file}: ${(err as Error).message}`);
      return 2;
    }
    contentType ??= 'application/octet-stream';
  } else {
    body = Buffer.from(args.data ?? '', 'utf8');
    contentType ??= isJson(args.data) ? 'application/json' : 'text/plain; charset=utf-8';
  }
  const base = serverUrl(env, settings, args.url);
  const path = args.runId
    ? `/v2/notify/${encodeURIComponent(args.runId)}/${encodeURIComponent(args.eventId)}`
    : `/v2/notify/${encodeURIComponent(args.eventId)}`;
  const f = await request(base, path, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': contentType },
    body: new Uint8Array(body),
  });
  if (!f.ok) return 1;
  printBody(f);
  if (!f.res.ok) return 1;
  const results = Array.isArray(f.json) ? (f.json as { waiter?: unknown }[]) : [];
  const reached = results.filter((r) => r.waiter).length;
  if (args.runId) {
    console.error(reached ? `delivered to run ${args.runId}` : `run ${args.runId} is not waiting yet: kept for its next wait on "${args.eventId}"`);
  } else {
    console.error(reached ? `reached ${reached} waiter${reached === 1 ? '' : 's'}` : `no waiter for "${args.eventId}": nothing was delivered and nothing kept`);
  }
  return 0;
}

function isJson(text: string | undefined): boolean {
  if (text === undefined || text.trim() === '') return false;
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}
