import pg from 'pg';
import { EXPAND_EVENT_JOB, eventIdsOf } from '../../src/expansion/expand-job.ts';
import type { Db, Queryable } from '../../src/storage/db.ts';
import { Tracker } from '../lib/drive.ts';
import { openHerald, pingBody, resetHerald, startBody, trackedWorker, type BenchHerald } from '../lib/herald.ts';
import type { QueueSubject } from '../lib/queue-modes.ts';
import { now, percentile, sleep } from '../lib/stats.ts';
import type { Worker } from '../../src/jobs/worker.ts';

/**
 * herald's emit as a queue: engine.emit() in process (workflow mode: the event and its expansion
 * job commit together), herald's own worker expanding each event into its in-app row. The handler
 * start is the expansion job's start; "row" is when that job committed the notification. With
 * `startsRuns` the emitted type (`bench.start`) starts a code run instead, and the handler start
 * is that run's first execution (tracked by the run id the emit's answer names).
 */
export async function heraldSubject(
  url: string,
  opts: { name?: string; env?: Record<string, string>; wakeups?: boolean; startsRuns?: boolean } = {},
): Promise<QueueSubject & { herald: BenchHerald; rewrites: () => number }> {
  const observer = new pg.Client({ connectionString: url });
  await observer.connect();
  let rewrites = 0;
  const herald = await openHerald({
    databaseUrl: url,
    env: opts.env,
    wrapDb: opts.wakeups === false ? (db) => withoutWakeups(db, () => rewrites++) : undefined,
  });
  const tracker = new Tracker();
  const rowAt = new Map<string, number>();
  let worker: Worker | undefined;
  // With startsRuns the handler is the run's first execution, tracked by run id.
  const enqueue = async (seq: number) => {
    const out = await herald.engine.emit(opts.startsRuns ? startBody(seq) : pingBody(seq));
    const id = opts.startsRuns ? (out.body.workflowRuns as string[] | undefined)?.[0] : out.body.eventId;
    if (out.status !== 200 || typeof id !== 'string') throw new Error(`emit failed: ${out.status} ${JSON.stringify(out.body)}`);
    return id;
  };
  return {
    name: opts.name ?? 'herald (engine.emit, workflow mode)',
    observer,
    tracker,
    herald,
    rewrites: () => rewrites,
    async startWorker() {
      worker = opts.startsRuns
        ? trackedWorker(herald.engine, () => {}, undefined, tracker.onStart)
        : trackedWorker(herald.engine, tracker.onStart, (job, outcome) => {
            if (job.kind === EXPAND_EVENT_JOB && outcome === 'completed') for (const id of eventIdsOf(job.payload)) rowAt.set(id, now());
          });
      await worker.start();
    },
    async stopWorker() {
      await worker?.stop();
      worker = undefined;
    },
    enqueue,
    async enqueueMany(seqs) {
      // herald has no bulk emit: the backlog is built with 64 concurrent emits, worker stopped.
      const ids: string[] = new Array(seqs.length);
      let next = 0;
      await Promise.all(
        Array.from({ length: 64 }, async () => {
          while (next < seqs.length) {
            const i = next++;
            ids[i] = await enqueue(seqs[i]!);
          }
        }),
      );
      return ids;
    },
    async reset() {
      await resetHerald(herald.db);
      rowAt.clear();
      await observer.query('CHECKPOINT');
    },
    async verify(ids) {
      return opts.startsRuns ? verifyRuns(observer, ids) : verifyRows(observer, ids, rowAt, tracker);
    },
    async close() {
      await worker?.stop().catch(() => {});
      await herald.close();
      await observer.end();
    },
  };
}

/**
 * Every acknowledged event is stored once, processed, and produced exactly its one in-app row
 * (matched by event id), and no job is left. Waits (bounded) for the worker to commit the rows.
 */
export interface SqlReader {
  query(text: string): Promise<{ rows: unknown[] }>;
}

const count = (r: { rows: unknown[] }) => Number((r.rows[0] as { n: number }).n);

export async function verifyRows(
  observer: SqlReader,
  ids: string[],
  rowAt?: Map<string, number>,
  tracker?: Tracker,
): Promise<{ verdict: string; extra?: Record<string, number> }> {
  const deadline = now() + 60_000;
  let rows = 0;
  for (;;) {
    rows = count(await observer.query(`SELECT count(*)::int AS n FROM notifications`));
    const jobs = count(await observer.query(`SELECT count(*)::int AS n FROM herald_jobs`));
    if ((rows >= ids.length && jobs === 0) || now() > deadline) break;
    await sleep(20);
  }
  const visibleAt = now();
  const ev = (await observer.query(`SELECT count(*)::int AS n, count(processed_at)::int AS processed FROM herald_events`))
    .rows as { n: number; processed: number }[];
  const got = ((await observer.query(`SELECT event_id::text AS id FROM notifications`)).rows as { id: string }[]).map((r) => r.id);
  const expected = new Set(ids);
  const seen = new Set<string>();
  for (const id of got) {
    if (!expected.has(id)) return { verdict: `a notification for an unknown event ${id}` };
    if (seen.has(id)) return { verdict: `two notifications for event ${id}` };
    seen.add(id);
  }
  if (seen.size !== expected.size) return { verdict: `${expected.size - seen.size} events without their notification` };
  if (ev[0]!.n !== ids.length || ev[0]!.processed !== ids.length) {
    return { verdict: `${ev[0]!.n} events stored, ${ev[0]!.processed} processed, for ${ids.length} acknowledged` };
  }
  const extra: Record<string, number> = { rowsVisibleAt: visibleAt };
  if (rowAt && tracker && rowAt.size) {
    // handler start → row committed, to split the end-to-end latency.
    const work = [...rowAt].map(([id, t]) => t - (tracker.started.get(id) ?? t));
    extra.expandP50 = percentile(work, 50);
    extra.expandP99 = percentile(work, 99);
  }
  return { verdict: 'ok', extra };
}

/**
 * Every acknowledged emit of `bench.start` started exactly its one run (matched by the run id its
 * answer named), the run completed with its event's seq as result, every event was expanded, and
 * no job is left. Waits (bounded) for the worker to finish.
 */
export async function verifyRuns(observer: SqlReader, ids: string[]): Promise<{ verdict: string }> {
  const deadline = now() + 60_000;
  for (;;) {
    const open = count(
      await observer.query(
        `SELECT (SELECT count(*) FROM herald_jobs) + (SELECT count(*) FROM herald_runs WHERE state = 'running') AS n`,
      ),
    );
    if (open === 0 || now() > deadline) break;
    await sleep(20);
  }
  const runs = (
    await observer.query(
      `SELECT r.id, r.state, r.result = (e.ctx->'seq') AS right_result, e.processed_at IS NOT NULL AS expanded
       FROM herald_runs r LEFT JOIN herald_events e ON e.id = r.event_id`,
    )
  ).rows as { id: string; state: string; right_result: boolean | null; expanded: boolean }[];
  const expected = new Set(ids);
  if (expected.size !== ids.length) return { verdict: 'two acknowledgements named the same run' };
  for (const r of runs) {
    if (!expected.has(r.id)) return { verdict: `a run nobody was told about: ${r.id}` };
    if (r.state !== 'completed' || !r.right_result) return { verdict: `run ${r.id} ended ${r.state} without its event's seq` };
    if (!r.expanded) return { verdict: `the event of run ${r.id} was not expanded` };
  }
  if (runs.length !== ids.length) return { verdict: `${runs.length} runs for ${ids.length} acknowledged emits` };
  const events = count(await observer.query(`SELECT count(*)::int AS n FROM herald_events`));
  if (events !== ids.length) return { verdict: `${events} events stored for ${ids.length} acknowledged` };
  return { verdict: 'ok' };
}

/** The same Db with herald's wake-ups removed: pg_notify in statements and Db.wake (polling only). */
export function withoutWakeups(db: Db, counted: () => void): Db {
  // pg_notify(channel, '') becomes length(channel::text): same parameters and types, no NOTIFY.
  const rewrite = (text: string) =>
    text.includes('pg_notify(') ? (counted(), text.replace(/pg_notify\(([^,()]+),\s*''\)/g, 'length($1::text)')) : text;
  const wrap = (q: Queryable): Queryable => ({
    query: (text, values, opts) => q.query(rewrite(text), values, opts),
    exec: (sql) => q.exec(sql),
    pipeline: (statements) => q.pipeline(statements.map((s) => ({ ...s, text: rewrite(s.text) }))),
  });
  return {
    ...db,
    ...wrap(db),
    kind: db.kind,
    transaction: (fn, o) => db.transaction((tx) => fn(wrap(tx)), o),
    withAdvisoryLock: (key, fn) => db.withAdvisoryLock(key, fn),
    listen: (ch, fn) => db.listen(ch, fn),
    // Off means off: no in-memory wake-ups either, only the worker's polling.
    wake: () => counted(),
    close: () => db.close(),
  };
}

/** Counts the NOTIFYs on herald's job channels while a mode runs (one LISTEN connection). */
export async function countNotifies(url: string): Promise<{ stop(): Promise<number> }> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  let n = 0;
  c.on('notification', () => n++);
  await c.query('LISTEN herald_jobs; LISTEN herald_jobs_batch');
  return {
    async stop() {
      await sleep(50);
      await c.end();
      return n;
    },
  };
}
