import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { claimJobs, claimStatements, enqueueJobs } from '../../src/storage/queries/jobs.ts';
import { createTestDb, type TestDb } from '../helpers/db.ts';

/**
 * The single-job claim must walk the queue index in order and stop after its limit, whatever the
 * table's statistics say: planned with the statistics of a young or emptied queue, Postgres read
 * every due job and sorted them, so each claim cost in proportion to the backlog (12–19 ms per
 * claim with 10,000 run jobs queued, on the day it was found).
 */
describe('the job claim plan', () => {
  let t: TestDb;
  before(async () => {
    t = await createTestDb();
    // A backlog the table's statistics have never seen (no ANALYZE since it was created empty).
    await enqueueJobs(
      t.db,
      Array.from({ length: 3000 }, (_, i) => ({ kind: 'workflow.run', payload: { runId: `r${i}` }, key: `run:r${i}` })),
    );
  });
  after(() => t?.drop());

  const plan = async () => {
    const [settings, claim] = claimStatements('w-plan', 30_000, { leaveFreshOf: 'event.expand', limit: 8 });
    const [, explained] = await t.db.pipeline([settings, { text: `EXPLAIN ${claim.text}`, values: claim.values }]);
    return explained!.rows.map((r) => String(Object.values(r)[0])).join('\n');
  };

  for (const stats of ['stale statistics', 'fresh statistics']) {
    test(`with ${stats}, a claim walks the queue index in order and reads no more than it takes`, async () => {
      if (stats === 'fresh statistics') await t.db.exec('ANALYZE herald_jobs');
      const text = await plan();
      assert.match(text, /Index Scan using herald_jobs_queued_idx/, text);
      assert.doesNotMatch(text, /Bitmap|Seq Scan|Sort/, text);
    });
  }

  test('the claim takes the oldest due jobs, each once', async () => {
    const first = await claimJobs(t.db, 'w-a', 30_000, { leaveFreshOf: 'event.expand', limit: 5 });
    const second = await claimJobs(t.db, 'w-b', 30_000, { leaveFreshOf: 'event.expand', limit: 5 });
    const ids = [...first, ...second].map((j) => j.id);
    assert.equal(new Set(ids).size, 10);
    const { rows } = await t.db.query<{ id: number }>(`SELECT id FROM herald_jobs ORDER BY run_at, id LIMIT 10`);
    assert.deepEqual(ids.sort((a, b) => a - b), rows.map((r) => Number(r.id)).sort((a, b) => a - b));
  });
});
