import { randomUUID } from 'node:crypto';
import { performance as perf } from 'node:perf_hooks';
import { DatabaseUnavailableError, OverloadedError } from '../../errors.ts';
import type { Engine } from '../../engine.ts';
import { logRefusal, refusal } from '../unavailable.ts';
import { EMIT_PATH } from '../../signing.ts';
import { routedPathOf } from '../request-path.ts';

/**
 * Load shedding for emit, before anything else is done for the request: no routing, no body read,
 * no signature checked, no JSON parsed. Under overload most requests must be refused, and a refusal
 * that costs as much as an acceptance leaves nothing for the accepted ones; answered here, a
 * refusal costs the HTTP parsing Node has already done and a small JSON answer. The request's body
 * is left unread: Node discards it so the keep-alive connection can carry the next request. An
 * unauthenticated client learns nothing from a refusal but that herald is busy or its database is
 * down.
 *
 * Three reasons to refuse (429 + Retry-After):
 * - the intake's (engine.intake.refusal()): its writer's queue is full, its oldest emit has waited
 *   past half its bound, or (503) the database has stopped answering;
 * - too many emits in progress. The limit follows Little's law as a gradient controller does
 *   (Netflix's concurrency-limits): every SAMPLE_MS it is scaled by target / the accepted emits'
 *   recent time in the server (at most halved, at most +25 % and one), so that in progress =
 *   throughput × target: a burst is let in while emits stay fast, and once they slow down — a
 *   group commit that grows with the queue, a database that does not keep up — the excess is
 *   refused at once instead of waiting. The target is HERALD_SHED_TARGET_MS, or twice the fastest
 *   this server has recently been, or takes with the fewest emits in progress (a slow disk's fsync
 *   sets a floor no limit can go under, and a target below it would only shrink the group commits
 *   that make herald fast);
 * - the event loop runs late, busy with this process's own work (requests wait for its CPU before
 *   any handler sees them, where no count of emits in progress sees them): emits are refused at
 *   random, with odds that rise while the loop is later than the target and fall while it is not
 *   (integral control: the odds settle wherever the loop keeps to the target, so the process keeps
 *   some CPU to read and refuse every request promptly; odds that were a fixed function of the
 *   lateness settled with the loop 20–30 ms late and the server reading fewer requests a second
 *   than arrived). A loop that is late but mostly idle waited for a CPU held by something else (a
 *   busy neighbour, a container's quota): no refusal helps that, and the odds fall.
 * Not on PGlite, whose database runs on the event loop and writes one group commit at a time: its
 * loop is late and its emits slow by design (the intake's bounds still apply there).
 */

/** The control period: how often the loop's lateness is sampled and the limit adapted. */
export const SAMPLE_MS = 10;
/** Weight of the newest period in the smoothed signals (about the last three count). */
const ALPHA = 0.4;
export const MIN_LIMIT = 4;
export const MAX_LIMIT = 1024;
/**
 * How fast the remembered fastest time rises again per period while nothing is refused (~10 %/s):
 * it follows a disk that got slower, not an overload.
 */
const FLOOR_DRIFT = 1.001;

/** How far the refusal odds move per period, per target's worth of lateness above (or below) it. */
const ODDS_GAIN = 0.05;

/**
 * Control periods (with answered emits) in a row at MIN_LIMIT after which the floor may rise
 * towards the emits' time there, at most doubling each time. With a handful in progress little
 * queues for the group commit, so that time is mostly what the database takes now (a disk that
 * got slower since the floor was learnt), and holding the limit at its minimum would only shrink
 * the group commits that carry the throughput. Doubling at most, and only after a spell that lets
 * the smoothed time forget the overloaded periods, keeps a real overload from reopening the limit.
 */
const PINNED_PERIODS = 10;

/** The refusal odds for lateness never reach 1: a loop kept late by the worker still lets emits in. */
const MAX_LATE_ODDS = 0.95;

/**
 * Above this share of its time busy, the event loop's lateness is this process's own doing. Below
 * it, a late loop was not running: the process waited for a CPU that something else held (a
 * neighbour on the box, a container's CPU quota), and refusing emits would not give it one.
 */
const BUSY = 0.9;

/**
 * The event loop's lateness and how busy it was, smoothed; one sampler per process (the loop is
 * the process's).
 */
const loop = { late: 0, busy: 0, timer: undefined as NodeJS.Timeout | undefined };

function startSampler(): void {
  if (loop.timer) return;
  let due = performance.now() + SAMPLE_MS;
  let elu = perf.eventLoopUtilization();
  loop.timer = setInterval(() => {
    const now = performance.now();
    const next = perf.eventLoopUtilization();
    loop.late += ALPHA * (Math.max(0, now - due) - loop.late);
    loop.busy += ALPHA * (perf.eventLoopUtilization(next, elu).utilization - loop.busy);
    elu = next;
    due = now + SAMPLE_MS;
  }, SAMPLE_MS);
  loop.timer.unref();
}

export interface Limiter {
  limit: number;
  inFlight: number;
  periodStart: number;
  /** Time in the server of the accepted emits answered in this period. */
  periodSum: number;
  periodCount: number;
  /** Smoothed mean time in the server of accepted emits (ms; NaN before the first). */
  latency: number;
  /**
   * The smallest `latency` lately: what this server does unloaded. It rises slowly while nothing is
   * refused, and after a spell at MIN_LIMIT (PINNED_PERIODS).
   */
  floor: number;
  /** Whether the limit refused an emit this period (the floor must not then creep up to the overloaded latency). */
  refused: boolean;
  /** Periods in a row that ended at MIN_LIMIT (see PINNED_PERIODS). */
  pinned: number;
  /** The odds of refusing an emit for the event loop's lateness (see lateOdds). */
  lateOdds: number;
}
const limiters = new WeakMap<Engine, Limiter>();

export const newLimiter = (now: number): Limiter => ({
  limit: MAX_LIMIT,
  inFlight: 0,
  periodStart: now,
  periodSum: 0,
  periodCount: 0,
  latency: Number.NaN,
  floor: Number.NaN,
  refused: false,
  pinned: 0,
  lateOdds: 0,
});

function limiterOf(engine: Engine): Limiter {
  let l = limiters.get(engine);
  if (!l) {
    startSampler();
    limiters.set(engine, (l = newLimiter(performance.now())));
  }
  return l;
}

/** An accepted emit answered after `ms` in the server. */
export function answered(l: Limiter, ms: number): void {
  l.periodSum += ms;
  l.periodCount++;
}

/**
 * Once per period: the refusal odds for lateness move (lateOdds; `busy` is the loop's utilisation),
 * and if emits were answered, limit ← limit × target / latency (at most halved, at most +25 % and
 * one), `lateMs` (the event loop's lateness) taken off the latency first.
 */
export function adapt(l: Limiter, now: number, targetMs: number, lateMs: number, busy: number): void {
  const periods = Math.floor((now - l.periodStart) / SAMPLE_MS);
  if (periods < 1) return;
  l.periodStart = now;
  l.lateOdds = lateOdds(l.lateOdds, periods, lateMs, targetMs, busy);
  if (l.periodCount === 0) return; // nothing answered: nothing learnt (a stuck database is the intake's to detect)
  // The part of the emits' time this limit governs: beyond the event loop's own lateness, which
  // fewer emits in progress cannot shorten (the lateness has its own refusals, below).
  const mean = Math.max(0.1, l.periodSum / l.periodCount - lateMs);
  l.periodSum = 0;
  l.periodCount = 0;
  l.latency = Number.isNaN(l.latency) ? mean : l.latency + ALPHA * (mean - l.latency);
  l.floor = Number.isNaN(l.floor) ? l.latency : Math.min(l.latency, l.refused ? l.floor : l.floor * FLOOR_DRIFT);
  if (l.pinned >= PINNED_PERIODS) {
    l.floor = Math.max(l.floor, Math.min(l.latency, 2 * l.floor));
    l.pinned = 0;
  }
  l.refused = false;
  const ratio = Math.min(1.25, Math.max(0.5, Math.max(targetMs, 2 * l.floor) / l.latency));
  l.limit = Math.min(MAX_LIMIT, Math.max(MIN_LIMIT, l.limit * ratio + (ratio >= 1 ? 1 : 0)));
  l.pinned = l.limit === MIN_LIMIT ? l.pinned + 1 : 0;
}

/**
 * The odds of refusing an emit for the event loop's lateness, `periods` control periods after they
 * were `odds`: up by ODDS_GAIN for each target's worth the loop runs later than the target (at most
 * two), down as fast (at most one) per period while it is on time or late for want of a CPU rather
 * than through its own work (`busy`, the loop's utilisation, at most BUSY). They are updated when an
 * emit arrives: after a quiet spell they fall for every period missed, but rise by one period's step
 * only (one late sample after a pause is not a spell of lateness). At most MAX_LATE_ODDS.
 */
export function lateOdds(odds: number, periods: number, lateMs: number, targetMs: number, busy: number): number {
  const error = busy > BUSY ? Math.min(2, Math.max(-1, (lateMs - targetMs) / targetMs)) : -1;
  const steps = error < 0 ? Math.min(periods, 100) : 1;
  return Math.min(MAX_LATE_ODDS, Math.max(0, odds + ODDS_GAIN * error * steps));
}

const tooMany = new OverloadedError('herald is overloaded: too many emits in progress; retry later', 1);
const tooLate = new OverloadedError('herald is overloaded: its CPU is saturated; retry later', 1);

/** Hono's fetch: (request, env?, executionCtx?). */
type Fetch = (request: Request, ...rest: any[]) => Response | Promise<Response>;

/** The refusal as a Response, with no Hono context (it is answered before routing). */
function refuse(engine: Engine, request: Request, err: DatabaseUnavailableError | OverloadedError): Response {
  const given = request.headers.get('x-request-id');
  const requestId = given && /^[\w-]{1,64}$/.test(given) ? given : randomUUID();
  logRefusal(engine.log, err, EMIT_PATH, requestId);
  const r = refusal(err, EMIT_PATH);
  return new Response(JSON.stringify(r.body), {
    status: r.status,
    headers: { 'content-type': 'application/json', 'retry-after': r.retryAfter, 'x-request-id': requestId },
  });
}

/**
 * The app's fetch, with emits shed before routing: `POST /api/notifications/emit` is decided here
 * (a refusal costs ~42 µs of CPU where going through Hono's routing and middleware to refuse cost
 * ~57, measured on the two-core box of docs/BENCHMARKS.md: at three times the capacity, refusals
 * are most of the work). An admitted emit goes on through the app, counted in progress.
 */
export function withEmitShedding<F extends Fetch>(engine: Engine, fetch: F): F {
  const shedding: Fetch = (request, ...rest) => {
    if (request.method !== 'POST' || routedPathOf(request.url) !== EMIT_PATH) return fetch(request, ...rest);
    const intake = engine.intake.refusal();
    if (intake instanceof OverloadedError || intake instanceof DatabaseUnavailableError) return refuse(engine, request, intake);
    const targetMs = engine.settings.shedTargetMs;
    if (targetMs === 0 || engine.db.kind === 'pglite') return fetch(request, ...rest);
    const l = limiterOf(engine);
    const admitted = performance.now();
    adapt(l, admitted, targetMs, loop.late, loop.busy);
    if (l.inFlight >= l.limit) {
      l.refused = true;
      // Emits in progress that wait on a database which stopped answering are an outage: 503.
      return refuse(engine, request, engine.intake.unavailable() ?? tooMany);
    }
    if (l.lateOdds > 0 && Math.random() < l.lateOdds) return refuse(engine, request, tooLate);
    l.inFlight++;
    const settled = (res: Response) => {
      l.inFlight--;
      // Accepted emits only: a 400 or a dropped emit says nothing about the pace of accepted ones.
      if (res.status === 200) answered(l, performance.now() - admitted);
      return res;
    };
    return Promise.resolve(fetch(request, ...rest)).then(settled, (err: unknown) => {
      l.inFlight--;
      throw err;
    });
  };
  return shedding as F;
}
