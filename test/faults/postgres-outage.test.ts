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
import { after, test } from 'node:test';
import { BACKEND } from '../helpers/db.ts';
import { clusterUnavailable } from '../helpers/cluster.ts';
import { CLIENT_TIMEOUT_MS, RECIPIENTS_PER_EVENT, examples, firstAttempt, inboxRowsOfEventsAfter, tally, timeline } from './emit-load.ts';
import { FaultRun, cleanUpFaults, heraldOnPrivateCluster } from './fault-run.ts';

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

after(cleanUpFaults);

test('Postgres stopped (-m immediate) under emit load and started again: 503s while down, no loss, no duplicates, recovery without a restart', { skip, timeout: 90_000 }, async (t) => {
  const { cluster, dbUrl, herald: h } = await heraldOnPrivateCluster();
  const run = await FaultRun.start(h, dbUrl, { rate: RATE, label: 'outage', warmupMs: WARMUP_MS });

  await cluster.crash();
  const downAt = Date.now();
  run.phase('postgresDown');
  // Probes while down: liveness stays 200, readiness answers 503 promptly.
  const probes = await run.probeFor(DOWN_MS, READY_BOUND_MS, 300);
  const restartAt = Date.now();
  await cluster.start();
  const upAt = Date.now();
  run.phase('postgresBack');

  // Recovery: the first 200 to a request sent after Postgres accepted connections again.
  const { recoveredAt, records, firsts } = await run.recoverAndStop(upAt, RECOVERY_BOUND_MS, AFTER_RECOVERY_MS);

  // Every answer while down: 503, Retry-After, says the database is unavailable, within the bound.
  const whileDown = firsts.filter((a) => a.sentAt >= downAt && a.sentAt < restartAt);
  const badDown = whileDown.filter(
    (a) => a.status !== 503 || !a.retryAfter || !/database/i.test(a.body) || a.answeredAt - a.sentAt > DOWN_ANSWER_BOUND_MS,
  );
  if (!whileDown.length) run.problems.push('no request was sent while Postgres was down (the load did not run)');
  if (badDown.length) {
    run.problems.push(
      `${badDown.length} of ${whileDown.length} answers while Postgres was down were not a prompt 503 + Retry-After naming the database:\n${examples(badDown)}`,
    );
  }
  run.checkAnswers(firsts);
  run.checkProbes(probes, 'while down', READY_BOUND_MS);
  run.checkRecovered(recoveredAt, RECOVERY_BOUND_MS, 'Postgres accepting connections again');

  const { l, retried } = await run.retryAndCount(records);
  const unstoredAcked = records.filter((r) => r.attempts.some((a) => a.status === 200) && l.rows.get(r.key)?.n !== 1);
  if (unstoredAcked.length) run.problems.push(`${unstoredAcked.length} acknowledged keys without exactly one stored event`);

  // The worker resumed: every event expanded, including those emitted after the outage.
  const afterRecovery = recoveredAt === undefined ? [] : records.filter((r) => firstAttempt(r).sentAt >= recoveredAt && firstAttempt(r).status === 200);
  const worker = await run.checkWorker('resume');
  const rowsAfter = await inboxRowsOfEventsAfter(dbUrl, afterRecovery.map((r) => firstAttempt(r).eventId!));
  if (afterRecovery.length && rowsAfter !== afterRecovery.length * RECIPIENTS_PER_EVENT) {
    run.problems.push(`events emitted after recovery: ${rowsAfter} inbox rows, expected ${afterRecovery.length * RECIPIENTS_PER_EVENT}`);
  }

  run.phase('expanded');
  run.report(t, 'postgres-outage', {
    downMs: restartAt - downAt,
    ...run.outcomes(l, firsts),
    maxAnswerMsWhileDown: Math.max(0, ...whileDown.map((a) => a.answeredAt - a.sentAt)),
    secondBySecond: timeline(firsts, downAt - 1000, (recoveredAt ?? upAt) + 1000),
    readyzWhileDown: tally(probes.filter((p) => p.path === '/readyz')),
    postgresRestartMs: upAt - restartAt,
    recoveryMsAfterPostgresBack: recoveredAt === undefined ? null : recoveredAt - upAt,
    ...retried,
    worker: worker ?? 'process dead',
    eventsAfterRecovery: afterRecovery.length,
    inboxRowsOfThem: rowsAfter,
    clientTimeoutMs: CLIENT_TIMEOUT_MS,
  });
});
