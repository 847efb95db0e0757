import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { randomUUID } from 'node:crypto';
import { uuidv7 } from '../../src/ids.ts';
import { acceptEvent } from '../../src/intake/emit.ts';
import { BATCH_JOBS_CHANNEL, jobCounts } from '../../src/storage/queries/jobs.ts';
import { obraCompleted } from '../helpers/fixtures.ts';
import { BACKEND } from '../helpers/db.ts';
import { createTestHerald, eventually, type TestHerald } from '../helpers/herald.ts';

// How a worker answers wake-ups for batchable work (what the group-commit writer sends after each
// flush): at once when idle or when only single-job batches run, but under load (a running batch
// took several jobs) the work announced meanwhile is claimed when a batch ends, as one batch.
// Polling is set to 10 minutes, so every claim here comes from a wake-up or a batch ending.
// Postgres only: PGlite has one connection, which a running batch's transaction holds, so no
// work can be queued while a batch runs there.
const skip = BACKEND === 'pglite' ? 'PGlite has one connection: nothing can be queued while a batch transaction holds it' : false;

let h: TestHerald;
before(async () => {
  h = await createTestHerald({ env: { HERALD_JOB_POLL_MS: '600000' } });
});
after(async () => h?.close());

/** Queues `n` jobs of the batchable kind without a NOTIFY, then announces them like the writer. */
async function announce(n: number): Promise<void> {
  await h.db.query(`INSERT INTO herald_jobs (kind, payload) SELECT 'bx', jsonb_build_object('i', g) FROM generate_series(1, $1::int) g`, [n]);
  h.db.wake(BATCH_JOBS_CHANNEL);
}

/**
 * Runs `body` with a started worker whose batches of `bx` jobs each wait until released (`batches`
 * holds their sizes, in order); afterwards releases them all and checks the queue emptied.
 */
async function withGatedWorker(
  body: (w: { batches: number[]; releaseAll: () => void; releaseOldest: () => void }) => Promise<void>,
): Promise<void> {
  await h.db.query(`DELETE FROM herald_jobs`); // a clean queue, whatever an earlier test left
  const batches: number[] = [];
  const gates: (() => void)[] = [];
  const worker = h.engine.createWorker({
    handlers: {
      bx: {
        run: async () => {},
        batch: async (_tx, payloads) => {
          batches.push(payloads.length);
          await new Promise<void>((release) => gates.push(release));
        },
      },
    },
  });
  const releaseAll = () => gates.splice(0).forEach((release) => release());
  const releaseOldest = () => gates.shift()?.();
  await worker.start();
  try {
    await body({ batches, releaseAll, releaseOldest });
    releaseAll();
    await eventually(async () => Object.keys(await jobCounts(h.db)).length === 0);
  } finally {
    releaseAll();
    await worker.stop();
  }
}

test('under load, work announced while a multi-job batch runs is claimed when it ends, in one batch', { skip }, () =>
  withGatedWorker(async ({ batches, releaseAll }) => {
    await announce(3);
    await eventually(async () => batches.length === 1);
    assert.deepEqual(batches, [3]);

    // Five flushes while that batch runs: a free batch lane exists, yet nothing is claimed yet.
    for (let i = 0; i < 5; i++) await announce(1);
    await sleep(300);
    assert.deepEqual(batches, [3], 'no claim while the loaded batch runs');

    releaseAll();
    await eventually(async () => batches.length === 2);
    assert.deepEqual(batches, [3, 5], 'the five announced jobs went into one batch');
  }),
);

test('one event at a time (single-job batches), each announcement is claimed at once', { skip }, () =>
  withGatedWorker(async ({ batches }) => {
    await announce(1);
    await eventually(async () => batches.length === 1);
    // The first batch still runs: the next announcement takes the second lane at once.
    await announce(1);
    await eventually(async () => batches.length === 2, 2_000);
    assert.deepEqual(batches, [1, 1]);
  }),
);

test('an announcement while both lanes are busy is taken when one of them ends', { skip }, () =>
  withGatedWorker(async ({ batches, releaseOldest }) => {
    await announce(1);
    await eventually(async () => batches.length === 1);
    await announce(1);
    await eventually(async () => batches.length === 2);
    // No lane is free for this one, and polling is 10 minutes away: it must not be forgotten.
    await announce(1);
    await sleep(200);
    assert.deepEqual(batches, [1, 1], 'two lanes at most');
    releaseOldest();
    await eventually(async () => batches.length === 3, 2_000);
    assert.deepEqual(batches, [1, 1, 1]);
  }),
);

test('an expansion job queued by enqueueJob (step.send, workflow-subscribed types) is announced to the batch lanes', { skip }, async () => {
  await h.db.query(`DELETE FROM herald_jobs`);
  const worker = h.engine.createWorker();
  await worker.start();
  try {
    const tenantId = randomUUID();
    const eventId = uuidv7();
    const { ctx } = obraCompleted(tenantId, randomUUID());
    // acceptEvent is what step.send and emits of workflow-subscribed types use: event + job + NOTIFY.
    await h.db.transaction((tx) => acceptEvent(tx, h.engine.rules, { id: eventId, type: 'obra.completed', ctx, tenantId }));
    // Polling is 10 minutes away: only the wake-up can have started the lane that expands it.
    await eventually(async () => {
      const { rows } = await h.db.query<{ processed: boolean }>(`SELECT processed_at IS NOT NULL AS processed FROM herald_events WHERE id = $1`, [eventId]);
      return rows[0]?.processed;
    }, 5_000);
  } finally {
    await worker.stop();
  }
});
