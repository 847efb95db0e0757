/**
 * Issue 24, fault test 1: Postgres stopped with `-m immediate` under emit load, then started again.
 * On a private cluster of the test's own (test/helpers/cluster.ts), never the shared server.
 *
 * What must hold: the herald process lives; every answer while the database is down is a 503 with
 * Retry-After that says so, within a bound (no 500, no hang); /healthz stays 200 and /readyz answers
 * 503 promptly; the same process answers 200 again once Postgres is back; no acknowledged emit is
 * lost and none is stored twice; retrying every failed request with its Idempotency-Key leaves
 * exactly one event per key; and the worker resumes (events emitted after the outage reach the
 * inbox). The numbers (acknowledged / lost / duplicated / 5xx / 503 / recovery time) are printed.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { BACKEND } from '../helpers/db.ts';
import { clusterUnavailable, startCluster, type Cluster } from '../helpers/cluster.ts';
import {
  CLIENT_TIMEOUT_MS,
  RECIPIENTS_PER_EVENT,
  examples,
  expansion,
  firstAttempt,
  inboxRowsOfEventsAfter,
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
  type Herald,
} from './emit-load.ts';

const skip = BACKEND !== 'postgres' ? 'Postgres only: stops and restarts a Postgres server (PGlite has none)' : clusterUnavailable();

const RATE = 250; // emits/s: modest, well under capacity, so what is measured is the outage
const WARMUP_MS = 1500;
const DOWN_MS = 3000;
/** An answer while the database is down comes at once (connections are refused): this is generous. */
const DOWN_ANSWER_BOUND_MS = 5000;
/** /readyz is a probe: an orchestrator gives it a couple of seconds (it took longer than 2 s in the probe). */
const READY_BOUND_MS = 3000;
/** After Postgres accepts connections again, herald must answer 200 within this (no restart). */
const RECOVERY_BOUND_MS = 10_000;
const AFTER_RECOVERY_MS = 1000;

let cluster: Cluster | undefined;
let herald: Herald | undefined;
after(async () => {
  await stopAllLoads();
  await herald?.proc.kill('SIGKILL');
  await cluster?.remove();
});

test('Postgres stopped (-m immediate) under emit load and started again: 503s while down, no loss, no duplicates, recovery without a restart', { skip, timeout: 90_000 }, async (t) => {
  cluster = await startCluster({ databases: ['herald'] });
  const dbUrl = cluster.url('herald');
  herald = await startHeraldOn(dbUrl);
  const tenant = await seedTenant(dbUrl);
  const problems: string[] = [];
  const h = herald;
  const t0 = Date.now();
  const phases: Record<string, number> = {};
  const phase = (name: string) => (phases[name] = Date.now() - t0);

  const load = startLoad(h.url, tenant, RATE, 'outage');
  await sleep(WARMUP_MS);

  await cluster.crash();
  const downAt = Date.now();
  phase('postgresDown');
  // Probes while down: liveness stays 200, readiness answers 503 promptly.
  const probes: { path: string; status: number | string; ms: number }[] = [];
  while (Date.now() - downAt < DOWN_MS) {
    for (const path of ['/healthz', '/readyz']) {
      const s = Date.now();
      const status = await fetch(`${h.url}${path}`, { signal: AbortSignal.timeout(READY_BOUND_MS) }).then(
        (r) => r.status,
        (e: Error) => (e.name === 'TimeoutError' ? 'hung' : 'failed'),
      );
      probes.push({ path, status, ms: Date.now() - s });
    }
    await sleep(300);
  }
  const restartAt = Date.now();
  await cluster.start();
  const upAt = Date.now();
  phase('postgresBack');

  // Recovery: the first 200 to a request sent after Postgres accepted connections again.
  let recoveredAt: number | undefined;
  while (Date.now() - upAt < RECOVERY_BOUND_MS && h.alive()) {
    const ok = load.firsts().filter((a) => a.sentAt >= upAt && a.status === 200);
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

  // Every answer while down: 503, Retry-After, says the database is unavailable, within the bound.
  const whileDown = firsts.filter((a) => a.sentAt >= downAt && a.sentAt < restartAt);
  const badDown = whileDown.filter(
    (a) => a.status !== 503 || !a.retryAfter || !/database/i.test(a.body) || a.answeredAt - a.sentAt > DOWN_ANSWER_BOUND_MS,
  );
  if (!whileDown.length) problems.push('no request was sent while Postgres was down (the load did not run)');
  if (badDown.length) {
    problems.push(
      `${badDown.length} of ${whileDown.length} answers while Postgres was down were not a prompt 503 + Retry-After naming the database:\n${examples(badDown)}`,
    );
  }
  // Over the whole run, only 200 and 503/429 with Retry-After (no 500, no hang, no reset).
  const bad = firsts.filter((a) => !(a.status === 200 || ((a.status === 503 || a.status === 429) && a.retryAfter)));
  if (bad.length) problems.push(`${bad.length} answers other than 200 or 503/429 + Retry-After:\n${examples(bad)}`);

  const health = probes.filter((p) => p.path === '/healthz' && p.status !== 200);
  const ready = probes.filter((p) => p.path === '/readyz' && p.status !== 503);
  if (health.length) problems.push(`/healthz while down: ${JSON.stringify(health.slice(0, 5))}`);
  if (ready.length) problems.push(`/readyz while down was not a 503 within ${READY_BOUND_MS} ms: ${JSON.stringify(ready.slice(0, 5))}`);

  if (!h.alive()) problems.push(h.death());
  else if (recoveredAt === undefined) problems.push(`no 200 within ${RECOVERY_BOUND_MS} ms of Postgres accepting connections again`);

  // The client's retries: every request not acknowledged is sent again with its key.
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
  const unstoredAcked = records.filter((r) => r.attempts.some((a) => a.status === 200) && l.rows.get(r.key)?.n !== 1);
  if (unstoredAcked.length) problems.push(`${unstoredAcked.length} acknowledged keys without exactly one stored event`);

  // The worker resumed: every event expanded, including those emitted after the outage.
  const afterRecovery = recoveredAt === undefined ? [] : records.filter((r) => firstAttempt(r).sentAt >= recoveredAt! && firstAttempt(r).status === 200);
  const worker = h.alive() ? await expansion(dbUrl, 15_000) : undefined;
  const rowsAfter = await inboxRowsOfEventsAfter(dbUrl, afterRecovery.map((r) => firstAttempt(r).eventId!));
  if (worker && (worker.pending || worker.missingRows)) {
    problems.push(`the worker did not resume: ${worker.pending} of ${worker.events} events unexpanded, ${worker.missingRows} without their inbox rows after 15 s`);
  }
  if (afterRecovery.length && rowsAfter !== afterRecovery.length * RECIPIENTS_PER_EVENT) {
    problems.push(`events emitted after recovery: ${rowsAfter} inbox rows, expected ${afterRecovery.length * RECIPIENTS_PER_EVENT}`);
  }

  phase('expanded');
  const statuses = tally(firsts);
  const numbers = {
    test: 'postgres-outage',
    rate: RATE,
    offeredRate: load.offeredRate(),
    clientLoopLagMs: load.clientLag(),
    downMs: restartAt - downAt,
    sent: l.sent,
    acknowledged: l.acknowledged,
    lost: l.lost,
    duplicated: l.duplicated,
    status503: statuses['503'] ?? 0,
    other5xx: firsts.filter((a) => typeof a.status === 'number' && a.status >= 500 && a.status !== 503).length,
    hungOrTransport: firsts.filter((a) => typeof a.status === 'string').length,
    statuses,
    maxAnswerMsWhileDown: Math.max(0, ...whileDown.map((a) => a.answeredAt - a.sentAt)),
    secondBySecond: timeline(firsts, downAt - 1000, (recoveredAt ?? upAt) + 1000),
    readyzWhileDown: tally(probes.filter((p) => p.path === '/readyz')),
    postgresRestartMs: upAt - restartAt,
    recoveryMsAfterPostgresBack: recoveredAt === undefined ? null : recoveredAt - upAt,
    unacknowledgedRetried: unacknowledged,
    committedThoughNotAcknowledged: committedUnacknowledged,
    stillUnacknowledgedAfterRetries: stillFailing.length,
    worker: worker ?? 'process dead',
    eventsAfterRecovery: afterRecovery.length,
    inboxRowsOfThem: rowsAfter,
    heraldAlive: h.alive(),
    phasesMs: phases,
    clientTimeoutMs: CLIENT_TIMEOUT_MS,
  };
  t.diagnostic(`fault numbers: ${JSON.stringify(numbers)}`);
  console.log(`fault numbers: ${JSON.stringify(numbers)}`);

  if (problems.length) {
    problems.push(`herald's warnings and errors (times from the start of the load):\n${heraldComplaints(h.proc.output(), t0)}`);
    assert.fail(`${problems.length - 1} problems:\n\n${problems.join('\n\n')}`);
  }
});
