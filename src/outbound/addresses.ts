import { BlockList, isIP } from 'node:net';
import { IPV4_SPECIAL, IPV6_GLOBAL_UNICAST, IPV6_SPECIAL, type SpecialBlock } from './special-addresses.ts';

/**
 * Addresses herald refuses to send requests to unless allow-listed: every block of the IANA
 * special-purpose registries (loopback, private, link-local with cloud metadata, carrier-grade
 * NAT, documentation, benchmarking, Teredo, ...: special-addresses.ts), multicast, and IPv6
 * outside global unicast. An IPv6 address that embeds an IPv4 one (IPv4-mapped, NAT64, 6to4) is
 * judged by the IPv4 address it carries. Matching is node's `net.BlockList`.
 */
const blockList = (blocks: readonly SpecialBlock[], family: 'ipv4' | 'ipv6') => {
  const list = new BlockList();
  for (const b of blocks) list.addSubnet(b.prefix, b.bits, family);
  return list;
};

const V4_REFUSED = blockList(IPV4_SPECIAL, 'ipv4');
const V6_REFUSED = blockList(IPV6_SPECIAL.filter((b) => b.embedsIpv4 === undefined), 'ipv6');
const V6_GLOBAL_UNICAST = blockList([IPV6_GLOBAL_UNICAST], 'ipv6');
const V6_EMBEDDING = IPV6_SPECIAL.filter((b) => b.embedsIpv4 !== undefined).map((b) => ({ at: b.embedsIpv4!, list: blockList([b], 'ipv6') }));

/** The 8 groups of a valid IPv6 address (with "::" and a trailing dotted IPv4 expanded). */
function v6Groups(ip: string): number[] {
  let addr = ip.toLowerCase();
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(addr);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    addr = `${addr.slice(0, -dotted[0].length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = addr.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const fill = tail === undefined ? [] : Array<string>(8 - h.length - t.length).fill('0');
  return [...h, ...fill, ...t].map((g) => parseInt(g, 16));
}

/** The IPv4 address in the 32 bits that start `at` bits into the IPv6 address. */
function embeddedV4(groups: number[], at: number): string {
  const g = at / 16;
  const hi = groups[g]!;
  const lo = groups[g + 1]!;
  return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
}

function v6Refused(raw: string): boolean {
  // A zone (fe80::1%eth0) names an interface, not another address; BlockList would not match it.
  const ip = raw.split('%')[0]!;
  if (isIP(ip) !== 6) return true;
  for (const e of V6_EMBEDDING) if (e.list.check(ip, 'ipv6')) return V4_REFUSED.check(embeddedV4(v6Groups(ip), e.at), 'ipv4');
  return V6_REFUSED.check(ip, 'ipv6') || !V6_GLOBAL_UNICAST.check(ip, 'ipv6');
}

/** True for an address herald must not connect to (unless its host:port is allow-listed). */
export function isForbiddenAddress(ip: string): boolean {
  if (isIP(ip) === 4) return V4_REFUSED.check(ip, 'ipv4');
  if (ip.includes(':')) return v6Refused(ip);
  return true; // not an address at all: refuse
}
