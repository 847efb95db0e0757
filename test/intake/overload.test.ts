import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { serve, type ServerType } from '@hono/node-server';
import { DatabaseUnavailableError, OverloadedError } from '../../src/errors.ts';
import { adapt, answered, MAX_LIMIT, MIN_LIMIT, newLimiter, lateOdds, SAMPLE_MS, type Limiter } from '../../src/http/middleware/shed.ts';
import { createGroupCommit } from '../../src/storage/group-commit.ts';
import { BACKEND } from '../helpers/db.ts';
import { createTestHerald, eventually, signedHeaders, type TestHerald } from '../helpers/herald.ts';
import { seedTenant } from '../helpers/fixtures.ts';

// Overload: every in-memory queue on the intake path is bounded. Beyond its bound an emit is
// refused at once (429 + Retry-After, before its body is read), an emit that waited in the queue
// past its bound is dropped before its write, and so is one whose client went away; nothing is
// ever written for a request that was refused or abandoned. A flush that fails because the
// database is unavailable fails its items together (503), without the item-by-item retry that
// isolates a bad item. Behaviour only: the bounds are set small and the writers held by the test.

const tick = () => new Promise((r) => setImmediate(r));

/** A group commit whose flushes the test settles by hand, recording what each carried. */
function manual(opts: { maxQueued?: number; maxWaitMs?: number; writers?: number; maxBatch?: number } = {}) {
  const flushes: { items: number[]; resolve(): void; reject(e: Error): void }[] = [];
  const gc = createGroupCommit<number, string>({
    maxBatch: opts.maxBatch ?? 100,
    writers: opts.writers ?? 1,
    maxQueued: opts.maxQueued,
    maxWaitMs: opts.maxWaitMs,
    flush: (items) =>
      new Promise((resolve, reject) => {
        flushes.push({ items, resolve: () => resolve(items.map((n) => `ok ${n}`)), reject });
      }),
  });
  return { gc, flushes };
}

const outcome = (s: PromiseSettledResult<string>) => (s.status === 'fulfilled' ? s.value : (s.reason as Error).name);

describe('group commit bounds (unit)', () => {
  test('beyond maxQueued, submit is refused at once with OverloadedError and the flush never sees the item', async () => {
    const { gc, flushes } = manual({ maxQueued: 2 });
    const first = gc.submit(1);
    await tick();
    assert.equal(flushes.length, 1, 'the first item is being written');
    assert.equal(gc.refusal(), undefined, 'room in the queue: an item would be admitted');
    const queued = [gc.submit(2), gc.submit(3)];
    assert.ok(gc.refusal() instanceof OverloadedError, 'a full queue refuses before anything is submitted');
    const shed = gc.submit(4);
    await assert.rejects(shed, (e: unknown) => e instanceof OverloadedError && e.retryAfterSeconds >= 1);
    flushes[0]!.resolve();
    await tick();
    flushes[1]!.resolve();
    assert.deepEqual((await Promise.allSettled([first, ...queued])).map(outcome), ['ok 1', 'ok 2', 'ok 3']);
    assert.deepEqual(flushes.map((f) => f.items), [[1], [2, 3]]);
  });

  test('an item that waited longer than maxWaitMs while no write completed is dropped before its flush as an outage (the database is not answering)', async () => {
    const { gc, flushes } = manual({ maxWaitMs: 300 });
    const first = gc.submit(1);
    await tick();
    const late = gc.submit(2);
    // The only writer stays stuck: the item is answered when its bound passes, not when a writer
    // frees; and since nothing was written during its whole wait, the cause is the database (503),
    // not other emits ahead of it (429).
    await assert.rejects(late, (e: unknown) => e instanceof DatabaseUnavailableError && !e.outcomeUnknown);
    const rest = Promise.allSettled([first, gc.submit(3)]);
    flushes[0]!.resolve();
    await tick();
    flushes[1]!.resolve();
    assert.deepEqual((await rest).map(outcome), ['ok 1', 'ok 3']);
    assert.deepEqual(flushes.map((f) => f.items), [[1], [3]], 'item 2 was never written');
  });

  test('an item that waited longer than maxWaitMs while writes went on is shed as overload and never written', async () => {
    const { gc, flushes } = manual({ maxWaitMs: 300, maxBatch: 1 });
    const first = gc.submit(1);
    await tick();
    const second = gc.submit(2);
    const late = gc.submit(3);
    // A write completes during item 3's wait (then item 2 takes the writer): it waited behind
    // other emits, which is overload. (Completed at once: a busy box's timers are late, and a
    // write that completed only after the bound would make it an outage.)
    flushes[0]!.resolve();
    await assert.rejects(late, (e: unknown) => e instanceof OverloadedError);
    flushes[1]!.resolve();
    assert.deepEqual((await Promise.allSettled([first, second])).map(outcome), ['ok 1', 'ok 2']);
    assert.deepEqual(flushes.map((f) => f.items), [[1], [2]], 'item 3 was never written');
  });

  test('an item whose caller gave up (abandoned) is dropped before its flush', async () => {
    const { gc, flushes } = manual();
    const first = gc.submit(1);
    await tick();
    let gone = false;
    const all = Promise.allSettled([first, gc.submit(2, { abandoned: () => gone }), gc.submit(3, { abandoned: () => false })]);
    gone = true;
    flushes[0]!.resolve();
    await tick();
    flushes[1]!.resolve();
    assert.deepEqual((await all).map(outcome), ['ok 1', 'OverloadedError', 'ok 3']);
    assert.deepEqual(flushes.map((f) => f.items), [[1], [3]]);
  });

  test('after a write failed to reach the database, emits are refused with 503 at once, a probe goes through after a short pause, and a write that succeeds closes the breaker', async () => {
    let reachable = false;
    const flushed: number[][] = [];
    const gc = createGroupCommit<number, string>({
      maxBatch: 10,
      writers: 1,
      async flush(items) {
        flushed.push(items);
        if (!reachable) throw new DatabaseUnavailableError('cannot connect to the database (connection refused)');
        return items.map((n) => `ok ${n}`);
      },
    });
    await assert.rejects(gc.submit(1), (e: unknown) => e instanceof DatabaseUnavailableError);
    // Refused before anything is sent: the refusal's outcome is known, and no flush sees item 2.
    assert.ok(gc.refusal() instanceof DatabaseUnavailableError, 'the database is known to be down');
    await assert.rejects(gc.submit(2), (e: unknown) => e instanceof DatabaseUnavailableError && !e.outcomeUnknown);
    assert.deepEqual(flushed, [[1]]);
    reachable = true;
    // After the pause a probe is let through; it writes, and emits are admitted again.
    await eventually(async () => gc.refusal() === undefined, 2_000);
    assert.equal(await gc.submit(3), 'ok 3');
    assert.equal(gc.refusal(), undefined);
    assert.deepEqual(flushed, [[1], [3]], 'item 2 was never written');
  });

  test('whether the database is what holds writes up: a write in flight with none completing for half the wait bound says so, a completed write ends it', async () => {
    // The emits-in-progress limit asks this when it is full, to answer an outage 503 and not 429.
    const { gc, flushes } = manual({ maxWaitMs: 200, writers: 2 });
    const first = gc.submit(1);
    await tick();
    assert.equal(gc.unavailable(), undefined, 'a write that just started says nothing yet');
    await eventually(async () => gc.unavailable() instanceof DatabaseUnavailableError, 2_000);
    assert.match(gc.unavailable()!.message, /not answering/);
    flushes[0]!.resolve();
    assert.equal(await first, 'ok 1');
    assert.equal(gc.unavailable(), undefined, 'writes complete again');
  });

  test('after a write failed for want of the database, it is the database that holds emits up until a write succeeds, past the pause before a probe', async () => {
    let reachable = false;
    const gc = createGroupCommit<number, string>({
      maxBatch: 10,
      writers: 1,
      async flush(items) {
        if (!reachable) throw new DatabaseUnavailableError('cannot connect to the database (connection refused)');
        return items.map((n) => `ok ${n}`);
      },
    });
    await assert.rejects(gc.submit(1), (e: unknown) => e instanceof DatabaseUnavailableError);
    await eventually(async () => gc.refusal() === undefined, 2_000); // the probe pause is over
    assert.ok(gc.unavailable() instanceof DatabaseUnavailableError, 'no write has succeeded since');
    reachable = true;
    assert.equal(await gc.submit(2), 'ok 2');
    assert.equal(gc.unavailable(), undefined);
  });

  /** A group commit (one writer) each of whose flushes fails with `error()`; `flushes.calls` counts them. */
  function alwaysFailing(error: () => Error) {
    const flushes = { calls: 0 };
    const gc = createGroupCommit<number, number>({
      maxBatch: 10,
      writers: 1,
      async flush() {
        flushes.calls++;
        await tick();
        throw error();
      },
    });
    return { gc, flushes };
  }

  test('items retried one by one after a failed batch share the batch deadline: one past it is answered 503 unwritten, not flushed alone', async () => {
    const flushes: number[][] = [];
    let releaseFirstAlone!: () => void;
    const gc = createGroupCommit<number, string>({
      maxBatch: 10,
      writers: 1,
      flushTimeoutMs: 100,
      async flush(items) {
        flushes.push(items);
        if (items.length > 1) throw Object.assign(new Error('duplicate key value'), { code: '23505' }); // an item's SQL error
        // The first item alone outlives the batch's deadline.
        if (items[0] === 1) await new Promise<void>((r) => (releaseFirstAlone = r));
        return items.map((n) => `ok ${n}`);
      },
    });
    const done: boolean[] = [false, false, false];
    const all = Promise.allSettled([1, 2, 3].map((n, i) => gc.submit(n).finally(() => (done[i] = true))));
    await eventually(async () => flushes.length === 2);
    await new Promise((r) => setTimeout(r, 200)); // past the batch's 100 ms deadline
    // Item 1's write has not settled yet; items 2 and 3 must not wait for it.
    assert.deepEqual(done, [true, true, true], 'every caller answered by the deadline, though one write still hangs');
    releaseFirstAlone();
    const settled = await all;
    assert.deepEqual(flushes, [[1, 2, 3], [1]], 'items 2 and 3 were not written alone after the deadline');
    for (const s of settled) assert.equal(s.status, 'rejected');
    const reasons = settled.map((s) => (s as PromiseRejectedResult).reason as DatabaseUnavailableError);
    assert.ok(reasons.every((e) => e instanceof DatabaseUnavailableError));
    assert.equal(reasons[0]!.outcomeUnknown, true, 'item 1 was being written at the deadline');
    assert.deepEqual(reasons.slice(1).map((e) => e.outcomeUnknown), [false, false], 'items 2 and 3: nothing was written');
  });

  test('a flush that fails to reach the database after the flush timeout answered its callers still opens the breaker', async () => {
    let fail!: () => void;
    const gc = createGroupCommit<number, string>({
      maxBatch: 10,
      writers: 1,
      flushTimeoutMs: 50,
      flush: () => new Promise((_resolve, reject) => (fail = () => reject(new DatabaseUnavailableError('cannot connect to the database (timeout)')))),
    });
    await assert.rejects(gc.submit(1), (e: unknown) => e instanceof DatabaseUnavailableError && e.outcomeUnknown);
    fail();
    await eventually(async () => gc.refusal() instanceof DatabaseUnavailableError, 2_000);
    await assert.rejects(gc.submit(2), (e: unknown) => e instanceof DatabaseUnavailableError && !e.outcomeUnknown);
  });

  test('a timed-out flush that fails late does not open the breaker when another write has succeeded since it began', async () => {
    let failFirst!: () => void;
    let calls = 0;
    const gc = createGroupCommit<number, string>({
      maxBatch: 1,
      writers: 2,
      flushTimeoutMs: 50,
      flush: (items) => {
        calls++;
        if (calls === 1) return new Promise((_resolve, reject) => (failFirst = () => reject(new DatabaseUnavailableError('Connection terminated unexpectedly', true))));
        return Promise.resolve(items.map((n) => `ok ${n}`));
      },
    });
    const first = gc.submit(1);
    assert.equal(await gc.submit(2), 'ok 2', 'the other writer wrote meanwhile');
    await assert.rejects(first, (e: unknown) => e instanceof DatabaseUnavailableError && e.outcomeUnknown);
    failFirst();
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(gc.refusal(), undefined, 'the database answered a write after this one began: no breaker');
    assert.equal(await gc.submit(3), 'ok 3');
  });

  test('a flush that fails because the database is unavailable fails its items together: no item-by-item retry', async () => {
    const { gc, flushes } = alwaysFailing(() => new DatabaseUnavailableError('Connection terminated unexpectedly', true));
    const settled = await Promise.allSettled([1, 2, 3, 4, 5].map((n) => gc.submit(n)));
    assert.equal(flushes.calls, 1, 'one statement against a dead database, not one per item');
    for (const s of settled) {
      assert.equal(s.status, 'rejected');
      assert.ok((s as PromiseRejectedResult).reason instanceof DatabaseUnavailableError);
      assert.equal(((s as PromiseRejectedResult).reason as DatabaseUnavailableError).outcomeUnknown, true);
    }
  });

  test('a flush that fails on a connection-level SQLSTATE (08xxx, 57P01) is not retried item by item either', async () => {
    for (const code of ['08006', '57P01', '53300']) {
      const { gc, flushes } = alwaysFailing(() => Object.assign(new Error(`server said ${code}`), { code }));
      const settled = await Promise.allSettled([1, 2, 3].map((n) => gc.submit(n)));
      assert.equal(flushes.calls, 1, code);
      assert.ok(settled.every((s) => s.status === 'rejected'), code);
    }
  });
});

describe('the emits-in-progress limit (unit: the controller, fed made-up periods)', () => {
  /** Runs `periods` control periods whose accepted emits each took `ms`, the loop `lateMs` late. */
  function feed(l: Limiter, t: { now: number }, periods: number, ms: number, lateMs = 0, target = 10) {
    for (let i = 0; i < periods; i++) {
      answered(l, ms);
      t.now += SAMPLE_MS;
      adapt(l, t.now, target, lateMs, 1);
    }
  }

  test('emits slower than the target shrink it, by at most half per period, never below its floor; fast ones let it grow back a quarter (and one) per period', () => {
    const t = { now: 0 };
    const l = newLimiter(t.now);
    feed(l, t, 5, 2); // what this server does unloaded: 2 ms
    assert.equal(l.limit, MAX_LIMIT);
    let before = l.limit;
    feed(l, t, 1, 400);
    assert.ok(l.limit >= before / 2 && l.limit < before, `one slow period: ${before} -> ${l.limit}`);
    feed(l, t, 40, 400);
    assert.equal(l.limit, MIN_LIMIT, 'held at the minimum: 400 ms at 4 in progress is an overload, not a slow disk');
    // Fast again: once the smoothed time is back under the target, it grows each period, by at
    // most a quarter and one.
    for (let i = 0; i < 10 && l.limit === MIN_LIMIT; i++) feed(l, t, 1, 1);
    for (let i = 0; i < 5; i++) {
      before = l.limit;
      feed(l, t, 1, 1);
      assert.ok(l.limit > before && l.limit <= before * 1.25 + 1, `a fast period: ${before} -> ${l.limit}`);
    }
    feed(l, t, 60, 1);
    assert.equal(l.limit, MAX_LIMIT);
  });

  test("the event loop's lateness is not held against it (fewer emits in progress cannot shorten it)", () => {
    const t = { now: 0 };
    const l = newLimiter(t.now);
    feed(l, t, 5, 2);
    feed(l, t, 20, 45, 40); // 45 ms each, 40 of them waiting for a late loop
    assert.equal(l.limit, MAX_LIMIT);
  });

  test('its target follows a server that is slow even unloaded (a slow disk): twice its unloaded time, when above the setting', () => {
    const t = { now: 0 };
    const l = newLimiter(t.now);
    feed(l, t, 5, 12); // a slow fsync: 12 ms unloaded
    feed(l, t, 20, 20); // under the target of 24 ms
    assert.equal(l.limit, MAX_LIMIT);
    feed(l, t, 20, 60);
    assert.ok(l.limit < MAX_LIMIT / 4);
  });

  test('a server that got slower since its floor was learnt is not held at the minimum: after a spell there, its time then is the floor', () => {
    const t = { now: 0 };
    const l = newLimiter(t.now);
    feed(l, t, 5, 2); // fast once: 2 ms unloaded
    // Now even 4 emits in progress take 30 ms (a busy disk): no limit makes them faster, and
    // holding 4 in progress only starves the group commits. Emits are being refused meanwhile.
    let lowest = l.limit;
    for (let i = 0; i < 60; i++) {
      l.refused = true;
      feed(l, t, 1, 30);
      lowest = Math.min(lowest, l.limit);
    }
    assert.equal(lowest, MIN_LIMIT, 'it did shrink to the minimum first');
    assert.ok(l.floor >= 15, `the floor follows the time at the minimum, doubling at most per spell: ${l.floor}`);
    assert.ok(l.limit > MIN_LIMIT * 4, `and the limit opens again: ${l.limit}`);
  });

  test('the odds of a refusal for a late loop rise while it runs later than the target on its own work, and fall back when it does not', () => {
    let odds = 0;
    odds = lateOdds(odds, 1, 10, 10, 1);
    assert.equal(odds, 0, 'on time: none');
    odds = lateOdds(odds, 1, 20, 10, 1);
    assert.ok(Math.abs(odds - 0.05) < 1e-9, `a target's worth late for one period: ${odds}`);
    for (let i = 0; i < 100; i++) odds = lateOdds(odds, 1, 300, 10, 1);
    assert.equal(odds, 0.95, 'late for long: nearly every emit (never all: a loop the worker keeps late still takes some)');
    // The same lateness with the loop mostly idle: another process held the CPU; refusing emits
    // would not help, so the odds fall.
    odds = lateOdds(odds, 1, 300, 10, 0.5);
    assert.ok(odds < 0.95);
    // One late sample after a quiet second is one period's step, not a hundred.
    assert.ok(Math.abs(lateOdds(0, 100, 12, 10, 1) - 0.01) < 1e-9);
    // Back on time: back to none, faster after a long pause (several periods at once).
    odds = lateOdds(odds, 50, 2, 10, 1);
    assert.equal(odds, 0);
  });

  test('refusals for lateness settle where the loop keeps to the target: a loop whose lateness grows with the share it accepts', () => {
    // A toy server: lateness rises linearly with the share of emits accepted beyond what its CPU
    // can take (here 30 %). The odds must settle near refusing 70 %, with the loop near its target.
    const t = { now: 0 };
    const l = newLimiter(t.now);
    let late = 0;
    for (let i = 0; i < 400; i++) {
      const accepted = 1 - l.lateOdds;
      const target = 10 + (accepted - 0.3) * 100;
      late += 0.4 * (Math.max(0, target) - late);
      t.now += SAMPLE_MS;
      adapt(l, t.now, 10, late, 1);
    }
    assert.ok(Math.abs(l.lateOdds - 0.7) < 0.05, `odds ${l.lateOdds}`);
    assert.ok(late < 15, `the loop near its target: ${late} ms late`);
  });
});

/**
 * Holds both writers: a transaction of the test's that locks the events table (Postgres: the
 * writers' statements wait for it in the server; PGlite: its single connection is taken until the
 * test lets go). Resolves once the lock is held.
 */
async function holdWriters(h: TestHerald): Promise<() => Promise<void>> {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let held!: () => void;
  const locked = new Promise<void>((r) => (held = r));
  const done = h.db.transaction(async (tx) => {
    await tx.query(`LOCK TABLE herald_events IN EXCLUSIVE MODE`);
    held();
    await gate;
  });
  await locked;
  return async () => {
    release();
    await done;
  };
}

const writers = BACKEND === 'postgres' ? 2 : 1;

describe('emit over HTTP under overload', () => {
  let h: TestHerald;
  let tenantId: string;
  let actor: string;
  before(async () => {
    // A wait bound far beyond the test's own pace: only the queue's size refuses here.
    h = await createTestHerald({ env: { HERALD_INTAKE_MAX_QUEUE: '3', HERALD_INTAKE_MAX_WAIT_MS: '60000' } });
    const seeded = await seedTenant(h, ['actor']);
    tenantId = seeded.tenantId;
    actor = seeded.users.actor!;
  });
  after(async () => h?.close());

  const body = (name: string) => ({ type: 'obra.completed', ctx: { tenantId, actorId: actor, obra: { id: 'obra-9', name, percentage: 100 } } });
  const stored = async (names: string[], on = h) =>
    (await on.db.query<{ name: string }>(`SELECT ctx->'obra'->>'name' AS name FROM herald_events WHERE ctx->'obra'->>'name' = ANY($1)`, [names])).rows
      .map((r) => r.name)
      .sort();
  /** Sends an emit and waits until it is being written or queued (one more item in the intake). */
  /**
   * Sends an emit and waits until it is in the intake: being written ('writing': a writer took it)
   * or at least waiting ('queued').
   */
  async function admitted(name: string, on = h, until: 'writing' | 'queued' = 'queued'): Promise<{ res: Promise<Response> }> {
    const count = () => (until === 'writing' ? on.engine.intake.writing : on.engine.intake.queued + on.engine.intake.writing);
    const before = count();
    const res = on.post('/api/notifications/emit', body(name));
    const answered = res.then(async (r) => `answered ${r.status} ${await r.clone().text()} before it was ${until}`);
    await Promise.race([eventually(async () => count() > before), answered.then((m) => Promise.reject(new Error(m)))]);
    return { res };
  }

  test('a full queue sheds at once: 429 + Retry-After, before the body is read; nothing is written for the shed requests', async () => {
    const run = randomUUID().slice(0, 8);
    const release = await holdWriters(h);
    const accepted: Promise<Response>[] = [];
    const names: string[] = [];
    try {
      // Fill the writers, then the queue (3).
      for (let i = 0; i < writers + 3; i++) {
        names.push(`${run} accepted ${i}`);
        accepted.push((await admitted(names.at(-1)!, h, i < writers ? 'writing' : 'queued')).res);
      }
      assert.equal(h.engine.intake.queued, 3);
      const shedNames = [`${run} shed 1`, `${run} shed 2`];
      for (const name of shedNames) {
        const res = await h.post('/api/notifications/emit', body(name));
        assert.equal(res.status, 429, await res.clone().text());
        const retryAfter = res.headers.get('retry-after');
        assert.ok(retryAfter && Number(retryAfter) >= 1, `Retry-After: ${retryAfter}`);
        const answer = (await res.json()) as { ok: boolean; error: string };
        assert.equal(answer.ok, false);
        assert.match(answer.error, /overloaded/);
      }
      // Refused before the body is even read: an unsigned, malformed request is shed the same way.
      const garbage = await h.app.request('/api/notifications/emit', { method: 'POST', body: '{not json', headers: { 'content-type': 'application/json' } });
      assert.equal(garbage.status, 429);
      // The router decodes the path: a percent-encoded spelling of emit's path is emit, shed alike.
      const encoded = await h.app.request('/api/notifications/%65mit', { method: 'POST', body: '{not json', headers: { 'content-type': 'application/json' } });
      assert.equal(encoded.status, 429);
      // The engine refuses too (a caller that skips the HTTP layer).
      await assert.rejects(h.engine.emit(Buffer.from(JSON.stringify(body(`${run} shed 3`)))), (e: unknown) => e instanceof OverloadedError);
    } finally {
      await release();
    }
    for (const res of await Promise.all(accepted)) assert.equal(res.status, 200);
    assert.deepEqual(await stored([...names, `${run} shed 1`, `${run} shed 2`, `${run} shed 3`]), [...names].sort());
  });

  test('an emit that waited in the queue longer than HERALD_INTAKE_MAX_WAIT_MS while no write completed is answered 503 (the database is not answering) and never written', async () => {
    const quick = await createTestHerald({ env: { HERALD_INTAKE_MAX_WAIT_MS: '200' } });
    const run = randomUUID().slice(0, 8);
    const release = await holdWriters(quick);
    const names = Array.from({ length: writers }, (_, i) => `${run} writing ${i}`);
    const writing: Promise<Response>[] = [];
    let late: Response;
    try {
      for (const name of names) writing.push((await admitted(name, quick, 'writing')).res);
      // The writers are still held: the late emit waits in the queue and is answered when its
      // bound passes. Nothing was written during its wait, so the database, not other emits, held
      // it: 503 (shedding behind writes that go on is 429: the unit tests above).
      late = await quick.post('/api/notifications/emit', body(`${run} late`));
    } finally {
      await release();
    }
    try {
      assert.equal(late.status, 503, await late.clone().text());
      assert.match(await late.clone().text(), /database/);
      assert.ok(Number(late.headers.get('retry-after')) >= 1);
      for (const res of await Promise.all(writing)) assert.equal(res.status, 200);
      assert.deepEqual(await stored([...names, `${run} late`], quick), [...names].sort());
    } finally {
      await quick.close();
    }
  });

  test('an emit whose client disconnected before its flush is not written', async () => {
    const run = randomUUID().slice(0, 8);
    let server!: ServerType;
    const port = await new Promise<number>((resolve) => {
      server = serve({ fetch: h.app.fetch, port: 0, hostname: '127.0.0.1' }, (info) => resolve(info.port));
    });
    const connections = () => new Promise<number>((r) => server.getConnections((_e, n) => r(n)));
    /** A raw HTTP/1.1 emit on its own connection; resolves with the status line. */
    const rawEmit = (name: string) => {
      const raw = JSON.stringify(body(name));
      const socket = net.connect(port, '127.0.0.1');
      const headers = { ...signedHeaders(raw), 'content-length': String(Buffer.byteLength(raw)), host: '127.0.0.1', connection: 'close' };
      socket.write(`POST /api/notifications/emit HTTP/1.1\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n${raw}`);
      const status = new Promise<number>((resolve) => {
        let text = '';
        socket.on('data', (d) => (text += d.toString()));
        socket.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1] ?? 0)));
        socket.on('error', () => {});
      });
      return { socket, status };
    };
    try {
      const release = await holdWriters(h);
      const names = Array.from({ length: writers }, (_, i) => `${run} writing ${i}`);
      const kept = `${run} kept`;
      const gone = `${run} gone`;
      let writing: { status: Promise<number> }[] = [];
      try {
        for (const name of names) {
          const before = h.engine.intake.writing;
          writing.push(rawEmit(name));
          await eventually(async () => h.engine.intake.writing > before);
        }
        const stays = rawEmit(kept);
        const leaves = rawEmit(gone);
        await eventually(async () => h.engine.intake.queued === 2);
        writing = [...writing, stays];
        leaves.socket.destroy();
        // The server has seen the client go (its side of the connection is closed).
        await eventually(async () => (await connections()) === writers + 1);
      } finally {
        await release();
      }
      for (const w of writing) assert.equal(await w.status, 200);
      assert.deepEqual(await stored([...names, kept, gone]), [...names, kept].sort(), 'the abandoned emit was dropped before its flush');
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  test('while the event loop runs late, emits are refused with 429 before their body is read; once it keeps time again, they are accepted', {
    skip: BACKEND === 'postgres' ? undefined : 'PGlite runs its database on the event loop: its lateness is not a queue, and this limit is off there',
  }, async () => {
    const shedding = await createTestHerald({ env: { HERALD_SHED_TARGET_MS: '10' } });
    const { tenantId: tid, users } = await seedTenant(shedding, ['actor']);
    const emitBody = (name: string) => ({ type: 'obra.completed', ctx: { tenantId: tid, actorId: users.actor!, obra: { id: 'o', name, percentage: 100 } } });
    const run = randomUUID().slice(0, 8);
    // Hold the loop up: 40 ms of synchronous work at every turn of a 1 ms timer (a process whose
    // CPU is taken, as when it serves more than it can).
    const hog = setInterval(() => {
      const until = performance.now() + 40;
      while (performance.now() < until);
    }, 1);
    const answers: number[] = [];
    try {
      for (let i = 0; i < 20 && !answers.includes(429); i++) {
        const res = await shedding.post('/api/notifications/emit', emitBody(`${run} late loop ${i}`));
        answers.push(res.status);
        if (res.status === 429) {
          assert.ok(Number(res.headers.get('retry-after')) >= 1);
          assert.match(((await res.json()) as { error: string }).error, /overloaded/);
        }
      }
    } finally {
      clearInterval(hog);
    }
    try {
      assert.ok(answers.includes(429), `answers while the loop was late: ${answers.join(', ')}`);
      await eventually(async () => (await shedding.post('/api/notifications/emit', emitBody(`${run} on time`))).status === 200);
      const refused = answers.map((s, i) => (s === 429 ? `${run} late loop ${i}` : undefined)).filter((n): n is string => !!n);
      assert.deepEqual(await stored(refused, shedding), [], 'nothing written for a refused emit');
    } finally {
      await shedding.close();
    }
  });

  test('an emit whose flush outlives HERALD_INTAKE_FLUSH_TIMEOUT_MS is answered 503 (outcome unknown); its retry with the same key replays exactly one event', async () => {
    const slow = await createTestHerald({ env: { HERALD_INTAKE_FLUSH_TIMEOUT_MS: '200' } });
    try {
      const { tenantId: tid, users } = await seedTenant(slow, ['actor']);
      const raw = { type: 'obra.completed', ctx: { tenantId: tid, actorId: users.actor!, obra: { id: 'o', name: 'held', percentage: 100 } } };
      const key = `held-${randomUUID()}`;
      const release = await holdWriters(slow);
      let first: Response;
      try {
        first = await slow.post('/api/notifications/emit', raw, { headers: { 'idempotency-key': key } });
      } finally {
        await release();
      }
      assert.equal(first.status, 503, await first.clone().text());
      assert.ok(Number(first.headers.get('retry-after')) >= 1);
      assert.equal(((await first.json()) as { error: string }).error, 'database unavailable');
      // The held write goes on once the writers are let go (it commits); the client retries after.
      await eventually(async () => slow.engine.intake.writing === 0);
      const retry = await eventually(async () => {
        const r = await slow.post('/api/notifications/emit', raw, { headers: { 'idempotency-key': key } });
        return r.status === 200 ? r : undefined;
      });
      const { rows } = await slow.db.query<{ id: string }>(`SELECT id::text FROM herald_events`);
      assert.equal(rows.length, 1, 'the held flush committed once; the retry stored nothing new');
      assert.equal(((await retry.json()) as { eventId: string }).eventId, rows[0]!.id);
      assert.equal(retry.headers.get('idempotent-replayed'), 'true');
    } finally {
      await slow.close();
    }
  });
});
