// The history an @upstash/workflow app is sent is "the run's messages up to the one delivered".
// After parallel branches the SDK continues only when one delivery's history holds every branch's
// result, so the message that lands last must see all the others. These tests pin that down at
// the storage level, including two transactions that add to one run's history at the same time.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Queryable } from '../../src/storage/db.ts';
import { appendMessage, getMessages, insertHttpRun, newMessageId } from '../../src/storage/queries/http-workflows.ts';
import { resumeWaiters } from '../../src/storage/queries/waiters.ts';
import { parseWaitRequest, registerHttpWait } from '../../src/workflow/http/wait.ts';
import { createTestDb, type TestDb } from '../helpers/db.ts';

const URL = 'http://app.test/wf';

describe('http run history order', () => {
  let t: TestDb;
  before(async () => {
    t = await createTestDb();
  });
  after(() => t.drop());

  async function newRun(): Promise<string> {
    const id = `wfr_${newMessageId()}`;
    await t.db.transaction((tx) =>
      insertHttpRun(tx, { id, url: URL, body: Buffer.from('{}'), contentType: null, config: { forwardHeaders: {}, retries: 0 }, messageId: newMessageId(), runAtMs: null }),
    );
    return id;
  }

  const append = (tx: Queryable, runId: string, messageId: string) =>
    appendMessage(tx, { runId, messageId, type: 'Run', body: Buffer.from(`{"stepName":"${messageId}"}`), output: { destination: URL }, maxAttempts: 1, runAtMs: null });

  const historyUpTo = async (runId: string, messageId: string) => (await getMessages(t.db, runId, messageId)).map((m) => m.step_id);

  async function waitFor(runId: string, eventId: string): Promise<string> {
    const w = parseWaitRequest(Buffer.from(JSON.stringify({ url: URL, timeout: '1h', step: { stepId: 3, stepName: 'w', stepType: 'Wait' } })));
    assert.equal(await t.db.transaction((tx) => registerHttpWait(tx, runId, eventId, w)), 'waiting');
    const { rows } = await t.db.query<{ step_id: string }>(`SELECT step_id FROM herald_waiters WHERE run_id = $1`, [runId]);
    return rows[0]!.step_id;
  }

  test('a wait resumed after a later message comes after it in the history', async () => {
    const runId = await newRun();
    const waitStep = await waitFor(runId, 'ev-order-1');
    await t.db.transaction((tx) => append(tx, runId, 'result-x'));
    // The result of the other branch was placed after the wait registered; the wait resumes now.
    await t.db.transaction((tx) => resumeWaiters(tx, { by: 'event', eventId: 'ev-order-1' }, { body: Buffer.from('{}'), contentType: null }));
    const history = await historyUpTo(runId, waitStep);
    assert.ok(history.includes('result-x'), `the resumed wait's delivery holds the other branch's result: ${history.join(', ')}`);
    assert.equal(history.at(-1), waitStep, 'the delivered message is the last of its history');
  });

  test('the same holds when the wait times out', async () => {
    const runId = await newRun();
    const waitStep = await waitFor(runId, 'ev-order-2');
    await t.db.query(`UPDATE herald_waiters SET deadline_at = now() - interval '1 second' WHERE run_id = $1`, [runId]);
    await t.db.transaction((tx) => append(tx, runId, 'result-y'));
    const fired = await t.db.transaction((tx) => resumeWaiters(tx, { by: 'due', limit: 500 }, { timeout: true }));
    assert.ok(fired.some((w) => w.run_id === runId));
    assert.deepEqual((await historyUpTo(runId, waitStep)).slice(-2), ['result-y', waitStep]);
  });

  // Two transactions add to one run's history at once: the first holds its transaction open while
  // the second runs. Whichever commits last must have the other in its history.
  async function concurrently(runId: string, first: (tx: Queryable) => Promise<unknown>, second: (tx: Queryable) => Promise<unknown>, ids: [string, string]) {
    const committed: string[] = [];
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let started!: () => void;
    const firstIn = new Promise<void>((r) => (started = r));
    const a = t.db
      .transaction(async (tx) => {
        await first(tx);
        started();
        await held;
      })
      .then(() => committed.push(ids[0]));
    await firstIn;
    const b = t.db.transaction((tx) => second(tx)).then(() => committed.push(ids[1]));
    // Give the second transaction every chance to commit ahead of the first, as it would if the
    // two did not serialize on the run.
    await new Promise((r) => setTimeout(r, 200));
    release();
    await Promise.all([a, b]);
    const last = committed.at(-1)!;
    const history = await historyUpTo(runId, last);
    for (const id of ids) assert.ok(history.includes(id), `${id} is in the history of ${last}, committed last: ${history.join(', ')}`);
  }

  test('two messages appended to one run at once: the one committed last has both in its history', async () => {
    const runId = await newRun();
    await concurrently(runId, (tx) => append(tx, runId, 'branch-a'), (tx) => append(tx, runId, 'branch-b'), ['branch-a', 'branch-b']);
  });

  test('a message appended while a notify resumes the run\'s wait: the one committed last has both', async () => {
    const runId = await newRun();
    const waitStep = await waitFor(runId, 'ev-order-3');
    await concurrently(
      runId,
      (tx) => resumeWaiters(tx, { by: 'event', eventId: 'ev-order-3' }, { body: Buffer.from('{}'), contentType: null }),
      (tx) => append(tx, runId, 'branch-c'),
      [waitStep, 'branch-c'],
    );
    const runId2 = await newRun();
    const waitStep2 = await waitFor(runId2, 'ev-order-4');
    await concurrently(
      runId2,
      (tx) => append(tx, runId2, 'branch-d'),
      (tx) => resumeWaiters(tx, { by: 'event', eventId: 'ev-order-4' }, { body: Buffer.from('{}'), contentType: null }),
      ['branch-d', waitStep2],
    );
  });
});
