import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import net from 'node:net';
import { Writable } from 'node:stream';
import { after, before, beforeEach, test } from 'node:test';
import { serve, type ServerType } from '@hono/node-server';
import pino from 'pino';
import { resolveSettings } from '../../src/config/settings.ts';
import { loadConfig } from '../../src/config/load-config.ts';
import { createEngine } from '../../src/engine.ts';
import { createApp } from '../../src/http/app.ts';
import { mintUserToken } from '../../src/cli/demo.ts';
import { createTestDb, type TestDb } from '../helpers/db.ts';
import { JWT_SECRET, SECRET } from '../helpers/herald.ts';

/**
 * Issue 24, item 13: unauthenticated garbage — a malformed chunked body, a body shorter than its
 * Content-Length, a client that hangs up mid-body — wrote error-level log lines with stack traces
 * (202 in one fuzz run). It is the client's doing, not herald's: logged at debug, without a stack,
 * and nothing at warn or above. Sent over raw sockets to a real listening server, since only
 * Node's HTTP parser produces these; the logger's output is captured as JSON lines.
 */

type Line = { level: number; msg: string; stack?: string; err?: unknown; [k: string]: unknown };
const lines: Line[] = [];
const sink = new Writable({
  write(chunk, _enc, cb) {
    for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Line);
    cb();
  },
});

const QSTASH_TOKEN = 'client-abort-qstash-token-0123';
let t: TestDb;
let server: ServerType;
let port = 0;
let userToken = '';

before(async () => {
  t = await createTestDb();
  const settings = resolveSettings({ REQUEST_SIGNING_SECRET: SECRET, JWT_SECRET, QSTASH_TOKEN });
  const rules = (await loadConfig(undefined, '/nonexistent-dir')).rules;
  const engine = createEngine({ settings, db: t.db, rules, log: pino({ level: 'debug' }, sink) });
  const app = createApp(engine);
  userToken = await mintUserToken(JWT_SECRET, randomUUID());
  await new Promise<void>((resolve) => {
    server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info) => {
      port = info.port;
      resolve();
    });
  });
});
after(async () => {
  (server as Server | undefined)?.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await t?.drop();
});
beforeEach(() => {
  lines.length = 0;
});

/** Writes raw bytes, optionally ends the socket's write side, and resolves with what came back once it closes. */
function raw(bytes: string, opts: { end?: boolean; destroyAfterMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let answer = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (answer += d));
    socket.on('error', (err) => ((err as NodeJS.ErrnoException).code === 'ECONNRESET' ? resolve(answer) : reject(err)));
    socket.on('close', () => resolve(answer));
    socket.write(bytes, () => {
      if (opts.end) socket.end();
    });
  });
}

/** The server has handled the request when its access line (debug) is logged; wait for it, bounded. */
async function settled(path: string) {
  const deadline = Date.now() + 5000;
  while (!lines.some((l) => l.msg === 'request' && l.path === path) && !lines.some((l) => l.level >= 20 && String(l.msg).includes('client'))) {
    if (Date.now() > deadline) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  // Anything the same request logs after its access line has been written by now.
  await new Promise((r) => setImmediate(r));
}

const loud = () => lines.filter((l) => l.level >= 40);
const withStacks = () => lines.filter((l) => l.stack !== undefined || JSON.stringify(l).includes('    at '));

/** [name, bytes, how to send them, whether a route read (and lost) the body]. */
const cases: [string, string, { end?: boolean }, boolean][] = [
  [
    'a malformed chunked body (a chunk size that is not hex)',
    `POST /api/notifications/emit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{"type":1}\r\n0\r\n\r\n`,
    {},
    true,
  ],
  [
    'a chunked body cut off by the client',
    `POST /api/notifications/emit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n{"type":`,
    { end: true },
    true,
  ],
  [
    'a body shorter than its Content-Length (the client then closes)',
    `POST /api/notifications/emit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"type":"x"}`,
    { end: true },
    true,
  ],
  [
    'a short body on an authenticated inbox route',
    `POST /api/notifications/read-all HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer TOKEN\r\nContent-Length: 50\r\n\r\n{}`,
    { end: true },
    false,
  ],
  [
    'a short body on the QStash surface, with its token',
    `POST /v2/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${QSTASH_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 80\r\n\r\n[{"destination":`,
    { end: true },
    true,
  ],
  [
    'a client that hangs up mid-body without a Content-Length violation (chunked, then reset)',
    `PUT /api/preferences HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer TOKEN\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"pre`,
    { end: true },
    true,
  ],
];

for (const [name, bytes, opts, bodyRead] of cases) {
  test(`${name}: logged at debug without a stack, nothing at warn or above`, async () => {
    const path = /^\w+ (\S+)/.exec(bytes)![1]!;
    await raw(bytes.replace('TOKEN', userToken), opts);
    await settled(path);
    assert.deepEqual(loud(), [], 'no warn/error lines');
    assert.deepEqual(withStacks(), [], 'no stack traces');
    if (bodyRead) assert.ok(lines.some((l) => l.level === 20 && l.msg === 'client aborted the request' && l.path === path), JSON.stringify(lines));
  });
}

test('a well-formed request still logs as before (the capture works)', async () => {
  const answer = await raw(`GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  assert.match(answer, /^HTTP\/1\.1 200/);
  await settled('/healthz');
  assert.ok(lines.some((l) => l.msg === 'request' && l.path === '/healthz' && l.level === 20));
});
