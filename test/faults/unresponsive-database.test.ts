/**
 * Issue 24, fault test 3: a database that accepts TCP and never answers (a hung server, a
 * half-open network path). Loopback only: a bare listener that never writes, and the test's own
 * TCP proxy (test/helpers/tcp-proxy.ts) in 'blackhole' mode between herald and its test database.
 *
 * What must hold: `herald start` against such a server gives up within its connect timeout with a
 * message that names DATABASE_URL or the address (today it waits forever); and a running herald
 * whose database turns into a blackhole answers 503 with Retry-After within a bound (no hang, no
 * 500), keeps /healthz at 200 and /readyz at a prompt 503, and answers 200 again once the path is
 * restored, with nothing acknowledged lost or doubled. The numbers are printed.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, test } from 'node:test';
import { BACKEND, createTestDb, type TestDb } from '../helpers/db.ts';
import { startHerald } from '../helpers/processes.ts';
import { startTcpProxy, viaProxy, type TcpProxy } from '../helpers/tcp-proxy.ts';
import { CLIENT_TIMEOUT_MS, SIGNING_SECRET, examples, startHeraldOn, tail, tally, timeline, type Herald } from './emit-load.ts';
import { FaultRun, cleanUpFaults, onCleanUp } from './fault-run.ts';

const skip = BACKEND !== 'postgres' ? "Postgres only: the pg driver's connect and statement timeouts (PGlite has no network)" : undefined;

/** The default of HERALD_DB_CONNECT_TIMEOUT_MS (not set here: an operator who sets nothing gets it). */
const CONNECT_TIMEOUT_MS = 5000;
/** Two start-ups side by side on a busy box differ by this much without any waiting. */
const CONNECT_SLACK_MS = 3000;
/**
 * Past this, `herald start` is taken to wait forever: its connect timeout plus the process's own
 * start-up (loading the sources through tsx takes ~1.5 s idle, ~4 s on this busy box).
 */
const START_FAIL_BOUND_MS = 20_000;
const RATE = 100;
const WARMUP_MS = 1000;
const BLACKHOLE_MS = 8000;
/**
 * A request that meets the blackhole must be answered 503 within this: herald's own bounds (connect,
 * statement, flush and acquire timeouts) must end its wait, not the client's patience.
 */
const BLACKHOLE_ANSWER_BOUND_MS = 6000;
/**
 * For this long after the cut herald cannot yet tell a database that stopped answering from one
 * slowed by load: a write in flight counts as the database's fault once none has completed for
 * half of HERALD_INTAKE_MAX_WAIT_MS (default 1000 ms). An emit refused meanwhile because the
 * emits-in-progress limit is full (a loaded box keeps it low) may be told 429 + Retry-After; every
 * later one must be 503.
 */
const UNDECIDED_MS = 1000;
const READY_BOUND_MS = 3000;
const RECOVERY_BOUND_MS = 10_000;
const AFTER_RECOVERY_MS = 1000;

after(cleanUpFaults);

/** A server that accepts TCP connections and never writes a byte. */
async function silentServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Runs `herald start` against `databaseUrl` until it exits or `bound` passes; how long it took. */
async function startAgainst(databaseUrl: string, bound: number) {
  const started = Date.now();
  const p = startHerald(['start'], {
    DATABASE_URL: databaseUrl,
    REQUEST_SIGNING_SECRET: SIGNING_SECRET,
    JWT_SECRET: 'x'.repeat(32),
    HOST: '127.0.0.1',
    PORT: '0',
    NODE_ENV: 'production',
  });
  onCleanUp(() => p.kill('SIGKILL'));
  const exited = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), bound);
    p.child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
  if (!exited) await p.kill('SIGKILL');
  return { p, exited, ms: Date.now() - started };
}

test('herald start against a server that accepts TCP and never answers fails with a clear message within the connect timeout', { skip, timeout: 60_000 }, async (t) => {
  const silent = await silentServer();
  onCleanUp(() => silent.close());
  const closed = await silentServer();
  const closedPort = closed.port;
  await closed.close(); // a port nothing listens on: refused at once
  // The same start against a refused port, side by side, gives the process's own start-up time:
  // the difference is the time spent waiting for the silent server.
  const [hung, refused] = await Promise.all([
    startAgainst(`postgres://postgres@127.0.0.1:${silent.port}/herald`, START_FAIL_BOUND_MS),
    startAgainst(`postgres://postgres@127.0.0.1:${closedPort}/herald`, START_FAIL_BOUND_MS),
  ]);
  const numbers = {
    test: 'start-against-silent-server',
    exited: hung.exited,
    exitCode: hung.p.child.exitCode,
    msToExit: hung.exited ? hung.ms : null,
    msToExitWhenRefused: refused.exited ? refused.ms : null,
    waitedForTheSilentServerMs: hung.exited && refused.exited ? hung.ms - refused.ms : null,
    connectTimeoutMs: CONNECT_TIMEOUT_MS,
  };
  t.diagnostic(`fault numbers: ${JSON.stringify(numbers)}`);
  console.log(`fault numbers: ${JSON.stringify(numbers)}`);
  if (!hung.exited) {
    assert.fail(`herald start was still waiting for the database after ${START_FAIL_BOUND_MS} ms (no connect timeout); its output:\n${tail(hung.p.output(), 20)}`);
  }
  assert.notEqual(hung.p.child.exitCode, 0, `herald start exited 0 without a database; output:\n${tail(hung.p.output(), 20)}`);
  const out = hung.p.output();
  assert.ok(
    out.includes('DATABASE_URL') || out.includes(`127.0.0.1:${silent.port}`),
    `the message names neither DATABASE_URL nor the address 127.0.0.1:${silent.port}:\n${tail(out, 20)}`,
  );
  if (refused.exited) {
    assert.ok(
      hung.ms - refused.ms <= CONNECT_TIMEOUT_MS + CONNECT_SLACK_MS,
      `herald start waited ${hung.ms - refused.ms} ms longer for a silent server than for a refused port: more than its connect timeout (${CONNECT_TIMEOUT_MS} ms)`,
    );
  }
});

test('a running herald whose database stops answering (blackhole) answers 503 within a bound and recovers when it is back', { skip, timeout: 90_000 }, async (t) => {
  const db: TestDb = await createTestDb({ migrate: false });
  onCleanUp(() => db.drop());
  const direct = new URL(db.url!);
  const proxy: TcpProxy = await startTcpProxy({ host: direct.hostname, port: Number(direct.port || 5432) });
  onCleanUp(() => proxy.close());
  const herald: Herald = await startHeraldOn(viaProxy(db.url!, proxy));
  onCleanUp(() => herald.proc.kill('SIGKILL'));
  const run = await FaultRun.start(herald, db.url!, { rate: RATE, label: 'blackhole', warmupMs: WARMUP_MS });

  proxy.cut('blackhole');
  const cutAt = Date.now();
  run.phase('blackholed');
  const openThroughProxy: number[] = [];
  const probes = await run.probeFor(BLACKHOLE_MS, READY_BOUND_MS, 500, () => openThroughProxy.push(proxy.open));
  proxy.restore();
  const restoredAt = Date.now();
  run.phase('restored');

  const { recoveredAt, records, firsts } = await run.recoverAndStop(restoredAt, RECOVERY_BOUND_MS, AFTER_RECOVERY_MS);

  // Requests that met the blackhole early enough that herald's bounds, not the restore, must end them.
  const mustBe503 = firsts.filter((a) => a.sentAt >= cutAt && a.sentAt < restoredAt - BLACKHOLE_ANSWER_BOUND_MS);
  const refusedAsItShould = (a: (typeof firsts)[number]) =>
    (a.status === 503 || (a.status === 429 && a.sentAt < cutAt + UNDECIDED_MS)) && a.retryAfter && a.answeredAt - a.sentAt <= BLACKHOLE_ANSWER_BOUND_MS;
  const bad503 = mustBe503.filter((a) => !refusedAsItShould(a));
  if (!mustBe503.length) run.problems.push('no request was sent early in the blackhole (the load did not run)');
  if (bad503.length) {
    run.problems.push(
      `${bad503.length} of ${mustBe503.length} requests sent into the blackhole were not answered 503 + Retry-After within ${BLACKHOLE_ANSWER_BOUND_MS} ms (or 429 in its first ${UNDECIDED_MS} ms):\n${examples(bad503)}`,
    );
  }
  run.checkAnswers(firsts, ` (hung = no answer within ${CLIENT_TIMEOUT_MS} ms)`);
  run.checkProbes(probes, 'during the blackhole', READY_BOUND_MS);
  run.checkRecovered(recoveredAt, RECOVERY_BOUND_MS, 'the database path being restored');
  const { l, retried } = await run.retryAndCount(records);
  const worker = await run.checkWorker('resume');
  run.phase('expanded');

  run.report(t, 'blackhole', {
    blackholeMs: restoredAt - cutAt,
    ...run.outcomes(l, firsts),
    maxAnswerMsInBlackhole: Math.max(0, ...firsts.filter((a) => a.sentAt >= cutAt && a.sentAt < restoredAt).map((a) => a.answeredAt - a.sentAt)),
    secondBySecond: timeline(firsts, cutAt - 1000, (recoveredAt ?? restoredAt) + 1000),
    proxyOpenConnections: openThroughProxy.join(','),
    readyzInBlackhole: tally(probes.filter((p) => p.path === '/readyz')),
    recoveryMsAfterRestore: recoveredAt === undefined ? null : recoveredAt - restoredAt,
    ...retried,
    worker: worker ?? 'process dead',
  });
});
