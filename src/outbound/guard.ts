import { lookup } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
import { Agent, fetch as undiciFetch } from 'undici';
import { isForbiddenAddress } from './addresses.ts';

/** A request the outbound guard refused: never retried (the address will not change its range). */
export class OutboundRefusedError extends Error {
  override name = 'OutboundRefusedError';
}

export type OutboundFetch = (url: string, init: RequestInit & { timeoutMs?: number }) => Promise<Response>;

const defaultPort = (u: URL) => u.port || (u.protocol === 'https:' ? '443' : '80');
const bareHost = (h: string) => h.replace(/^\[|\]$/g, '').toLowerCase();

/**
 * Parses OUTBOUND_ALLOWLIST: `host:port` entries separated by commas or spaces (`[::1]:8080` for
 * IPv6). An allow-listed host:port is reached whatever it resolves to.
 */
export function parseAllowlist(raw: string | undefined): Set<string> {
  const out = new Set<string>();
  for (const entry of (raw ?? '').split(/[\s,]+/).filter(Boolean)) {
    const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(entry);
    if (!m) throw new Error(`OUTBOUND_ALLOWLIST entry "${entry}" must be host:port`);
    out.add(`${bareHost(m[1]!)}:${Number(m[2])}`);
  }
  return out;
}

/**
 * Outbound HTTP for URLs that come from configuration or users (workflow endpoints, context.call
 * targets, webhooks). The address is checked after DNS resolution, inside the connection's own
 * lookup, so the socket connects to exactly the address that was checked (no DNS rebinding
 * window); redirects are never followed. Private, loopback, link-local and metadata addresses are
 * refused unless the URL's host:port is allow-listed.
 */
export function createOutboundFetch(allowlist: Set<string>): OutboundFetch {
  const guardedLookup: LookupFunction = (hostname, options, callback) => {
    lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, '', 4);
      const list = addresses as unknown as { address: string; family: number }[];
      const refused = list.find((a) => isForbiddenAddress(a.address));
      if (refused || list.length === 0) {
        return callback(new OutboundRefusedError(`refused to connect to ${hostname} (${refused?.address ?? 'no address'}): private, loopback or reserved address; allow it with OUTBOUND_ALLOWLIST=${hostname}:<port>`), '', 4);
      }
      if ((options as { all?: boolean }).all) return (callback as unknown as (e: null, a: typeof list) => void)(null, list);
      callback(null, list[0]!.address, list[0]!.family);
    });
  };
  const guarded = new Agent({ connect: { lookup: guardedLookup } });
  const open = new Agent();

  return async (url, init) => {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new OutboundRefusedError(`not a valid URL: ${url}`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new OutboundRefusedError(`only http(s) URLs are allowed: ${url}`);
    if (u.username || u.password) throw new OutboundRefusedError('URLs with credentials are refused');
    const host = bareHost(u.hostname);
    const allowed = allowlist.has(`${host}:${defaultPort(u)}`);
    // An IP literal never goes through a lookup: check it here.
    if (!allowed && isIP(host) && isForbiddenAddress(host)) {
      throw new OutboundRefusedError(`refused to connect to ${host}: private, loopback or reserved address; allow it with OUTBOUND_ALLOWLIST=${u.host}`);
    }
    const { timeoutMs, ...rest } = init;
    try {
      return (await undiciFetch(url, {
        ...(rest as Parameters<typeof undiciFetch>[1]),
        redirect: 'manual',
        dispatcher: allowed ? open : guarded,
        signal: rest.signal ?? (timeoutMs ? AbortSignal.timeout(timeoutMs) : undefined),
      })) as unknown as Response;
    } catch (err) {
      const cause = (err as { cause?: unknown }).cause;
      if (cause instanceof OutboundRefusedError) throw cause;
      throw err;
    }
  };
}
