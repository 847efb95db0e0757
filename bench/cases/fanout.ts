import pg from 'pg';
import { createApp } from '../../src/http/app.ts';
import { openHerald, parkBody, QSTASH_TOKEN, resetHerald } from '../lib/herald.ts';
import type { ModeResult } from '../lib/result.ts';
import { now, percentile, sleep } from '../lib/stats.ts';
import { startMeter } from '../lib/usage.ts';

async function until(observer: pg.Client, sql: string, want: number, timeoutMs: number, everyMs: number): Promise<number> {
  const deadline = now() + timeoutMs;
  for (;;) {
    const n = Number((await observer.query(sql)).rows[0].n);
    if (n >= want || now() > deadline) return n;
    await sleep(everyMs);
  }
}

/**
 * Notify fan-out: N code-first runs parked in step.waitForEvent on one event id (they hold no
 * memory: each is a waiter row), then one POST /v2/notify/{eventId}. Measured: the notify call
 * (it durably resumes every waiter in one transaction), each run's resume (its code after the
 * wait runs and records Date.now()), and the time until every run completed.
 */
export async function runFanout(url: string, sizes: number[], report: (r: ModeResult) => void): Promise<void> {
  const observer = new pg.Client({ connectionString: url });
  await observer.connect();
  const h = await openHerald({ databaseUrl: url });
  const app = createApp(h.engine);
  let worker = h.engine.createWorker();
  try {
    for (const n of sizes) {
      await worker.stop();
      await resetHerald(h.db);
      worker = h.engine.createWorker();
      await worker.start();
      const key = `bench.fanout.${n}`;
      // Park n runs (untimed): n emits of bench.park, each starting a bench.waiter run.
      let next = 0;
      await Promise.all(
        Array.from({ length: 64 }, async () => {
          while (next < n) await h.engine.emit(parkBody(next++, key));
        }),
      );
      const parked = await until(observer, `SELECT count(*)::int AS n FROM herald_waiters WHERE event_id = '${key}'`, n, 180_000, 50);
      await until(observer, `SELECT (count(*) = 0)::int AS n FROM herald_jobs`, 1, 60_000, 50);
      if (parked < n) throw new Error(`only ${parked} of ${n} runs parked`);
      const rssBefore = process.memoryUsage.rss() / 2 ** 20;
      await observer.query('CHECKPOINT');

      const meter = await startMeter(observer);
      const wall0 = Date.now();
      const t0 = now();
      const res = await app.request(`/v2/notify/${key}`, {
        method: 'POST',
        body: JSON.stringify({ resolved: true }),
        headers: { authorization: `Bearer ${QSTASH_TOKEN}`, 'content-type': 'application/json' },
      });
      const notified = (await res.json()) as unknown[];
      const notifyMs = now() - t0;
      const done = await until(observer, `SELECT count(*)::int AS n FROM herald_runs WHERE state = 'completed'`, n, 120_000, 5);
      const allMs = now() - t0;
      const usage = await meter.stop();

      const { rows } = await observer.query<{ at: number; timeout: boolean }>(
        `SELECT (result->>'resumedAt')::float8 AS at, (result->>'timeout')::boolean AS timeout FROM herald_runs WHERE state = 'completed'`,
      );
      const lat = rows.map((r) => r.at - wall0);
      const waitersLeft = Number((await observer.query(`SELECT count(*)::int AS n FROM herald_waiters`)).rows[0].n);
      const verified =
        res.status !== 201 || notified.length !== n
          ? `notify answered ${res.status} with ${notified.length} waiters for ${n}`
          : done !== n || rows.length !== n
            ? `${done} of ${n} runs completed`
            : rows.some((r) => r.timeout)
              ? 'a run resumed by timeout'
              : waitersLeft !== 0
                ? `${waitersLeft} waiters left`
                : 'ok';
      report({
        subject: 'herald notify fan-out (code workflows, step.waitForEvent)',
        mode: `${n.toLocaleString('en-US')} waiters on one event id`,
        events: n,
        rate: (n * 1000) / allMs,
        p50: percentile(lat, 50),
        p99: percentile(lat, 99),
        ackP50: notifyMs,
        ackP99: notifyMs,
        usage,
        verified,
        extra: { notifyMs, allMs, maxResumeMs: Math.max(...lat), parkedRssMb: rssBefore },
      });
    }
  } finally {
    await worker.stop().catch(() => {});
    await h.close();
    await observer.end();
  }
}
