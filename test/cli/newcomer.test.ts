import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { spawn } from 'node:child_process';
import { BACKEND } from '../helpers/db.ts';
import { REPO } from '../helpers/processes.ts';

const sh = promisify(execFile);
// `herald dev` is the PGlite experience; one run of it is enough.
const skip = BACKEND !== 'pglite' && 'herald dev runs on embedded PGlite; covered in the PGlite run';

let dataDir = '';
let stopDev: (() => Promise<void>) | undefined;
after(async () => {
  await stopDev?.();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

test("a newcomer's run: `npm run dev`, then the printed examples put a notification in an inbox", { skip, timeout: 120_000 }, async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'herald-newcomer-'));
  // Exactly the README's command (after npm install), on a free port, in a fresh data directory.
  const dev = spawn('npm', ['run', '-s', 'dev'], {
    cwd: REPO,
    env: { ...process.env, PORT: '0', HERALD_DATA_DIR: dataDir, DATABASE_URL: '' },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  dev.stdout!.on('data', (d) => (out += d));
  dev.stderr!.on('data', (d) => (out += d));
  const exited = new Promise((r) => dev.once('exit', r));
  stopDev = async () => {
    try {
      process.kill(-dev.pid!, 'SIGTERM');
    } catch {
      return;
    }
    await exited;
  };
  const deadline = Date.now() + 90_000;
  while (!/Read .*inbox[\s\S]*Bearer [^']+'/.test(out)) {
    if (dev.exitCode !== null) assert.fail(`herald dev exited early:\n${out}`);
    if (Date.now() > deadline) assert.fail(`herald dev printed no banner:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const url = /listening on (http:\/\/\S+)/.exec(out)![1]!;
  const emitLine = /^ {2}(HERALD_URL=.* emit obra\.completed .*)$/m.exec(out)![1]!;
  const curlEmit = /^ {2}(curl -sS -X POST [\s\S]*?--data '.*')$/m.exec(out)![1]!;
  const inboxLine = /^ {2}(curl -sS \S+\/api\/notifications -H 'authorization: Bearer [^']+')$/m.exec(out)![1]!;

  // 1. The printed CLI example.
  const emitted = await sh('sh', ['-c', emitLine], { cwd: REPO });
  assert.match(emitted.stdout, /"workflow": "queued"/);

  // 2. The printed curl example (x-signature) is accepted too; it repeats the same body, so it is
  // deduplicated by body hash if sent twice, but this is its first send.
  const curled = await sh('sh', ['-c', curlEmit.replace(/\\\n\s*/g, '')], { cwd: REPO });
  assert.match(curled.stdout, /"ok":true/);

  // 3. The printed inbox request shows the notification once the worker has expanded the event.
  let items: { title: string; user_id: string }[] = [];
  for (let i = 0; i < 100 && items.length < 2; i++) {
    const inbox = await sh('sh', ['-c', inboxLine]);
    items = (JSON.parse(inbox.stdout) as { items: typeof items }).items;
    if (items.length < 2) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(items.length, 2, 'one notification per emit (CLI and curl) in the reader\'s inbox');
  assert.equal(items[0]!.title, 'Obra completada: Escuela N° 42');

  // 4. The dev outbox and the dead-letter list, each printed as a command of its own, run.
  const outboxLine = /^ {2}(HERALD_URL=\S+ .*herald(?: --)? outbox)$/m.exec(out)?.[1];
  const deadLine = /^ {2}(HERALD_URL=\S+ .*herald(?: --)? deliveries --state dead)$/m.exec(out)?.[1];
  assert.ok(outboxLine && deadLine, `the outbox and dead-letter commands, one per line:\n${out}`);
  await sh('sh', ['-c', outboxLine], { cwd: REPO });
  await sh('sh', ['-c', deadLine], { cwd: REPO });

  const health = await fetch(`${url}/readyz`);
  assert.equal(health.status, 200);
});
