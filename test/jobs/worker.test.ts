import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { NonRetriableError } from '../../src/errors.ts';
import { EXPAND_EVENT_JOB, expandStoredEvent } from '../../src/expansion/expand-job.ts';
import { backoffMs } from '../../src/jobs/backoff.ts';
import { claimJobs, completeJob, enqueueJob, enqueueJobs, jobCounts, type ClaimedJob } from '../../src/storage/queries/jobs.ts';
import { obraCompleted, seedTenant } from '../helpers/fixtures.ts';
import { createTestHerald, eventually, type TestHerald } from '../helpers/herald.ts';

const countFor = async (h: TestHerald, eventId: string) =>
  (await h.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM notifications WHERE event_id = $1`, [eventId])).rows[0]!.n;

describe('job worker', () => {
  let h: TestHerald;
  before(async () => {
    h = await createTestHerald({ env: { HERALD_JOB_LEASE_MS: '200' } });
  });
  after(async () => h?.close());

  test('a job whose worker died is taken over after its lease, and the dead worker cannot commit', async () => {
    const { tenantId, users } = await seedTenant(h);
    const res = await h.post('/api/notifications/emit', obraCompleted(tenantId, users.actor!));
    const { eventId } = (await res.json()) as { eventId: string };

    // A worker claims the job and then "dies": it never completes and never heartbeats.
    const [zombie] = await claimJobs(h.db, 'zombie-worker', 200, { leaveFreshOf: null, limit: 10 });
    assert.ok(zombie, 'the job was claimable');
    assert.equal(zombie.attempts, 1);

    const settled: string[] = [];
    const worker = h.engine.createWorker({ onSettled: (_j, outcome) => settled.push(outcome) });
    await worker.start();
    try {
      await eventually(async () => (await countFor(h, eventId)) === 2);
      // The zombie wakes up and tries to complete its stale attempt: fenced out.
      const lateCommit = await h.db.transaction((tx) => completeJob(tx, zombie as ClaimedJob, 'zombie-worker'));
      assert.equal(lateCommit, false);
      assert.deepEqual(await jobCounts(h.db), {});
      assert.equal(await countFor(h, eventId), 2, 'no duplicate notifications');
      assert.deepEqual(settled, ['completed']);
    } finally {
      await worker.stop();
    }
  });

  test('expanding the same event twice inserts nothing the second time', async () => {
    const { tenantId, users } = await seedTenant(h);
    const { eventId } = (await (await h.post('/api/notifications/emit', obraCompleted(tenantId, users.actor!))).json()) as {
      eventId: string;
    };
    await h.db.transaction((tx) => expandStoredEvent(tx, h.engine.rules, { eventId }));
    // Even with the processed mark cleared (a crash between insert and mark), dedupe keys hold.
    await h.db.query(`UPDATE herald_events SET processed_at = NULL WHERE id = $1`, [eventId]);
    await h.db.transaction((tx) => expandStoredEvent(tx, h.engine.rules, { eventId }));
    assert.equal(await countFor(h, eventId), 2);
    await h.db.query(`DELETE FROM herald_jobs`);
  });

  test('a failing job is retried with backoff until it succeeds; a non-retriable one fails at once', async () => {
    let calls = 0;
    const outcomes: string[] = [];
    const worker = h.engine.createWorker({
      handlers: {
        flaky: {
          run: async () => {
            calls++;
            if (calls < 3) throw new Error(`transient failure ${calls}`);
          },
        },
        broken: {
          run: async () => {
            throw new NonRetriableError('bad payload');
          },
        },
      },
      onSettled: (job, outcome) => outcomes.push(`${job.kind}:${outcome}`),
    });
    await h.db.transaction((tx) => enqueueJob(tx, { kind: 'flaky', payload: {} }));
    await h.db.transaction((tx) => enqueueJob(tx, { kind: 'broken', payload: {} }));
    // Make retries due immediately instead of waiting out the real backoff.
    const speedUp = setInterval(() => void h.db.query(`UPDATE herald_jobs SET run_at = now() WHERE state = 'queued'`), 30);
    await worker.start();
    try {
      await eventually(async () => outcomes.includes('flaky:completed') && outcomes.includes('broken:failed'));
      assert.equal(calls, 3);
      assert.deepEqual(
        outcomes.filter((o) => o.startsWith('flaky')),
        ['flaky:retry', 'flaky:retry', 'flaky:completed'],
      );
      const { rows } = await h.db.query<{ kind: string; state: string; last_error: string; attempts: number }>(
        `SELECT kind, state, last_error, attempts FROM herald_jobs`,
      );
      assert.deepEqual(rows, [{ kind: 'broken', state: 'failed', last_error: 'bad payload', attempts: 1 }]);
    } finally {
      clearInterval(speedUp);
      await worker.stop();
      await h.db.query(`DELETE FROM herald_jobs`);
    }
  });

  test('a job that exhausts its attempts is marked failed with its last error', async () => {
    const worker = h.engine.createWorker({
      handlers: { always: { run: async () => Promise.reject(new Error('still down')) } },
    });
    await h.db.transaction((tx) => enqueueJob(tx, { kind: 'always', payload: {}, maxAttempts: 3 }));
    const speedUp = setInterval(() => void h.db.query(`UPDATE herald_jobs SET run_at = now() WHERE state = 'queued'`), 30);
    await worker.start();
    try {
      const row = await eventually(async () => {
        const { rows } = await h.db.query<{ state: string; attempts: number; last_error: string }>(
          `SELECT state, attempts, last_error FROM herald_jobs WHERE kind = 'always'`,
        );
        return rows[0]?.state === 'failed' ? rows[0] : undefined;
      });
      assert.deepEqual(row, { state: 'failed', attempts: 3, last_error: 'still down' });
    } finally {
      clearInterval(speedUp);
      await worker.stop();
      await h.db.query(`DELETE FROM herald_jobs`);
    }
  });

  test('a job for an unknown kind fails permanently with a message naming the kind', async () => {
    const worker = h.engine.createWorker();
    await h.db.transaction((tx) => enqueueJob(tx, { kind: 'no-such-kind', payload: {} }));
    await worker.start();
    try {
      const row = await eventually(async () => {
        const { rows } = await h.db.query<{ state: string; last_error: string }>(`SELECT state, last_error FROM herald_jobs`);
        return rows[0]?.state === 'failed' ? rows[0] : undefined;
      });
      assert.match(row.last_error, /no handler for job kind "no-such-kind"/);
    } finally {
      await worker.stop();
      await h.db.query(`DELETE FROM herald_jobs`);
    }
  });

  test('a batch holding a job with a bad event id: its neighbours are expanded, the bad job fails alone', async () => {
    const { tenantId, users } = await seedTenant(h);
    const emitted: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await h.post('/api/notifications/emit', obraCompleted(tenantId, users.actor!, `batch ${i}`), {
        headers: { 'idempotency-key': randomUUID() },
      });
      emitted.push(((await res.json()) as { eventId: string }).eventId);
    }
    // The emits' own jobs are replaced by jobs enqueued together while the worker runs, so its
    // batch lane takes them in one batch: the bad id fails that batch, whose jobs then run alone.
    await h.db.query(`DELETE FROM herald_jobs`);
    const outcomes: string[] = [];
    const worker = h.engine.createWorker({ onSettled: (job, outcome) => outcomes.push(`${JSON.stringify(job.payload)} ${outcome}`) });
    await worker.start();
    try {
      await h.db.transaction((tx) =>
        enqueueJobs(tx, [
          { kind: EXPAND_EVENT_JOB, payload: { eventIds: [emitted[0], emitted[1]] } },
          { kind: EXPAND_EVENT_JOB, payload: { eventIds: ['not-a-uuid'] }, maxAttempts: 1 },
          { kind: EXPAND_EVENT_JOB, payload: { eventId: emitted[2] } },
        ]),
      );
      // Settled: nothing queued or running any more, only the bad job left, failed for good.
      await eventually(async () => {
        const counts = await jobCounts(h.db);
        return Object.keys(counts).length === 1 && counts.failed === 1;
      });
      for (const id of emitted) assert.equal(await countFor(h, id), 2, `event ${id} expanded once`);
      const { rows } = await h.db.query<{ payload: unknown; last_error: string }>(`SELECT payload, last_error FROM herald_jobs WHERE state = 'failed'`);
      assert.deepEqual(rows[0]!.payload, { eventIds: ['not-a-uuid'] });
      assert.ok(rows[0]!.last_error, 'the failed job says why');
    } finally {
      await worker.stop();
      await h.db.query(`DELETE FROM herald_jobs`);
    }
  });

  test('several workers share the queue: every event is expanded exactly once', async () => {
    const { tenantId, users } = await seedTenant(h);
    const events = 60;
    const ids: string[] = [];
    for (let i = 0; i < events; i++) {
      const res = await h.post('/api/notifications/emit', obraCompleted(tenantId, users.actor!, `obra ${i}`), {
        headers: { 'idempotency-key': randomUUID() },
      });
      ids.push(((await res.json()) as { eventId: string }).eventId);
    }
    const workers = [0, 1, 2].map(() => h.engine.createWorker({ concurrency: 4 }));
    await Promise.all(workers.map((w) => w.start()));
    try {
      await eventually(async () => {
        const { rows } = await h.db.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM herald_events WHERE id = ANY($1::uuid[]) AND processed_at IS NOT NULL`,
          [ids],
        );
        return rows[0]!.n === events;
      }, 20_000);
      const { rows } = await h.db.query<{ n: number; distinct_keys: number }>(
        `SELECT count(*)::int AS n, count(DISTINCT dedupe_key)::int AS distinct_keys FROM notifications WHERE event_id = ANY($1::uuid[])`,
        [ids],
      );
      assert.deepEqual(rows[0], { n: events * 2, distinct_keys: events * 2 });
      assert.deepEqual(await jobCounts(h.db), {});
    } finally {
      await Promise.all(workers.map((w) => w.stop()));
    }
  });
});

test('backoff is capped, exponential and jittered', () => {
  assert.equal(backoffMs(1, 1000, 60_000, () => 0.999), 999);
  assert.equal(backoffMs(4, 1000, 60_000, () => 0.5), 4000);
  assert.equal(backoffMs(30, 1000, 60_000, () => 0.999), 59_940);
  assert.equal(backoffMs(3, 1000, 60_000, () => 0), 0);
});

