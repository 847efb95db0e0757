import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { signatureHeaders } from '../../src/cli/client.ts';
import { BACKEND, createTestDb, type TestDb, seededDataDir } from '../helpers/db.ts';
import { HERALD_BIN, REPO, startHerald, type Proc } from '../helpers/processes.ts';

/**
 * Issue 24 item 10: the CLI signs the routes bound to method and path for you (`herald api`,
 * `herald sign`, `herald emit --dry-run`), and the README's openssl recipe computes the signature.
 */

const SECRET = 'a-production-grade-secret-123';
const exec = promisify(execFile);

let dir = '';
let t: TestDb | undefined;
let server: Proc | undefined;
let url = '';

const run = (file: string, args: string[]) =>
  exec(file, args, { env: { ...process.env, HERALD_URL: url, REQUEST_SIGNING_SECRET: SECRET, HERALD_DATA_DIR: join(dir, 'cli-data') } }).then(
    (r) => ({ code: 0, ...r }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
const herald = (args: string[]) => run(process.execPath, [HERALD_BIN, ...args]);

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'herald-cli-signed-'));
  if (BACKEND === 'pglite') seededDataDir(join(dir, 'data')); // skips initdb in the herald processes
  if (BACKEND === 'postgres') t = await createTestDb({ migrate: false });
  server = startHerald(['start'], {
    ...(t ? { DATABASE_URL: t.url! } : { DATABASE_URL: '', HERALD_DATA_DIR: join(dir, 'data') }),
    REQUEST_SIGNING_SECRET: SECRET,
    PORT: '0',
  });
  url = (await server.waitFor(/"url":"(http:[^"]+)","msg":"listening"/))[1]!;
});
after(async () => {
  await server?.kill('SIGTERM');
  await rm(dir, { recursive: true, force: true });
  await t?.drop();
});

test('herald api signs directory, preferences and dry-run requests; herald sign feeds curl', { timeout: 60_000 }, async () => {
  const id = randomUUID();
  const tenantId = randomUUID();
  const put = await herald(['api', 'put', `/api/users/${id}`, JSON.stringify({ tenantId, name: 'Carol', email: 'carol@example.test' })]);
  assert.equal(put.code, 0, put.stderr);
  assert.equal((JSON.parse(put.stdout) as { user: { name: string } }).user.name, 'Carol');

  const prefs = await herald(['api', 'PUT', `/api/users/${id}/preferences`, JSON.stringify({ preferences: [{ channel: 'email', scope: '*', enabled: false }] })]);
  assert.equal(prefs.code, 0, prefs.stderr);
  assert.equal((JSON.parse(prefs.stdout) as { preferences: { enabled: boolean }[] }).preferences[0]?.enabled, false);
  // A query string is signed as part of the path.
  const got = await herald(['api', 'GET', `/api/users/${id}?view=all`]);
  assert.equal(got.code, 0, got.stderr);

  const dry = await herald(['emit', 'obra.completed', JSON.stringify({ tenantId, obra: { id: 'o1', name: 'Escuela', percentage: 100 } }), '--dry-run']);
  assert.equal(dry.code, 0, dry.stderr);

  // herald sign prints the headers; curl reads them from a file (-H @file), as the README shows.
  const other = randomUUID();
  const body = JSON.stringify({ tenantId });
  const signed = await herald(['sign', 'PUT', `/api/users/${other}`, body]);
  assert.equal(signed.code, 0, signed.stderr);
  assert.match(signed.stdout, /^x-signature-timestamp: \d+\nx-signature: [0-9a-f]{64}\n$/);
  const headersFile = join(dir, 'headers');
  await writeFile(headersFile, signed.stdout);
  const curl = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-X', 'PUT', `${url}/api/users/${other}`, '-H', 'content-type: application/json', '-H', `@${headersFile}`, '--data', body]);
  assert.equal(curl.stdout, '201', curl.stderr);
  // The same headers on another path are refused.
  const replay = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-X', 'PUT', `${url}/api/users/${randomUUID()}`, '-H', 'content-type: application/json', '-H', `@${headersFile}`, '--data', body]);
  assert.equal(replay.stdout, '401');

  const del = await herald(['api', 'DELETE', `/api/users/${id}`]);
  assert.equal(del.code, 0, del.stderr);
  const gone = await fetch(`${url}/api/users/${id}`, { headers: signatureHeaders(Buffer.from(SECRET), 'GET', `/api/users/${id}`, '') });
  assert.equal(gone.status, 404);
});

test("the README's openssl recipe computes the issue's test vector", async () => {
  const readme = await readFile(join(REPO, 'README.md'), 'utf8');
  const block = /```sh\n(secret='test-secret-0123456789'[\s\S]*?)```/.exec(readme);
  assert.ok(block, 'the README has the openssl recipe with the test vector');
  const out = await run('sh', ['-c', block[1]!]);
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, /^5c41f8bdbf943850641f1a154133e9d41854baa8af938a20c6f6a807db977e11$/m);
});
