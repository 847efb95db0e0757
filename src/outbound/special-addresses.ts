/**
 * The IANA special-purpose address registries, as data, for the outbound guard (addresses.ts).
 * Sources: https://www.iana.org/assignments/iana-ipv4-special-registry and
 * https://www.iana.org/assignments/iana-ipv6-special-registry (RFC 6890), plus the few blocks
 * that live in other IANA registries and are just as unfit as destinations (multicast, the
 * deprecated site-local and IPv4-compatible/translated forms). When IANA adds a block, add a line.
 *
 * Every entry is refused, with three exceptions whose last bits embed an IPv4 address that then
 * decides (`embedsIpv4`): IPv4-mapped, the NAT64 well-known prefix and 6to4. Beside the entries,
 * IPv6 outside 2000::/3, the only block allocated for global unicast, is refused (addresses.ts).
 */
export interface SpecialBlock {
  prefix: string;
  bits: number;
  name: string;
  rfc: string;
  /** Where the embedded IPv4 address starts, in bits from the left (IPv6 only). */
  embedsIpv4?: number;
}

export const IPV4_SPECIAL: readonly SpecialBlock[] = [
  { prefix: '0.0.0.0', bits: 8, name: '"This network"', rfc: 'RFC 791 §3.2' },
  { prefix: '0.0.0.0', bits: 32, name: '"This host on this network"', rfc: 'RFC 1122 §3.2.1.3' },
  { prefix: '10.0.0.0', bits: 8, name: 'Private-Use', rfc: 'RFC 1918' },
  { prefix: '100.64.0.0', bits: 10, name: 'Shared Address Space (carrier-grade NAT)', rfc: 'RFC 6598' },
  { prefix: '127.0.0.0', bits: 8, name: 'Loopback', rfc: 'RFC 1122 §3.2.1.3' },
  { prefix: '169.254.0.0', bits: 16, name: 'Link Local (cloud metadata at 169.254.169.254)', rfc: 'RFC 3927' },
  { prefix: '172.16.0.0', bits: 12, name: 'Private-Use', rfc: 'RFC 1918' },
  { prefix: '192.0.0.0', bits: 24, name: 'IETF Protocol Assignments', rfc: 'RFC 6890 §2.1' },
  { prefix: '192.0.0.0', bits: 29, name: 'IPv4 Service Continuity Prefix', rfc: 'RFC 7335' },
  { prefix: '192.0.0.8', bits: 32, name: 'IPv4 dummy address', rfc: 'RFC 7600' },
  { prefix: '192.0.0.9', bits: 32, name: 'Port Control Protocol Anycast', rfc: 'RFC 7723' },
  { prefix: '192.0.0.10', bits: 32, name: 'Traversal Using Relays around NAT Anycast', rfc: 'RFC 8155' },
  { prefix: '192.0.0.170', bits: 32, name: 'NAT64/DNS64 Discovery', rfc: 'RFC 8880, RFC 7050 §2.2' },
  { prefix: '192.0.0.171', bits: 32, name: 'NAT64/DNS64 Discovery', rfc: 'RFC 8880, RFC 7050 §2.2' },
  { prefix: '192.0.2.0', bits: 24, name: 'Documentation (TEST-NET-1)', rfc: 'RFC 5737' },
  { prefix: '192.31.196.0', bits: 24, name: 'AS112-v4', rfc: 'RFC 7535' },
  { prefix: '192.52.193.0', bits: 24, name: 'AMT', rfc: 'RFC 7450' },
  { prefix: '192.88.99.0', bits: 24, name: 'Deprecated (6to4 Relay Anycast)', rfc: 'RFC 7526' },
  { prefix: '192.88.99.2', bits: 32, name: '6a44-relay anycast address', rfc: 'RFC 6751' },
  { prefix: '192.168.0.0', bits: 16, name: 'Private-Use', rfc: 'RFC 1918' },
  { prefix: '192.175.48.0', bits: 24, name: 'Direct Delegation AS112 Service', rfc: 'RFC 7534' },
  { prefix: '198.18.0.0', bits: 15, name: 'Benchmarking', rfc: 'RFC 2544' },
  { prefix: '198.51.100.0', bits: 24, name: 'Documentation (TEST-NET-2)', rfc: 'RFC 5737' },
  { prefix: '203.0.113.0', bits: 24, name: 'Documentation (TEST-NET-3)', rfc: 'RFC 5737' },
  { prefix: '240.0.0.0', bits: 4, name: 'Reserved', rfc: 'RFC 1112 §4' },
  { prefix: '255.255.255.255', bits: 32, name: 'Limited Broadcast', rfc: 'RFC 8190, RFC 919 §7' },
  // Not in the special-purpose registry (IANA IPv4 Multicast Address Space Registry).
  { prefix: '224.0.0.0', bits: 4, name: 'Multicast', rfc: 'RFC 5771' },
];

export const IPV6_SPECIAL: readonly SpecialBlock[] = [
  { prefix: '::1', bits: 128, name: 'Loopback Address', rfc: 'RFC 4291' },
  { prefix: '::', bits: 128, name: 'Unspecified Address', rfc: 'RFC 4291' },
  { prefix: '::ffff:0:0', bits: 96, name: 'IPv4-mapped Address', rfc: 'RFC 4291', embedsIpv4: 96 },
  { prefix: '64:ff9b::', bits: 96, name: 'IPv4-IPv6 Translation (NAT64 well-known prefix)', rfc: 'RFC 6052', embedsIpv4: 96 },
  { prefix: '64:ff9b:1::', bits: 48, name: 'IPv4-IPv6 Translation (local use)', rfc: 'RFC 8215' },
  { prefix: '100::', bits: 64, name: 'Discard-Only Address Block', rfc: 'RFC 6666' },
  { prefix: '100:0:0:1::', bits: 64, name: 'Dummy IPv6 Prefix', rfc: 'RFC 9780' },
  { prefix: '2001::', bits: 23, name: 'IETF Protocol Assignments', rfc: 'RFC 2928' },
  { prefix: '2001::', bits: 32, name: 'TEREDO', rfc: 'RFC 4380, RFC 8190' },
  { prefix: '2001:1::1', bits: 128, name: 'Port Control Protocol Anycast', rfc: 'RFC 7723' },
  { prefix: '2001:1::2', bits: 128, name: 'Traversal Using Relays around NAT Anycast', rfc: 'RFC 8155' },
  { prefix: '2001:1::3', bits: 128, name: 'DNS-SD Service Registration Protocol Anycast', rfc: 'RFC 9665' },
  { prefix: '2001:2::', bits: 48, name: 'Benchmarking', rfc: 'RFC 5180' },
  { prefix: '2001:3::', bits: 32, name: 'AMT', rfc: 'RFC 7450' },
  { prefix: '2001:4:112::', bits: 48, name: 'AS112-v6', rfc: 'RFC 7535' },
  { prefix: '2001:10::', bits: 28, name: 'Deprecated (previously ORCHID)', rfc: 'RFC 4843' },
  { prefix: '2001:20::', bits: 28, name: 'ORCHIDv2', rfc: 'RFC 7343' },
  { prefix: '2001:30::', bits: 28, name: 'Drone Remote ID Protocol Entity Tags (DETs) Prefix', rfc: 'RFC 9374' },
  { prefix: '2001:db8::', bits: 32, name: 'Documentation', rfc: 'RFC 3849' },
  { prefix: '2002::', bits: 16, name: '6to4', rfc: 'RFC 3056', embedsIpv4: 16 },
  { prefix: '2620:4f:8000::', bits: 48, name: 'Direct Delegation AS112 Service', rfc: 'RFC 7534' },
  { prefix: '3fff::', bits: 20, name: 'Documentation', rfc: 'RFC 9637' },
  { prefix: '5f00::', bits: 16, name: 'Segment Routing (SRv6) SIDs', rfc: 'RFC 9602' },
  { prefix: 'fc00::', bits: 7, name: 'Unique-Local', rfc: 'RFC 4193, RFC 8190' },
  { prefix: 'fe80::', bits: 10, name: 'Link-Local Unicast', rfc: 'RFC 4291' },
  // Not in the special-purpose registry (IANA IPv6 Address Space and Multicast registries).
  { prefix: '::', bits: 96, name: 'IPv4-compatible (deprecated)', rfc: 'RFC 4291 §2.5.5.1' },
  { prefix: '::ffff:0:0:0', bits: 96, name: 'IPv4-translated (SIIT)', rfc: 'RFC 2765 §2.1' },
  { prefix: 'fec0::', bits: 10, name: 'Site-Local (deprecated)', rfc: 'RFC 3879' },
  { prefix: 'ff00::', bits: 8, name: 'Multicast', rfc: 'RFC 4291 §2.7' },
];

/** The only IPv6 block allocated for global unicast (IANA IPv6 Address Space registry). */
export const IPV6_GLOBAL_UNICAST: SpecialBlock = { prefix: '2000::', bits: 3, name: 'Global Unicast', rfc: 'RFC 4291 §2.4' };
