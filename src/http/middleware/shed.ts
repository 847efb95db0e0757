import { createMiddleware } from 'hono/factory';
import { DatabaseUnavailableError, OverloadedError } from '../../errors.ts';
import type { Engine } from '../../engine.ts';
import type { AppEnv } from '../context.ts';
import { databaseUnavailableResponse, overloadedResponse } from '../unavailable.ts';

/**
 * Load shedding for emit, before anything else is done for the request: no body read, no
 * signature checked, no JSON parsed. Under overload most requests must be refused, and a refusal
 * that costs as much as an acceptance leaves nothing for the accepted ones; answered here, a
 * refusal costs the HTTP parsing Node has already done and a small JSON answer. The request's body
 * is left unread: Node discards it so the keep-alive connection can carry the next request. An
 * unauthenticated client learns nothing from a refusal but that herald is busy or its database is
 * down.
 *
 * Two limits, either of which refuses:
 * - the intake's (engine.intake.refusal()): its writer's queue is full, its oldest emit has waited
 *   past half its bound, or the database has stopped answering — the database is the bottleneck;
 * - the process's: how many emits may be in progress at once (admitted, not yet answered). When
 *   this process's CPU is the bottleneck, the intake's queue stays short while requests wait for
 *   the event loop instead, where no queue can see them; the event loop's delay can. The limit is
 *   adapted like a congestion window (AIMD): while the loop's delay stays above
 *   HERALD_SHED_LOOP_DELAY_MS for SUSTAINED samples in a row, it shrinks by a fifth each sample;
 *   otherwise it grows back by a tenth. Fewer emits in progress means less work interleaved with
 *   each one, so the accepted ones stay fast, and the CPU they leave answers the refusals. Not on
 *   PGlite, whose database runs on the event loop itself.
 */

/** How often the event loop's delay is sampled (a timer due every SAMPLE_MS: how late it fires). */
const SAMPLE_MS = 10;
/** Samples in a row above the target before the limit shrinks: a GC pause or one long task is not overload. */
const SUSTAINED = 3;
const MIN_LIMIT = 8;
const MAX_LIMIT = 1024;

/** The event loop's delay, one sampler per process (the loop is the process's). */
const loop = {
  recent: [0, 0, 0] as number[],
  timer: undefined as NodeJS.Timeout | undefined,
  /** Samples taken so far (the limiters adapt once per new sample). */
  samples: 0,
};

function startSampler(): void {
  if (loop.timer) return;
  let due = performance.now() + SAMPLE_MS;
  loop.timer = setInterval(() => {
    const now = performance.now();
    loop.recent[loop.samples % SUSTAINED] = Math.max(0, now - due);
    loop.samples++;
    due = now + SAMPLE_MS;
  }, SAMPLE_MS);
  loop.timer.unref();
}

/** The smallest of the last SUSTAINED delays: above the target only if they all were. */
const sustainedDelay = () => Math.min(...loop.recent);

interface Limiter {
  limit: number;
  inFlight: number;
  /** loop.samples when the limit was last adapted. */
  adaptedAt: number;
}
const limiters = new WeakMap<Engine, Limiter>();

function limiterOf(engine: Engine): Limiter {
  let l = limiters.get(engine);
  if (!l) {
    startSampler();
    limiters.set(engine, (l = { limit: MAX_LIMIT, inFlight: 0, adaptedAt: loop.samples }));
  }
  return l;
}

/** Adapts the limit once per sample taken since the last time (a refusal or an admission asks). */
function adapt(l: Limiter, targetMs: number): void {
  const pending = loop.samples - l.adaptedAt;
  if (pending <= 0) return;
  l.adaptedAt = loop.samples;
  if (sustainedDelay() > targetMs) l.limit = Math.max(MIN_LIMIT, l.limit * 0.8 ** Math.min(pending, 5));
  else l.limit = Math.min(MAX_LIMIT, l.limit * 1.1 ** Math.min(pending, 20) + 1);
}

const busy = new OverloadedError('herald is overloaded: too many emits in progress; retry later', 1);

export const shedEmits = createMiddleware<AppEnv>(async (c, next) => {
  const engine = c.get('engine');
  const refusal = engine.intake.refusal();
  if (refusal instanceof OverloadedError) return overloadedResponse(c, refusal);
  if (refusal instanceof DatabaseUnavailableError) return databaseUnavailableResponse(c, refusal);
  if (refusal) throw refusal;
  const targetMs = engine.settings.shedLoopDelayMs;
  // PGlite runs the database on this event loop: its delay is the database's work, not requests
  // waiting, and a small limit would only break up the group commits that make PGlite fast.
  if (targetMs === 0 || engine.db.kind === 'pglite') return next();
  const l = limiterOf(engine);
  adapt(l, targetMs);
  if (l.inFlight >= l.limit) return overloadedResponse(c, busy);
  l.inFlight++;
  try {
    await next();
  } finally {
    l.inFlight--;
  }
});
