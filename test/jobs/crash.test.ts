import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { upsertUser } from '../../src/storage/queries/users.ts';
import { BACKEND } from '../helpers/db.ts';
import { obraCompleted } from '../helpers/fixtures.ts';
import { createTestHerald, eventually, type TestHerald } from '../helpers/herald.ts';
import { startHerald, type Proc } from '../helpers/processes.ts';

// Several worker processes need a Postgres server (a PGlite directory has a single owner).
const skip = BACKEND !== 'postgres' && 'several processes share one database: Postgres only';

let h: TestHerald;
const procs: Proc[] = [];
before(async () => {
  if (skip) return;
  h = await createTestHerald();
});
after(async () => {
  await Promise.all(procs.map((p) => p.kill('SIGKILL')));
  await h?.close();
});

test('three worker processes, one killed with SIGKILL mid-stream, repeatedly: nothing lost, nothing doubled', { skip }, async () => {
  // A tenant of 40 users makes each expansion a real multi-row transaction worth interrupting.
  const tenantId = randomUUID();
  const members = Array.from({ length: 40 }, () => randomUUID());
  for (const id of members) await upsertUser(h.db, id, { tenantId });
  const actor = members[0]!;
  const env = { DATABASE_URL: h.url!, HERALD_JOB_LEASE_MS: '1000', HERALD_JOB_POLL_MS: '100', HERALD_LOG_LEVEL: 'warn' };
  const spawnWorker = async () => {
    const p = startHerald(['worker'], { ...env, HERALD_LOG_LEVEL: 'info' });
    procs.push(p);
    await p.waitFor(/worker started/);
    return p;
  };
  const live = await Promise.all([spawnWorker(), spawnWorker(), spawnWorker()]);

  const eventIds: string[] = [];
  let killed = 0;
  for (let round = 0; round < 3; round++) {
    const batch = await Promise.all(
      Array.from({ length: 150 }, async (_, i) => {
        const out = await h.engine.emit(Buffer.from(JSON.stringify(obraCompleted(tenantId, actor, `r${round}-${i}`))));
        return out.body.eventId as string;
      }),
    );
    eventIds.push(...batch);
    // Kill one worker as soon as this round's processing is under way.
    await eventually(async () => {
      const { rows } = await h.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM herald_events WHERE id = ANY($1::uuid[]) AND processed_at IS NOT NULL`,
        [batch],
      );
      return rows[0]!.n >= 10;
    }, 30_000);
    const victim = live.splice(round % live.length, 1)[0]!;
    await victim.kill('SIGKILL');
    killed++;
    live.push(await spawnWorker());
  }

  await eventually(async () => {
    const { rows } = await h.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM herald_events WHERE id = ANY($1::uuid[]) AND processed_at IS NOT NULL`,
      [eventIds],
    );
    return rows[0]!.n === eventIds.length;
  }, 60_000);

  const { rows } = await h.db.query<{ n: number; keys: number }>(
    `SELECT count(*)::int AS n, count(DISTINCT (event_id, user_id))::int AS keys FROM notifications WHERE event_id = ANY($1::uuid[])`,
    [eventIds],
  );
  const expected = eventIds.length * (members.length - 1);
  assert.equal(killed, 3);
  assert.deepEqual(rows[0], { n: expected, keys: expected }, 'every recipient got exactly one notification per event');
  const jobs = await h.db.query(`SELECT state, last_error FROM herald_jobs`);
  assert.deepEqual(jobs.rows, [], 'no job left queued, running or failed');
});
