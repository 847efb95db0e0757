/**
 * Issue 24, fault test 2: herald's backends terminated (`pg_terminate_backend`) again and again
 * under emit load while Postgres stays up — its pool's connections, its LISTEN connection, a
 * worker's transaction, whichever are open at that moment. On a private cluster of the test's
 * own, and only the backends of herald's database are terminated.
 *
 * What must hold: the process lives; every answer is a 200 or a 503 (429) with Retry-After (no 500,
 * no hang); nothing acknowledged is lost, nothing is stored twice, the retries with the same keys
 * are exact; herald answers 200 again after the last termination and the worker expands every
 * event. The numbers are printed.
 */
import { after, test } from 'node:test';
import { BACKEND } from '../helpers/db.ts';
import { clusterUnavailable } from '../helpers/cluster.ts';
import { sleep, timeline, withClient } from './emit-load.ts';
import { FaultRun, cleanUpFaults, heraldOnPrivateCluster } from './fault-run.ts';

const skip = BACKEND !== 'postgres' ? 'Postgres only: terminates server backends (PGlite has none)' : clusterUnavailable();

const RATE = 250;
const WARMUP_MS = 1000;
const KILL_ROUNDS = 8;
const KILL_EVERY_MS = 400;
/** After the last termination, herald must answer 200 within this. */
const RECOVERY_BOUND_MS = 10_000;
const AFTER_RECOVERY_MS = 1000;

after(cleanUpFaults);

test('herald backends terminated repeatedly under emit load: the process lives, nothing acknowledged is lost or doubled', { skip, timeout: 90_000 }, async (t) => {
  const { cluster, dbUrl, herald: h } = await heraldOnPrivateCluster();
  const run = await FaultRun.start(h, dbUrl, { rate: RATE, label: 'terminate', warmupMs: WARMUP_MS });

  // The killer sits in another database, so it never terminates itself; only herald's database's backends go.
  const terminated: { n: number; atMs: number }[] = [];
  await withClient(cluster.url('postgres'), async (c) => {
    for (let i = 0; i < KILL_ROUNDS && h.alive(); i++) {
      const r = await c.query<{ n: number }>(
        `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int AS n
           FROM pg_stat_activity WHERE datname = 'herald' AND pid <> pg_backend_pid()`,
      );
      terminated.push({ n: r.rows[0]!.n, atMs: Date.now() - run.t0 });
      await sleep(KILL_EVERY_MS);
    }
  });
  const lastKillAt = Date.now();
  run.phase('killsDone');

  const { recoveredAt, records, firsts } = await run.recoverAndStop(lastKillAt, RECOVERY_BOUND_MS, AFTER_RECOVERY_MS);
  run.checkAnswers(firsts);
  run.checkRecovered(recoveredAt, RECOVERY_BOUND_MS, 'the last termination');
  const { l, retried } = await run.retryAndCount(records);
  const worker = await run.checkWorker('keep up');

  run.phase('expanded');
  run.report(t, 'terminated-backends', {
    terminatedPerRound: terminated,
    ...run.outcomes(l, firsts),
    secondBySecond: timeline(firsts, firsts[0]?.sentAt ?? 0, (recoveredAt ?? lastKillAt) + 1000),
    recoveryMsAfterLastTermination: recoveredAt === undefined ? null : recoveredAt - lastKillAt,
    ...retried,
    worker: worker ?? 'process dead',
  });
});
