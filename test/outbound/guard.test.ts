import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { isForbiddenAddress } from '../../src/outbound/addresses.ts';
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
