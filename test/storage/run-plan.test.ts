import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Queryable } from '../../src/storage/db.ts';
import { cancelRun, endHttpRun, finishRun } from '../../src/storage/queries/run-end.ts';
import { insertWaiter, resumeWaiters } from '../../src/storage/queries/waiters.ts';
import { createTestDb, type TestDb } from '../helpers/db.ts';

/**
 * Statements that end or resume one run must find it by its primary key, whatever the statistics
 * say. A quiet system analyzed while every run had ended, then a burst of running runs: written
 * `state = 'running'`, the fence tied herald_runs_state_idx with the primary key and the planner
 * took the former, walking every running run to find one (each finish read ~830 index entries in
 * a benchmark: 4 ms instead of 0.1). Measured here by the index reads the transaction itself made
 * (pg_stat_get_xact_tuples_returned), so it is the statements herald sends that are checked.
 */
describe('statements that find a run by id', () => {
  let t: TestDb;
  const RUNNING = 3000;
  before(async () => {
    t = await createTestDb();
    // The statistics of a quiet moment: 200 runs, all ended.
    await t.db.exec(`
      INSERT INTO herald_runs (id, kind, workflow, input, state, finished_at)
        SELECT 'done-' || g, 'code', 'wf', '{}', 'completed', now() FROM generate_series(1, 200) g;
      ANALYZE herald_runs;
      INSERT INTO herald_runs (id, kind, workflow, input)
        SELECT 'run-' || g, 'code', 'wf', '{}' FROM generate_series(1, ${RUNNING}) g;
      INSERT INTO herald_runs (id, kind, workflow, input_bytes)
        SELECT 'http-' || g, 'http', 'wf', '\\x7b7d' FROM generate_series(1, 10) g;`);
  });
  after(() => t?.drop());

  /** Runs `fn` in a transaction and returns how many entries it read through each herald_runs index. */
  const indexReads = async (fn: (tx: Queryable) => Promise<unknown>) =>
    t.db.transaction(async (tx) => {
      // This backend's counts not yet reported (they accumulate across transactions until then):
      // read before and after, the difference is fn's.
      const counts = async () => {
        const { rows } = await tx.query<{ index: string; tuples: string }>(
          `SELECT i.relname AS index, pg_stat_get_xact_tuples_returned(i.oid)::text AS tuples
           FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = 'herald_runs'::regclass`,
        );
        return new Map(rows.map((r) => [r.index, Number(r.tuples)]));
      };
      const before = await counts();
      await fn(tx);
      const after = await counts();
      return Object.fromEntries([...after].map(([index, n]) => [index, n - (before.get(index) ?? 0)]));
    });

  const cases: [string, (tx: Queryable) => Promise<unknown>][] = [
    ['finishing a run', async (tx) => assert.equal(await finishRun(tx, 'run-7', { state: 'completed', result: 1 }), true)],
    ['cancelling a run', async (tx) => assert.deepEqual(await cancelRun(tx, 'run-8'), { outcome: 'cancelled' })],
    ['ending an http run', async (tx) => assert.equal(await endHttpRun(tx, 'http-1', { state: 'cancelled' }), 'ended')],
    [
      'resuming a waiting run',
      async (tx) => {
        await insertWaiter(tx, {
          runId: 'run-9', stepId: 'w', eventId: 'evt-plan', url: 'http://x', headers: {}, timeoutMs: 60_000, timeout: '1m',
        });
        const resumed = await resumeWaiters(tx, { by: 'event', eventId: 'evt-plan' }, { body: Buffer.from('{}'), contentType: null });
        assert.equal(resumed.length, 1);
      },
    ],
  ];

  for (const [what, fn] of cases) {
    test(`${what} reads the run through its primary key, not through every running run`, async () => {
      const reads = await indexReads(fn);
      assert.equal(reads.herald_runs_state_idx ?? 0, 0, JSON.stringify(reads));
      assert.ok((reads.herald_runs_pkey ?? 0) >= 1, JSON.stringify(reads));
      // Nothing that scales with the number of running runs.
      for (const [index, n] of Object.entries(reads)) assert.ok(n < 20, `${index} read ${n} entries`);
    });
  }
});
