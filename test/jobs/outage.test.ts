import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pino from 'pino';
import { resolveSettings } from '../../src/config/settings.ts';
import { createEngine } from '../../src/engine.ts';
import { defineConfig, rule, workflow, z } from '../../src/index.ts';
import type { Worker } from '../../src/jobs/worker.ts';
import type { Db } from '../../src/storage/db.ts';
import { openStorage } from '../../src/storage/open.ts';
import { BACKEND } from '../helpers/db.ts';
import { seedTenant } from '../helpers/fixtures.ts';
import { createTestHerald, eventually, SECRET, JWT_SECRET, type TestHerald } from '../helpers/herald.ts';
import { startTcpProxy, viaProxy, type TcpProxy } from '../helpers/tcp-proxy.ts';

/**
 * The worker under a database outage. A worker (its claims, batch lanes, heartbeats, maintenance
 * and leader election) reaches a throw-away database through a TCP proxy of the test's own; the
 * test cuts the proxy while jobs flow (connections reset and refused, then a database that
 * accepts TCP and never answers), keeps queuing work through a direct connection, and restores
 * it. The worker must live through it, log no unhandled rejection, and finish every queued job by
 * itself, without a restart; nothing may run twice except what the lease rules allow (a step that
 * was in flight when the database went away runs again once it is back).
 */
const skip = BACKEND !== 'postgres' && 'a TCP proxy between the worker and a Postgres server: Postgres only';

/** Every execution of a step body: when it started, per `<runId>:<stepId>`. */
const executions = new Map<string, number[]>();

const config = defineConfig({
  events: {
    'outage.ping': rule({
      schema: z.object({ tenantId: z.string().uuid(), userId: z.string().uuid(), n: z.number().int() }),
      recipients: (ctx, to) => to.users([ctx.userId]),
      inApp: { title: 'ping {{ ctx.n }}' },
    }),
    'outage.start': rule({ schema: z.object({ tenantId: z.string().uuid(), n: z.number().int() }) }),
  },
  workflows: {
    'outage.flow': workflow<{ n: number }>({
      on: 'outage.start',
      retries: 20,
      async run(input, step, run) {
        const body = (id: string) => async () => {
          const key = `${run.id}:${id}`;
          executions.set(key, [...(executions.get(key) ?? []), Date.now()]);
          await new Promise((r) => setTimeout(r, 20));
          return `${id}-${input.n}`;
        };
        const a = await step.run('a', body('a'));
        const b = await step.run('b', body('b'));
        return { a, b };
      },
    }),
  },
});

let h: TestHerald;
let proxy: TcpProxy;
let proxied: Db;
let worker: Worker;
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => void unhandled.push(reason);
const logLines: { level: number; msg: string }[] = [];
/** Statements and transactions the worker started while the proxy was cut. */
let callsWhileCut = 0;
let cut = false;

/** The worker's own Db, counting what it starts while cut (the real driver underneath). */
function counted(db: Db): Db {
  const count = () => void (cut && callsWhileCut++);
  return {
    kind: db.kind,
    query: (text, values, o) => (count(), db.query(text, values, o)),
    exec: (sql) => (count(), db.exec(sql)),
    pipeline: (statements) => (count(), db.pipeline(statements)),
    transaction: (fn, o) => (count(), db.transaction(fn, o)),
    withAdvisoryLock: (key, fn) => (count(), db.withAdvisoryLock(key, fn)),
    listen: (channel, fn) => db.listen(channel, fn),
    wake: (channel) => db.wake(channel),
    close: () => db.close(),
  };
}

before(async () => {
  if (skip) return;
  process.on('unhandledRejection', onUnhandled);
  h = await createTestHerald({ config });
  const url = new URL(h.url!);
  proxy = await startTcpProxy({ host: url.hostname, port: Number(url.port || 5432) });
  proxied = await openStorage({ databaseUrl: viaProxy(h.url!, proxy), poolSize: 6, onError: () => {} });
  const log = pino({ level: 'debug' }, { write: (line: string) => void logLines.push(JSON.parse(line)) });
  const engine = createEngine({
    settings: resolveSettings({
      REQUEST_SIGNING_SECRET: SECRET,
      JWT_SECRET,
      HERALD_JOB_LEASE_MS: '3000',
      HERALD_JOB_POLL_MS: '50',
      HERALD_MAINTENANCE_MS: '100',
    }),
    db: counted(proxied),
    rules: h.engine.rules,
    log,
  });
  worker = engine.createWorker();
  await worker.start();
});

after(async () => {
  if (skip) return;
  await worker?.stop(2_000).catch(() => {});
  await proxied?.close().catch(() => {});
  await proxy?.close();
  await h?.close();
  process.off('unhandledRejection', onUnhandled);
});

test('a worker cut off from its database backs off, lives, and finishes every queued job once it is back', { skip, timeout: 60_000 }, async () => {
  const { tenantId, users } = await seedTenant(h, ['u']);
  const userId = users.u!;
  let n = 0;
  const events: string[] = [];
  const runs: string[] = [];
  /** Queues work through the test's own connection (the worker's is the one that breaks). */
  const queueWork = async (count: number) => {
    for (let i = 0; i < count; i++, n++) {
      const ping = await h.engine.emit(Buffer.from(JSON.stringify({ type: 'outage.ping', ctx: { tenantId, userId, n } })));
      events.push(ping.body.eventId as string);
      const start = await h.engine.emit(Buffer.from(JSON.stringify({ type: 'outage.start', ctx: { tenantId, n } })));
      runs.push(...(start.body.workflowRuns as string[]));
    }
  };
  const completedRuns = async () =>
    (await h.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM herald_runs WHERE state = 'completed'`)).rows[0]!.n;
  const finished = async () => {
    const { rows } = await h.db.query<{ runs: number; events: number; jobs: number }>(
      `SELECT (SELECT count(*)::int FROM herald_runs WHERE state = 'completed') AS runs,
              (SELECT count(*)::int FROM herald_events WHERE processed_at IS NOT NULL AND id = ANY($1::uuid[])) AS events,
              (SELECT count(*)::int FROM herald_jobs) AS jobs`,
      [events],
    );
    return rows[0]!.runs === runs.length && rows[0]!.events === events.length && rows[0]!.jobs === 0;
  };

  const restores: number[] = [];
  for (const mode of ['refuse', 'blackhole'] as const) {
    const before = await completedRuns();
    await queueWork(15);
    // Jobs are flowing: some runs completed since this round's work was queued, others are not.
    await eventually(async () => (await completedRuns()) > before, 10_000);
    proxy.cut(mode);
    cut = true;
    callsWhileCut = 0;
    const cutAt = Date.now();
    await queueWork(10); // queued while the worker cannot see the database
    // Long enough for leases (3 s: long enough that a late heartbeat on a busy box does not lose one
    // once the database is back) to expire and for every loop to fail several times.
    await new Promise((r) => setTimeout(r, 3_500));
    assert.deepEqual(unhandled, [], `no unhandled rejection while the database is ${mode === 'refuse' ? 'refusing' : 'silent'}`);
    cut = false;
    const cutFor = Date.now() - cutAt;
    // Without backoff the claim loop, the batch lane and two maintenance tasks try every poll
    // (50 ms) or tick (100 ms): ~200 tries in 3.5 s. Backing off from there to 10 s, ~30.
    console.log(`# ${mode}: ${callsWhileCut} database calls started by the worker during ${cutFor} ms cut off`);
    assert.ok(callsWhileCut < 60, `the worker backs off while the database is away (${callsWhileCut} calls in ${cutFor} ms)`);
    proxy.restore();
    restores.push(Date.now());
    const t0 = Date.now();
    await eventually(finished, 20_000).catch(async (err) => {
      const { rows } = await h.db.query(`SELECT kind, state, attempts, last_error, run_at > now() AS later FROM herald_jobs`);
      const { rows: state } = await h.db.query(
        `SELECT (SELECT json_agg(json_build_object('state', state, 'error', error)) FROM herald_runs WHERE state <> 'completed') AS runs,
                (SELECT count(*) FROM herald_events WHERE processed_at IS NULL) AS unprocessed`,
      );
      throw new Error(`${(err as Error).message}: jobs left ${JSON.stringify(rows)}; ${JSON.stringify(state)}; expected ${runs.length} runs, ${events.length} events; log tail ${JSON.stringify(logLines.slice(-8))}`);
    });
    console.log(`# ${mode}: cut for ${restores.at(-1)! - cutAt} ms; every queued job done ${Date.now() - t0} ms after the restore`);
  }
  assert.deepEqual(unhandled, [], 'no unhandled rejection');

  // Every event expanded once: one notification each (the dedupe key holds the rest).
  const { rows: notes } = await h.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM notifications WHERE user_id = $1`, [userId]);
  assert.equal(notes[0]!.n, events.length);
  // Every run completed with its result, every step recorded once.
  const { rows: done } = await h.db.query<{ result: { a: string; b: string } }>(`SELECT result FROM herald_runs WHERE state = 'completed'`);
  assert.equal(done.length, runs.length);
  const { rows: steps } = await h.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM herald_steps WHERE state = 'completed'`);
  assert.equal(steps[0]!.n, runs.length * 2);
  // A step body ran again only when an earlier execution was caught by the outage: every
  // execution but the last started before a restore, and once the database was back for good
  // none ran twice.
  const lastRestore = restores.at(-1)!;
  for (const [key, starts] of executions) {
    const afterLast = starts.filter((s) => s >= lastRestore);
    assert.ok(afterLast.length <= 1, `${key} ran ${afterLast.length} times after the database came back`);
    for (const s of starts.slice(0, -1)) {
      assert.ok(restores.some((r) => s < r), `${key}: a repeated execution not explained by an outage`);
    }
  }
  // The outage was logged, not a line per failed poll.
  // The outage is logged once per streak by the polling loops (and once per job caught in it),
  // not once per poll.
  const loud = logLines.filter((l) => l.level >= 40);
  const polling = loud.filter((l) => /backs off|maintenance task failed/.test(l.msg));
  console.log(`# ${loud.length} warn/error log lines over two outages (${polling.length} from the polling loops); ${[...executions.values()].filter((s) => s.length > 1).length} step bodies re-ran`);
  assert.ok(polling.length <= 12, `polling loops log a streak once (${polling.length} lines)`);
});
