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
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { BACKEND } from '../helpers/db.ts';
import { clusterUnavailable, startCluster, type Cluster } from '../helpers/cluster.ts';
import {
  examples,
  expansion,
  firstAttempt,
  ledger,
  retryUnacknowledged,
  seedTenant,
  sleep,
  startHeraldOn,
  startLoad,
  stopAllLoads,
  tally,
  heraldComplaints,
  timeline,
  withClient,
  type Herald,
} from './emit-load.ts';

const skip = BACKEND !== 'postgres' ? 'Postgres only: terminates server backends (PGlite has none)' : clusterUnavailable();

const RATE = 250;
const WARMUP_MS = 1000;
const KILL_ROUNDS = 8;
const KILL_EVERY_MS = 400;
/** After the last termination, herald must answer 200 within this. */
const RECOVERY_BOUND_MS = 10_000;
const AFTER_RECOVERY_MS = 1000;

let cluster: Cluster | undefined;
let herald: Herald | undefined;
after(async () => {
  await stopAllLoads();
  await herald?.proc.kill('SIGKILL');
  await cluster?.remove();
});

test('herald backends terminated repeatedly under emit load: the process lives, nothing acknowledged is lost or doubled', { skip, timeout: 90_000 }, async (t) => {
  cluster = await startCluster({ databases: ['herald'] });
  const dbUrl = cluster.url('herald');
  herald = await startHeraldOn(dbUrl);
  const tenant = await seedTenant(dbUrl);
  const problems: string[] = [];
  const h = herald;
  const t0 = Date.now();
  const phases: Record<string, number> = {};
  const phase = (name: string) => (phases[name] = Date.now() - t0);

  const load = startLoad(h.url, tenant, RATE, 'terminate');
  await sleep(WARMUP_MS);

  // The killer sits in another database, so it never terminates itself; only herald's database's backends go.
  const terminated: { n: number; atMs: number }[] = [];
  await withClient(cluster.url('postgres'), async (c) => {
    for (let i = 0; i < KILL_ROUNDS && h.alive(); i++) {
      const r = await c.query<{ n: number }>(
        `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int AS n
           FROM pg_stat_activity WHERE datname = 'herald' AND pid <> pg_backend_pid()`,
      );
      terminated.push({ n: r.rows[0]!.n, atMs: Date.now() - t0 });
      await sleep(KILL_EVERY_MS);
    }
  });
  const lastKillAt = Date.now();
  phase('killsDone');

  let recoveredAt: number | undefined;
  while (Date.now() - lastKillAt < RECOVERY_BOUND_MS && h.alive()) {
    const ok = load.firsts().filter((a) => a.sentAt >= lastKillAt && a.status === 200);
    if (ok.length) {
      recoveredAt = Math.min(...ok.map((a) => a.answeredAt));
      break;
    }
    await sleep(50);
  }
  if (recoveredAt !== undefined) await sleep(AFTER_RECOVERY_MS);
  phase('loadStopping');
  const records = await load.stop();
  phase('loadStopped');
  const firsts = records.map(firstAttempt);

  const bad = firsts.filter((a) => !(a.status === 200 || ((a.status === 503 || a.status === 429) && a.retryAfter)));
  if (bad.length) problems.push(`${bad.length} answers other than 200 or 503/429 + Retry-After:\n${examples(bad)}`);
  if (!h.alive()) problems.push(h.death());
  else if (recoveredAt === undefined) problems.push(`no 200 within ${RECOVERY_BOUND_MS} ms of the last termination`);

  const unacknowledged = records.filter((r) => firstAttempt(r).status !== 200).length;
  // Before any retry: requests answered with an error whose write committed anyway (outcome unknown).
  const committedUnacknowledged = (await ledger(dbUrl, records)).storedUnacknowledged;
  const stillFailing = h.alive() ? await retryUnacknowledged(h.url, records) : records.filter((r) => r.attempts[0]!.status !== 200);
  if (stillFailing.length) {
    problems.push(`${stillFailing.length} requests still not acknowledged after retries:\n${examples(stillFailing.map((r) => r.attempts[0]!))}`);
  }

  phase('retried');
  const l = await ledger(dbUrl, records);
  if (l.lost) problems.push(`${l.lost} acknowledged emits lost`);
  if (l.duplicated) problems.push(`${l.duplicated} keys stored more than once`);
  if (l.mismatched) problems.push(`${l.mismatched} keys answered 200 with an eventId other than the stored one`);

  const worker = h.alive() ? await expansion(dbUrl, 15_000) : undefined;
  if (worker && (worker.pending || worker.missingRows)) {
    problems.push(`the worker did not keep up: ${worker.pending} of ${worker.events} events unexpanded, ${worker.missingRows} without their inbox rows after 15 s`);
  }

  phase('expanded');
  const statuses = tally(firsts);
  const numbers = {
    test: 'terminated-backends',
    rate: RATE,
    offeredRate: load.offeredRate(),
    clientLoopLagMs: load.clientLag(),
    terminatedPerRound: terminated,
    sent: l.sent,
    acknowledged: l.acknowledged,
    lost: l.lost,
    duplicated: l.duplicated,
    status503: statuses['503'] ?? 0,
    other5xx: firsts.filter((a) => typeof a.status === 'number' && a.status >= 500 && a.status !== 503).length,
    hungOrTransport: firsts.filter((a) => typeof a.status === 'string').length,
    statuses,
    secondBySecond: timeline(firsts, firsts[0]?.sentAt ?? 0, (recoveredAt ?? lastKillAt) + 1000),
    recoveryMsAfterLastTermination: recoveredAt === undefined ? null : recoveredAt - lastKillAt,
    unacknowledgedRetried: unacknowledged,
    committedThoughNotAcknowledged: committedUnacknowledged,
    stillUnacknowledgedAfterRetries: stillFailing.length,
    worker: worker ?? 'process dead',
    heraldAlive: h.alive(),
    phasesMs: phases,
  };
  t.diagnostic(`fault numbers: ${JSON.stringify(numbers)}`);
  console.log(`fault numbers: ${JSON.stringify(numbers)}`);

  if (problems.length) {
    problems.push(`herald's warnings and errors (times from the start of the load):\n${heraldComplaints(h.proc.output(), t0)}`);
    assert.fail(`${problems.length - 1} problems:\n\n${problems.join('\n\n')}`);
  }
});
