import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { resolveSettings } from '../../src/config/settings.ts';
import { createEngine, type Engine } from '../../src/engine.ts';
import { defineConfig, rule, z } from '../../src/index.ts';
import { silentLogger } from '../../src/log.ts';
import { compileRules } from '../../src/rules/compile.ts';
import type { Db, Queryable } from '../../src/storage/db.ts';
import { createGroupCommit } from '../../src/storage/group-commit.ts';
import { createTestDb, type TestDb } from '../helpers/db.ts';
import { eventually, JWT_SECRET, SECRET } from '../helpers/herald.ts';

/** A flush that the test resolves by hand, to see exactly what each flush carried. */
function manualFlushes() {
  const flushes: { items: number[]; resolve(): void; reject(e: Error): void }[] = [];
  const gc = createGroupCommit<number, string>({
    maxBatch: 3,
    writers: 1,
    conflictKey: (n) => (n >= 100 ? 'dup' : undefined),
    flush: (items) =>
      new Promise((resolve, reject) => {
        flushes.push({
          items,
          resolve: () => resolve(items.map((n) => `ok ${n}`)),
          reject: (e) => reject(e),
        });
      }),
  });
  return { gc, flushes };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('group commit (unit)', () => {
  test('items that arrive while a flush is in flight share the next flush, up to maxBatch', async () => {
    const { gc, flushes } = manualFlushes();
    const results = [gc.submit(1)];
    await tick();
    assert.deepEqual(flushes.map((f) => f.items), [[1]], 'an idle writer flushes at the end of the turn: no added latency');
    results.push(...[2, 3, 4, 5].map((n) => gc.submit(n)));
    await tick();
    assert.equal(flushes.length, 1, 'one writer: the next flush waits for the first');
    assert.equal(gc.queued, 4);
    flushes[0]!.resolve();
    await tick();
    assert.deepEqual(flushes.map((f) => f.items), [[1], [2, 3, 4]]);
    flushes[1]!.resolve();
    await tick();
    flushes[2]!.resolve();
    assert.deepEqual(await Promise.all(results), ['ok 1', 'ok 2', 'ok 3', 'ok 4', 'ok 5']);
    assert.deepEqual(flushes.map((f) => f.items), [[1], [2, 3, 4], [5]]);
  });

  test('items submitted in one turn share a flush; items with one conflict key never do', async () => {
    const { gc, flushes } = manualFlushes();
    const results = [1, 100, 101, 2].map((n) => gc.submit(n));
    await tick();
    assert.deepEqual(flushes[0]!.items, [1, 100, 2], 'the second "dup" waits');
    flushes[0]!.resolve();
    await tick();
    assert.deepEqual(flushes[1]!.items, [101]);
    flushes[1]!.resolve();
    assert.equal((await Promise.all(results)).length, 4);
  });

  test('a failed flush is retried item by item, so only the bad item fails', async () => {
    const gc = createGroupCommit<number, number>({
      maxBatch: 10,
      writers: 1,
      async flush(items) {
        await tick();
        if (items.includes(13)) throw new Error('bad item 13');
        return items.map((n) => n * 2);
      },
    });
    const settled = await Promise.allSettled([1, 2, 13, 4, 5].map((n) => gc.submit(n)));
    assert.deepEqual(
      settled.map((s) => (s.status === 'fulfilled' ? s.value : (s.reason as Error).message)),
      [2, 4, 'bad item 13', 8, 10],
    );
  });
});

const config = defineConfig({
  events: {
    'task.assigned': rule({
      schema: z.object({ userId: z.string().uuid(), title: z.string().min(1) }),
      recipients: (ctx, to) => to.users(ctx.userId),
      inApp: { title: 'Task: {{ ctx.title }}', type: 'info' },
    }),
  },
});

/** The engine's Db, counting emit statements and transactions (to prove coalescing, not speed). */
function counting(db: Db) {
  const counts = { eventInserts: 0, transactions: 0 };
  const wrap = (q: Queryable): Queryable => ({
    query: (text, values, opts) => {
      if (text.includes('INSERT INTO herald_events')) counts.eventInserts++;
      return q.query(text, values, opts);
    },
    exec: (sql) => q.exec(sql),
    pipeline: (statements) => q.pipeline(statements),
  });
  const wrapped: Db = {
    ...wrap(db),
    kind: db.kind,
    transaction: (fn, o) => {
      counts.transactions++;
      return db.transaction((tx) => fn(wrap(tx)), o);
    },
    pipeline: (statements) => {
      counts.transactions++;
      return db.pipeline(statements);
    },
    withAdvisoryLock: (key, fn) => db.withAdvisoryLock(key, fn),
    listen: (ch, fn) => db.listen(ch, fn),
    wake: (ch) => db.wake(ch),
    close: () => db.close(),
  };
  return { db: wrapped, counts };
}

describe('workflow-mode emit is group-committed', () => {
  let t: TestDb;
  let engine: Engine;
  let counts: ReturnType<typeof counting>['counts'];
  before(async () => {
    t = await createTestDb();
    const c = counting(t.db);
    counts = c.counts;
    const settings = resolveSettings({ REQUEST_SIGNING_SECRET: SECRET, JWT_SECRET, HERALD_JOB_POLL_MS: '50', HERALD_MAINTENANCE_MS: '50' });
    assert.equal(settings.workflowMode, true);
    engine = createEngine({ settings, db: c.db, rules: compileRules(config), log: silentLogger });
  });
  after(async () => t?.drop());

  const body = (title: string, userId: string = randomUUID()) =>
    Buffer.from(JSON.stringify({ type: 'task.assigned', ctx: { userId, title } }));
  const scalar = async (sql: string) => Number(Object.values((await t.db.query(sql)).rows[0]!)[0]);

  test('300 concurrent emits: each acknowledged once and stored once, covered by one job per group commit', async () => {
    await t.db.exec(`TRUNCATE herald_events, herald_jobs, notifications, herald_idempotency_keys`);
    counts.eventInserts = 0;
    const outs = await Promise.all(Array.from({ length: 300 }, (_, i) => engine.emit(body(`t${i}`))));
    const ids = outs.map((o) => {
      assert.equal(o.status, 200);
      assert.equal(o.body.workflow, 'queued');
      return o.body.eventId as string;
    });
    assert.equal(new Set(ids).size, 300);
    const stored = (await t.db.query<{ id: string }>(`SELECT id::text FROM herald_events`)).rows.map((r) => r.id);
    assert.deepEqual(new Set(stored), new Set(ids), 'exactly the acknowledged events are stored');
    const jobs = (await t.db.query<{ ids: string[] }>(`SELECT payload->'eventIds' AS ids FROM herald_jobs WHERE kind = 'event.expand'`)).rows;
    const covered = jobs.flatMap((j) => j.ids);
    assert.equal(covered.length, 300, 'each event is in exactly one expansion job');
    assert.deepEqual(new Set(covered), new Set(ids));
    assert.equal(jobs.length, counts.eventInserts, 'one expansion job per group commit');
    assert.ok(counts.eventInserts < 300 / 4, `300 emits took ${counts.eventInserts} insert statements`);
  });

  test('one idempotency key in a burst: one event; the rest replay its response byte for byte; another body is 422', async () => {
    const raw = body('once');
    const key = `key:${randomUUID()}`;
    const before = await scalar(`SELECT count(*) FROM herald_events`);
    const settled = await Promise.allSettled([
      ...Array.from({ length: 20 }, () => engine.emit(raw, key)),
      engine.emit(body('other'), key),
    ]);
    const ok = settled.filter((s) => s.status === 'fulfilled').map((s) => (s as PromiseFulfilledResult<Awaited<ReturnType<Engine['emit']>>>).value);
    const refused = settled.filter((s) => s.status === 'rejected').map((s) => (s as PromiseRejectedResult).reason as { status: number });
    assert.equal(ok.length, 20);
    assert.deepEqual(refused.map((r) => r.status), [422]);
    const fresh = ok.filter((o) => !o.replayed);
    assert.equal(fresh.length, 1);
    for (const o of ok) assert.equal(JSON.stringify(o.body), JSON.stringify(fresh[0]!.body));
    assert.equal(await scalar(`SELECT count(*) FROM herald_events`), before + 1);
  });

  test('the worker expands events in batches: every event gets its row, in fewer transactions than events', async () => {
    await t.db.exec(`TRUNCATE herald_events, herald_jobs, notifications, herald_idempotency_keys`);
    const users = Array.from({ length: 250 }, () => randomUUID());
    await Promise.all(users.map((u, i) => engine.emit(body(`b${i}`, u))));
    counts.transactions = 0;
    const worker = engine.createWorker();
    await worker.start();
    try {
      await eventually(async () => (await scalar(`SELECT count(*) FROM herald_jobs`)) === 0, 20_000);
    } finally {
      await worker.stop();
    }
    const rows = (await t.db.query<{ user_id: string; title: string }>(`SELECT user_id::text, title FROM notifications`)).rows;
    assert.equal(rows.length, 250);
    assert.deepEqual(new Set(rows.map((r) => r.user_id)), new Set(users));
    assert.equal(await scalar(`SELECT count(*) FROM herald_events WHERE processed_at IS NULL`), 0);
    assert.deepEqual(
      (await t.db.query<{ n: number }>(`SELECT inserted AS n FROM herald_events GROUP BY inserted`)).rows.map((r) => r.n),
      [1],
      'each event records its one inbox row',
    );
    assert.ok(counts.transactions < 250 / 4, `250 expansions took ${counts.transactions} transactions`);
  });

  test('a bad event fails alone, with its reason; the events committed with it are expanded', async () => {
    await t.db.exec(`TRUNCATE herald_events, herald_jobs, notifications, herald_idempotency_keys`);
    const outs = await Promise.all(Array.from({ length: 30 }, (_, i) => engine.emit(body(`p${i}`))));
    const bad = outs[7]!.body.eventId as string;
    // The config lost this event's rule since it was accepted (e.g. a deploy removed it).
    await t.db.query(`UPDATE herald_events SET type = 'task.removed' WHERE id = $1`, [bad]);
    const worker = engine.createWorker();
    await worker.start();
    try {
      await eventually(async () => (await scalar(`SELECT count(*) FROM herald_jobs WHERE state <> 'failed'`)) === 0, 20_000);
    } finally {
      await worker.stop();
    }
    assert.equal(await scalar(`SELECT count(*) FROM notifications`), 29);
    const failed = (await t.db.query<{ id: string; last_error: string }>(
      `SELECT payload->>'eventId' AS id, last_error FROM herald_jobs WHERE state = 'failed'`,
    )).rows;
    assert.equal(failed.length, 1);
    assert.equal(failed[0]!.id, bad);
    assert.match(failed[0]!.last_error, /no rule for event type "task\.removed"/);
  });
});
