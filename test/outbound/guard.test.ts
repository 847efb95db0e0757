// herald-test: no database (runs once, not once per backend: scripts/test.mjs)
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { isForbiddenAddress } from '../../src/outbound/addresses.ts';
import { IPV4_SPECIAL, IPV6_SPECIAL, type SpecialBlock } from '../../src/outbound/special-addresses.ts';
import { createOutboundFetch, OutboundRefusedError, parseAllowlist } from '../../src/outbound/guard.ts';

describe('outbound guard: address ranges', () => {
  for (const ip of [
    '127.0.0.1', '127.255.0.9', '10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254', '100.64.0.1',
    '0.0.0.0', '224.0.0.1', '255.255.255.255', '198.18.0.1', '::1', '::', 'fe80::1', 'fd00::1', 'fc00::2', 'ff02::1',
    '::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:10.0.0.1', '64:ff9b::a9fe:a9fe', 'not-an-ip',
  ]) {
    test(`${ip} is refused`, () => assert.equal(isForbiddenAddress(ip), true));
  }
  for (const ip of ['8.8.8.8', '1.1.1.1', '172.32.0.1', '192.169.0.1', '100.128.0.1', '2606:4700::1111', '::ffff:8.8.8.8', '2a00:1450:4001::200e']) {
    test(`${ip} is allowed`, () => assert.equal(isForbiddenAddress(ip), false));
  }
});

// Issue 24, item 14: the IANA special-purpose registries, both families, first and last address
// of every block; the three gaps the probe found; and public addresses that must pass.
const v4ToBig = (ip: string) => ip.split('.').reduce((n, p) => (n << 8n) + BigInt(p), 0n);
const bigToV4 = (n: bigint) => [24n, 16n, 8n, 0n].map((s) => String((n >> s) & 0xffn)).join('.');
function v6ToBig(ip: string): bigint {
  const [head, tail = ''] = ip.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = ip.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
  return groups.reduce((n, g) => (n << 16n) + BigInt(parseInt(g, 16)), 0n);
}
const bigToV6 = (n: bigint) => Array.from({ length: 8 }, (_, i) => ((n >> BigInt(112 - 16 * i)) & 0xffffn).toString(16)).join(':');
function firstAndLast(b: SpecialBlock, width: 32 | 128): [string, string] {
  const base = width === 32 ? v4ToBig(b.prefix) : v6ToBig(b.prefix);
  const host = (1n << BigInt(width - b.bits)) - 1n;
  const first = base & ~host & ((1n << BigInt(width)) - 1n);
  const fmt = width === 32 ? bigToV4 : bigToV6;
  return [fmt(first), fmt(first | host)];
}

describe('outbound guard: every IANA special-purpose block, first and last address', () => {
  for (const [blocks, width] of [[IPV4_SPECIAL, 32], [IPV6_SPECIAL, 128]] as const) {
    for (const b of blocks) {
      const [first, last] = firstAndLast(b, width);
      test(`${b.prefix}/${b.bits} ${b.name} (${b.rfc}): ${first} and ${last} are refused`, () => {
        assert.equal(isForbiddenAddress(first), true, first);
        assert.equal(isForbiddenAddress(last), true, last);
      });
    }
  }
});

describe('outbound guard: the probe\'s gaps and embedded IPv4', () => {
  for (const [ip, what] of <[string, string][]>[
    ['::ffff:0:10.0.0.1', 'IPv4-translated, private'],
    ['::ffff:0:127.0.0.1', 'IPv4-translated, loopback'],
    ['::ffff:0:8.8.8.8', 'IPv4-translated, even public (not routable as such)'],
    ['0:0:0:0:ffff:0:a00:1', 'IPv4-translated, hex'],
    ['2002:a00:1::', '6to4 of 10.0.0.1'],
    ['2002:c0a8:101::1', '6to4 of 192.168.1.1'],
    ['2002:a9fe:a9fe::', '6to4 of the metadata address'],
    ['2002:7f00:1:0:0:0:0:1', '6to4 of loopback'],
    ['2001:0:4136:e378:8000:63bf:3fff:fdd2', 'Teredo'],
    ['2001::1', 'Teredo'],
    ['2001:0:ffff:ffff:ffff:ffff:ffff:ffff', 'Teredo'],
    ['64:ff9b::10.0.0.1', 'NAT64 of a private address'],
    ['64:ff9b:1::808:808', 'local-use NAT64 prefix'],
    ['::ffff:169.254.169.254', 'IPv4-mapped metadata'],
    ['0:0:0:0:0:FFFF:7F00:0001', 'IPv4-mapped loopback, upper case and uncompressed'],
    ['FE80::1', 'link-local, upper case'],
    ['fe80::1%eth0', 'link-local with a zone'],
    ['3fff::1', 'documentation (RFC 9637)'],
    ['5f00::1', 'SRv6 SIDs'],
    ['4000::1', 'outside global unicast'],
    ['1::', 'reserved by the IETF'],
    ['::8.8.8.8', 'IPv4-compatible (deprecated)'],
    ['192.0.0.9', 'inside 192.0.0.0/24'],
    ['', 'empty'],
    ['1.2.3', 'not an address'],
    ['1.2.3.4.5', 'not an address'],
    ['::g', 'not an address'],
  ]) {
    test(`${ip || '(empty)'} (${what}) is refused`, () => assert.equal(isForbiddenAddress(ip), true));
  }
});

describe('outbound guard: public addresses pass', () => {
  for (const ip of [
    '8.8.8.8', '1.1.1.1', '9.9.9.9', '9.255.255.255', '11.0.0.0', '100.63.255.255', '100.128.0.0', '126.255.255.255', '128.0.0.0',
    '169.253.255.255', '169.255.0.0', '172.15.255.255', '172.32.0.0', '191.255.255.255', '192.0.1.0', '192.0.3.0', '192.88.98.255',
    '192.167.255.255', '192.169.0.0', '198.17.255.255', '198.20.0.0', '203.0.112.255', '223.255.255.255',
    '2606:4700::1111', '2a00:1450:4001::200e', '2001:4860:4860::8888', '2001:200::1', '2001:200:ffff::1',
    '2002:808:808::1', '::ffff:8.8.8.8', '::ffff:808:808', '64:ff9b::8.8.8.8', '64:ff9b::101:101', '2620:4f:7fff::1', '2620:4f:8001::1',
    '3fff:1000::1', '2c0f:fb50::1', '3ffe::1',
  ]) {
    test(`${ip} is allowed`, () => assert.equal(isForbiddenAddress(ip), false));
  }
});

describe('outbound guard: requests', () => {
  let server: Server;
  let port = 0;
  before(async () => {
    server = createServer((req, res) => {
      if (req.url === '/redirect') {
        res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data' }).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain' }).end('reached');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    port = (server.address() as AddressInfo).port;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  const refused = async (p: Promise<unknown>, re: RegExp) => {
    await assert.rejects(p, (err: unknown) => err instanceof OutboundRefusedError && re.test((err as Error).message));
  };

  test('a loopback address is refused unless its host:port is allow-listed', async () => {
    const closed = createOutboundFetch(new Set());
    await refused(closed(`http://127.0.0.1:${port}/`, {}), /refused to connect to 127\.0\.0\.1.*OUTBOUND_ALLOWLIST/);
    const open = createOutboundFetch(parseAllowlist(`127.0.0.1:${port}`));
    const res = await open(`http://127.0.0.1:${port}/`, {});
    assert.equal(await res.text(), 'reached');
  });

  test('the check happens after DNS: a name that resolves to loopback is refused', async () => {
    const f = createOutboundFetch(parseAllowlist(`127.0.0.1:${port}`));
    await refused(f(`http://localhost:${port}/`, {}), /refused to connect to localhost/);
  });

  test('IPv6 loopback, metadata and private literals are refused without connecting', async () => {
    const f = createOutboundFetch(new Set());
    await refused(f(`http://[::1]:${port}/`, {}), /::1/);
    await refused(f('http://169.254.169.254/latest/meta-data', {}), /169\.254\.169\.254/);
    await refused(f('http://10.0.0.8:8080/', {}), /10\.0\.0\.8/);
    await refused(f('http://[::ffff:127.0.0.1]/', {}), /refused/);
    // Decimal, hex and octal spellings of 127.0.0.1 are normalized by the URL parser, then refused.
    await refused(f(`http://2130706433:${port}/`, {}), /127\.0\.0\.1/);
    await refused(f(`http://0x7f000001:${port}/`, {}), /127\.0\.0\.1/);
    await refused(f(`http://0177.0.0.1:${port}/`, {}), /127\.0\.0\.1/);
  });

  test('redirects are not followed; non-http schemes and credentials are refused', async () => {
    const f = createOutboundFetch(parseAllowlist(`127.0.0.1:${port}`));
    const res = await f(`http://127.0.0.1:${port}/redirect`, {});
    assert.equal(res.status, 302, 'the redirect is returned, not followed to the metadata address');
    await refused(f('ftp://example.com/file', {}), /only http/);
    await refused(f(`http://user:pw@127.0.0.1:${port}/`, {}), /credentials/);
  });

  test('OUTBOUND_ALLOWLIST entries must be host:port', () => {
    assert.deepEqual([...parseAllowlist('127.0.0.1:8080, [::1]:9000 hooks.internal:443')], ['127.0.0.1:8080', '::1:9000', 'hooks.internal:443']);
    assert.throws(() => parseAllowlist('127.0.0.1'), /must be host:port/);
  });
});
