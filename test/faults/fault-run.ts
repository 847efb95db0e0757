/**
 * The shape every fault test of issue 24 shares, around the fault it injects: herald under emit
 * load, the wait for its first 200 after the fault, the checks every fault must pass (only 200 or
 * 503/429 + Retry-After, the process lives, the client's retries leave nothing lost or doubled, the
 * worker expands every event), and the report (numbers printed, problems listed with herald's own
 * complaints). Each test file keeps only what is particular to its fault.
 */
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { startCluster, type Cluster } from '../helpers/cluster.ts';
import {
  examples,
  expansion,
  firstAttempt,
  heraldComplaints,
  ledger,
  retryUnacknowledged,
  seedTenant,
  sleep,
  startHeraldOn,
  startLoad,
  stopAllLoads,
  tally,
  type Attempt,
  type EmitRecord,
  type Herald,
  type Ledger,
  type Load,
} from './emit-load.ts';

/** What a fault test started (servers, processes): undone in reverse by `cleanUpFaults`. */
const cleanups: (() => Promise<unknown>)[] = [];
export const onCleanUp = (fn: () => Promise<unknown>) => void cleanups.push(fn);

/** For the files' after hooks: stops any load still running, then undoes what was started, newest first. */
export async function cleanUpFaults(): Promise<void> {
  await stopAllLoads();
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
}

/** A private cluster (never the shared server) with `herald start` on its 'herald' database; both undone by `cleanUpFaults`. */
export async function heraldOnPrivateCluster(): Promise<{ cluster: Cluster; dbUrl: string; herald: Herald }> {
  const cluster = await startCluster({ databases: ['herald'] });
  onCleanUp(() => cluster.remove());
  const dbUrl = cluster.url('herald');
  const herald = await startHeraldOn(dbUrl);
  onCleanUp(() => herald.proc.kill('SIGKILL'));
  return { cluster, dbUrl, herald };
}

export interface Probe {
  path: string;
  status: number | string;
  ms: number;
}

export class FaultRun {
  /** What went wrong, each with its evidence; the test fails with all of them at the end. */
  readonly problems: string[] = [];
  /** When each phase began, in ms from the start of the load. */
  readonly phases: Record<string, number> = {};

  private constructor(
    readonly herald: Herald,
    readonly databaseUrl: string,
    readonly rate: number,
    readonly load: Load,
    readonly t0: number,
  ) {}

  /** Seeds a tenant and emits at `rate` per second through `herald` for `warmupMs` before the fault. */
  static async start(herald: Herald, databaseUrl: string, opts: { rate: number; label: string; warmupMs: number }): Promise<FaultRun> {
    const tenant = await seedTenant(databaseUrl);
    const t0 = Date.now();
    const load = startLoad(herald.url, tenant, opts.rate, opts.label);
    await sleep(opts.warmupMs);
    return new FaultRun(herald, databaseUrl, opts.rate, load, t0);
  }

  phase(name: string): void {
    this.phases[name] = Date.now() - this.t0;
  }

  /**
   * Probes /healthz and /readyz every `pauseMs` for `ms` (each probe bounded by `boundMs`): what an
   * orchestrator saw during the fault. `eachRound` samples anything else alongside.
   */
  async probeFor(ms: number, boundMs: number, pauseMs: number, eachRound: () => void = () => {}): Promise<Probe[]> {
    const probes: Probe[] = [];
    const from = Date.now();
    while (Date.now() - from < ms) {
      eachRound();
      await Promise.all(
        ['/healthz', '/readyz'].map(async (path) => {
          const s = Date.now();
          const status = await fetch(`${this.herald.url}${path}`, { signal: AbortSignal.timeout(boundMs) }).then(
            (r) => r.status,
            (e: Error) => (e.name === 'TimeoutError' ? 'hung' : 'failed'),
          );
          probes.push({ path, status, ms: Date.now() - s });
        }),
      );
      await sleep(pauseMs);
    }
    return probes;
  }

  /** Liveness stays 200 and readiness answers 503 within `boundMs` all through the fault (`during` says when). */
  checkProbes(probes: Probe[], during: string, boundMs: number): void {
    const health = probes.filter((p) => p.path === '/healthz' && p.status !== 200);
    const ready = probes.filter((p) => p.path === '/readyz' && p.status !== 503);
    if (health.length) this.problems.push(`/healthz ${during}: ${JSON.stringify(health.slice(0, 5))}`);
    if (ready.length) this.problems.push(`/readyz ${during} was not a 503 within ${boundMs} ms: ${JSON.stringify(ready.slice(0, 5))}`);
  }

  /**
   * Waits (at most `boundMs`) for the first 200 to a request sent at `since` or later, lets the load
   * run `afterMs` more when there was one, then stops it. `recoveredAt` is when that 200 came.
   */
  async recoverAndStop(since: number, boundMs: number, afterMs: number): Promise<{ recoveredAt?: number; records: EmitRecord[]; firsts: Attempt[] }> {
    let recoveredAt: number | undefined;
    while (Date.now() - since < boundMs && this.herald.alive()) {
      const ok = this.load.firsts().filter((a) => a.sentAt >= since && a.status === 200);
      if (ok.length) {
        recoveredAt = Math.min(...ok.map((a) => a.answeredAt));
        break;
      }
      await sleep(50);
    }
    if (recoveredAt !== undefined) await sleep(afterMs);
    this.phase('loadStopping');
    const records = await this.load.stop();
    this.phase('loadStopped');
    return { recoveredAt, records, firsts: records.map(firstAttempt) };
  }

  /** Over the whole run, only 200 and 503/429 with Retry-After (no 500, no hang, no reset). */
  checkAnswers(firsts: Attempt[], note = ''): void {
    const bad = firsts.filter((a) => !(a.status === 200 || ((a.status === 503 || a.status === 429) && a.retryAfter)));
    if (bad.length) this.problems.push(`${bad.length} answers other than 200 or 503/429 + Retry-After${note}:\n${examples(bad)}`);
  }

  /** The process lived through the fault and answered 200 within `boundMs` of `what`. */
  checkRecovered(recoveredAt: number | undefined, boundMs: number, what: string): void {
    if (!this.herald.alive()) this.problems.push(this.herald.death());
    else if (recoveredAt === undefined) this.problems.push(`no 200 within ${boundMs} ms of ${what}`);
  }

  /**
   * The client's retries: every request not acknowledged is sent again with its key; then the
   * ledger: nothing acknowledged lost, nothing stored twice, every 200 names the stored event.
   */
  async retryAndCount(records: EmitRecord[]): Promise<{ l: Ledger; retried: Record<string, number> }> {
    const h = this.herald;
    const unacknowledged = records.filter((r) => firstAttempt(r).status !== 200).length;
    // Before any retry: requests answered with an error whose write committed anyway (outcome unknown).
    const committedUnacknowledged = (await ledger(this.databaseUrl, records)).storedUnacknowledged;
    const stillFailing = h.alive() ? await retryUnacknowledged(h.url, records) : records.filter((r) => r.attempts[0]!.status !== 200);
    if (stillFailing.length) {
      this.problems.push(`${stillFailing.length} requests still not acknowledged after retries:\n${examples(stillFailing.map((r) => r.attempts[0]!))}`);
    }
    this.phase('retried');
    const l = await ledger(this.databaseUrl, records);
    if (l.lost) this.problems.push(`${l.lost} acknowledged emits lost`);
    if (l.duplicated) this.problems.push(`${l.duplicated} keys stored more than once`);
    if (l.mismatched) this.problems.push(`${l.mismatched} keys answered 200 with an eventId other than the stored one`);
    return {
      l,
      retried: {
        unacknowledgedRetried: unacknowledged,
        committedThoughNotAcknowledged: committedUnacknowledged,
        stillUnacknowledgedAfterRetries: stillFailing.length,
      },
    };
  }

  /** The worker expands every stored event into its inbox rows within 15 s (`verb`: what it failed to do). */
  async checkWorker(verb: string): Promise<Awaited<ReturnType<typeof expansion>> | undefined> {
    const worker = this.herald.alive() ? await expansion(this.databaseUrl, 15_000) : undefined;
    if (worker && (worker.pending || worker.missingRows)) {
      this.problems.push(`the worker did not ${verb}: ${worker.pending} of ${worker.events} events unexpanded, ${worker.missingRows} without their inbox rows after 15 s`);
    }
    return worker;
  }

  /** The outcome counts every fault test prints. */
  outcomes(l: Ledger, firsts: Attempt[]) {
    const statuses = tally(firsts);
    return {
      sent: l.sent,
      acknowledged: l.acknowledged,
      lost: l.lost,
      duplicated: l.duplicated,
      status503: statuses['503'] ?? 0,
      other5xx: firsts.filter((a) => typeof a.status === 'number' && a.status >= 500 && a.status !== 503).length,
      hungOrTransport: firsts.filter((a) => typeof a.status === 'string').length,
      statuses,
    };
  }

  /**
   * Prints the run's numbers (framed by the load's and the process's) and fails with every problem
   * found, followed by herald's own warnings and errors.
   */
  report(t: TestContext, test: string, particular: Record<string, unknown>): void {
    const numbers = {
      test,
      rate: this.rate,
      offeredRate: this.load.offeredRate(),
      clientLoopLagMs: this.load.clientLag(),
      ...particular,
      heraldAlive: this.herald.alive(),
      phasesMs: this.phases,
    };
    t.diagnostic(`fault numbers: ${JSON.stringify(numbers)}`);
    console.log(`fault numbers: ${JSON.stringify(numbers)}`);
    if (this.problems.length) {
      this.problems.push(`herald's warnings and errors (times from the start of the load):\n${heraldComplaints(this.herald.proc.output(), this.t0)}`);
      assert.fail(`${this.problems.length - 1} problems:\n\n${this.problems.join('\n\n')}`);
    }
  }
}
