import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import config from '../fixtures/poison.config.ts';
import { BACKEND } from '../helpers/db.ts';
import { createTestHerald, eventually, type TestHerald } from '../helpers/herald.ts';
import { startHerald, type Proc } from '../helpers/processes.ts';

// A worker process is killed by the expansion itself, every time: its batch's take rolls back and
// leaves no trace, so without the lease path at start the job would be retaken after every restart.
const skip = BACKEND !== 'postgres' && 'worker processes share one database: Postgres only';
const CONFIG = fileURLToPath(new URL('../fixtures/poison.config.ts', import.meta.url));

let h: TestHerald;
const procs: Proc[] = [];
before(async () => {
  if (skip) return;
  h = await createTestHerald({ config });
});
after(async () => {
  await Promise.all(procs.map((p) => p.kill('SIGKILL')));
  await h?.close();
});

test('an event whose expansion kills the worker fails for good after its attempts; the others are expanded', { skip, timeout: 120_000 }, async () => {
  const tenantId = randomUUID();
  const emit = async (poison: boolean) => {
    const out = await h.engine.emit(Buffer.from(JSON.stringify({ type: 'poison.test', ctx: { tenantId, userId: randomUUID(), poison } })));
    assert.equal(out.status, 200);
    return out.body.eventId as string;
  };
  // One at a time: each event is its own group commit and expansion job. The poison is the oldest.
  const poison = await emit(true);
  const good = [await emit(false), await emit(false), await emit(false), await emit(false)];
  await h.db.query(`UPDATE herald_jobs SET max_attempts = 3`);
  const poisonJob = async () =>
    (await h.db.query<{ state: string; last_error: string | null }>(
      `SELECT state, last_error FROM herald_jobs WHERE payload->'eventIds' ? $1 OR payload->>'eventId' = $1`,
      [poison],
    )).rows[0];

  const env = { DATABASE_URL: h.url!, HERALD_CONFIG: CONFIG, HERALD_JOB_LEASE_MS: '500', HERALD_JOB_POLL_MS: '100', HERALD_MAINTENANCE_MS: '100' };
  const expanded = async () =>
    (await h.db.query<{ id: string }>(`SELECT event_id::text AS id FROM notifications WHERE event_id = ANY($1::uuid[])`, [[poison, ...good]])).rows.map((r) => r.id);
  let deaths = 0;
  for (let start = 0; start < 10 && (await poisonJob())?.state !== 'failed'; start++) {
    // Each process is restarted like a supervisor would, until one outlives the poison job.
    const p = startHerald(['worker'], env);
    procs.push(p);
    const exited = new Promise<'died'>((r) => p.child.once('exit', () => r('died')));
    const failed = (async () => {
      while ((await poisonJob())?.state !== 'failed') await new Promise((r) => setTimeout(r, 100));
      return 'failed' as const;
    })();
    if ((await Promise.race([exited, failed])) === 'died') deaths++;
    else await eventually(async () => (await expanded()).length === good.length, 20_000);
  }

  const job = await poisonJob();
  assert.equal(job?.state, 'failed', `after ${deaths} deaths the poison job is ${job?.state}`);
  assert.match(job!.last_error ?? '', /gave up after 3 attempts/);
  assert.ok(deaths >= 1 && deaths <= 4, `${deaths} worker deaths`);
  assert.deepEqual(new Set(await expanded()), new Set(good), 'the four good events were expanded, the poison was not');
});
