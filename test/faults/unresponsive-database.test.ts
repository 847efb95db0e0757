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
import {
  CLIENT_TIMEOUT_MS,
  SIGNING_SECRET,
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
  tail,
  timeline,
  type Herald,
} from './emit-load.ts';

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
const READY_BOUND_MS = 3000;
const RECOVERY_BOUND_MS = 10_000;
const AFTER_RECOVERY_MS = 1000;

const cleanups: (() => Promise<unknown>)[] = [];
after(async () => {
  await stopAllLoads();
  for (const c of cleanups.reverse()) await c().catch(() => {});
});

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
  cleanups.push(() => p.kill('SIGKILL'));
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
  cleanups.push(() => silent.close());
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
  cleanups.push(() => db.drop());
  const direct = new URL(db.url!);
  const proxy: TcpProxy = await startTcpProxy({ host: direct.hostname, port: Number(direct.port || 5432) });
  cleanups.push(() => proxy.close());
  const herald: Herald = await startHeraldOn(viaProxy(db.url!, proxy));
  cleanups.push(() => herald.proc.kill('SIGKILL'));
  const tenant = await seedTenant(db.url!);
  const problems: string[] = [];
  const h = herald;
  const t0 = Date.now();
  const phases: Record<string, number> = {};
  const phase = (name: string) => (phases[name] = Date.now() - t0);

  const load = startLoad(h.url, tenant, RATE, 'blackhole');
  await sleep(WARMUP_MS);
  proxy.cut('blackhole');
  const cutAt = Date.now();
  phase('blackholed');
  const probes: { path: string; status: number | string; ms: number }[] = [];
  const openThroughProxy: number[] = [];
  while (Date.now() - cutAt < BLACKHOLE_MS) {
    openThroughProxy.push(proxy.open);
    await Promise.all(
      ['/healthz', '/readyz'].map(async (path) => {
        const s = Date.now();
        const status = await fetch(`${h.url}${path}`, { signal: AbortSignal.timeout(READY_BOUND_MS) }).then(
          (r) => r.status,
          (e: Error) => (e.name === 'TimeoutError' ? 'hung' : 'failed'),
        );
        probes.push({ path, status, ms: Date.now() - s });
      }),
    );
    await sleep(500);
  }
  proxy.restore();
  const restoredAt = Date.now();
  phase('restored');

  let recoveredAt: number | undefined;
  while (Date.now() - restoredAt < RECOVERY_BOUND_MS && h.alive()) {
    const ok = load.firsts().filter((a) => a.sentAt >= restoredAt && a.status === 200);
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

  // Requests that met the blackhole early enough that herald's bounds, not the restore, must end them.
  const mustBe503 = firsts.filter((a) => a.sentAt >= cutAt && a.sentAt < restoredAt - BLACKHOLE_ANSWER_BOUND_MS);
  const bad503 = mustBe503.filter((a) => a.status !== 503 || !a.retryAfter || a.answeredAt - a.sentAt > BLACKHOLE_ANSWER_BOUND_MS);
  if (!mustBe503.length) problems.push('no request was sent early in the blackhole (the load did not run)');
  if (bad503.length) {
    problems.push(
      `${bad503.length} of ${mustBe503.length} requests sent into the blackhole were not answered 503 + Retry-After within ${BLACKHOLE_ANSWER_BOUND_MS} ms:\n${examples(bad503)}`,
    );
  }
  const bad = firsts.filter((a) => !(a.status === 200 || ((a.status === 503 || a.status === 429) && a.retryAfter)));
  if (bad.length) problems.push(`${bad.length} answers other than 200 or 503/429 + Retry-After (hung = no answer within ${CLIENT_TIMEOUT_MS} ms):\n${examples(bad)}`);
  const health = probes.filter((p) => p.path === '/healthz' && p.status !== 200);
  const ready = probes.filter((p) => p.path === '/readyz' && p.status !== 503);
  if (health.length) problems.push(`/healthz during the blackhole: ${JSON.stringify(health.slice(0, 5))}`);
  if (ready.length) problems.push(`/readyz during the blackhole was not a 503 within ${READY_BOUND_MS} ms: ${JSON.stringify(ready.slice(0, 5))}`);
  if (!h.alive()) problems.push(h.death());
  else if (recoveredAt === undefined) problems.push(`no 200 within ${RECOVERY_BOUND_MS} ms of the database path being restored`);

  const unacknowledged = records.filter((r) => firstAttempt(r).status !== 200).length;
  // Before any retry: requests answered with an error whose write committed anyway (outcome unknown).
  const committedUnacknowledged = (await ledger(db.url!, records)).storedUnacknowledged;
  const stillFailing = h.alive() ? await retryUnacknowledged(h.url, records) : records.filter((r) => r.attempts[0]!.status !== 200);
  if (stillFailing.length) {
    problems.push(`${stillFailing.length} requests still not acknowledged after retries:\n${examples(stillFailing.map((r) => r.attempts[0]!))}`);
  }
  phase('retried');
  const l = await ledger(db.url!, records);
  if (l.lost) problems.push(`${l.lost} acknowledged emits lost`);
  if (l.duplicated) problems.push(`${l.duplicated} keys stored more than once`);
  if (l.mismatched) problems.push(`${l.mismatched} keys answered 200 with an eventId other than the stored one`);
  const worker = h.alive() ? await expansion(db.url!, 15_000) : undefined;
  if (worker && (worker.pending || worker.missingRows)) {
    problems.push(`the worker did not resume: ${worker.pending} of ${worker.events} events unexpanded, ${worker.missingRows} without their inbox rows after 15 s`);
  }
  phase('expanded');

  const statuses = tally(firsts);
  const numbers = {
    test: 'blackhole',
    rate: RATE,
    offeredRate: load.offeredRate(),
    clientLoopLagMs: load.clientLag(),
    blackholeMs: restoredAt - cutAt,
    sent: l.sent,
    acknowledged: l.acknowledged,
    lost: l.lost,
    duplicated: l.duplicated,
    status503: statuses['503'] ?? 0,
    other5xx: firsts.filter((a) => typeof a.status === 'number' && a.status >= 500 && a.status !== 503).length,
    hungOrTransport: firsts.filter((a) => typeof a.status === 'string').length,
    statuses,
    maxAnswerMsInBlackhole: Math.max(0, ...firsts.filter((a) => a.sentAt >= cutAt && a.sentAt < restoredAt).map((a) => a.answeredAt - a.sentAt)),
    secondBySecond: timeline(firsts, cutAt - 1000, (recoveredAt ?? restoredAt) + 1000),
    proxyOpenConnections: openThroughProxy.join(','),
    readyzInBlackhole: tally(probes.filter((p) => p.path === '/readyz')),
    recoveryMsAfterRestore: recoveredAt === undefined ? null : recoveredAt - restoredAt,
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
