import { graphileSubject } from './cases/graphile.ts';
import { runFanout } from './cases/fanout.ts';
import { runHttp } from './cases/herald-http.ts';
import { runInbox } from './cases/inbox.ts';
import { runOverload } from './cases/overload.ts';
import { countNotifies, heraldSubject } from './cases/herald-queue.ts';
import { pgbossSubject } from './cases/pgboss.ts';
import { runRaw } from './cases/raw.ts';
import { runSoak } from './cases/soak.ts';
import { drainMode, pacedMode, serialMode, streamMode, type QueueSubject } from './lib/queue-modes.ts';
import type { ModeResult } from './lib/result.ts';
import type { Sizes } from './lib/sizes.ts';

export interface SubjectContext {
  url: string;
  adminUrl: string;
  sizes: Sizes;
  report(r: ModeResult): void;
}

export interface Subject {
  /** Run once, in the first round, repeating its measurements itself (a costly setup, e.g. 1M rows). */
  once?: boolean;
  /** How long its process may take (default 5 min). */
  timeoutMs?(sizes: Sizes): number;
  run(ctx: SubjectContext): Promise<void>;
}

/**
 * One unmeasured stream (16 producers, the measured stream's size; verified, then discarded)
 * before a subject's first measured mode, so every subject — herald and the peers alike — is
 * measured warm (JIT-compiled, pool connections open, statements prepared), as a long-running
 * server is. Without it the first mode of each process carried the warm-up and the next ones did
 * not: the wake-ups comparison ran "on" cold and "off" warm, and herald's 16-producer stream ran
 * its first ~20,000 events partly unoptimised (8.4k/s vs 13.9k/s warm, same build).
 */
async function warmUp(s: QueueSubject, ctx: SubjectContext): Promise<void> {
  const r = await streamMode(s, 16, ctx.sizes.queue);
  if (r.verified !== 'ok') throw new Error(`${s.name}: warm-up failed: ${r.verified}`);
}

/** Peers: single-job streaming from 16 producers; herald also at 256 in flight. */
async function queueModes(s: QueueSubject, ctx: SubjectContext, stream: number[], drainN: number, minPacedSeconds = 0) {
  const q = { ...ctx.sizes.queue, drainN, paced: ctx.sizes.queue.paced.map((p) => ({ ...p, seconds: Math.max(p.seconds, minPacedSeconds) })) };
  try {
    await warmUp(s, ctx);
    for (const c of stream) ctx.report(await streamMode(s, c, q));
    for (const p of q.paced) ctx.report(await pacedMode(s, p.rate, p.seconds, q));
    ctx.report(await serialMode(s, q));
    ctx.report(await drainMode(s, q));
  } finally {
    await s.close();
  }
}

/** Every subject, in the order the table lists them. Each runs in its own process. */
export const SUBJECTS: Record<string, Subject> = {
  raw: { run: (ctx) => runRaw(ctx.url, ctx.sizes, ctx.report) },
  'graphile-default': { run: async (ctx) => queueModes(await graphileSubject(ctx.url, 'default'), ctx, [16], ctx.sizes.queue.drainN) },
  'graphile-batched': { run: async (ctx) => queueModes(await graphileSubject(ctx.url, 'batched'), ctx, [16], ctx.sizes.queue.drainN) },
  pgboss: { run: async (ctx) => queueModes(await pgbossSubject(ctx.url), ctx, [16], ctx.sizes.queue.drainN) },
  herald: {
    run: async (ctx) => queueModes(await heraldSubject(ctx.url), ctx, ctx.sizes.queue.stream, ctx.sizes.heraldDrainN, ctx.sizes.heraldPacedSeconds),
  },
  // Emits whose type starts a workflow: the handler is the run's first execution.
  'herald-runs': {
    async run(ctx) {
      const s = await heraldSubject(ctx.url, { name: 'herald workflow starts (engine.emit of a type that starts a run)', startsRuns: true });
      try {
        await warmUp(s, ctx);
        ctx.report(await streamMode(s, 16, ctx.sizes.queue));
        ctx.report(await serialMode(s, ctx.sizes.queue));
      } finally {
        await s.close();
      }
    },
  },
  'herald-wakeups': {
    async run(ctx) {
      for (const wakeups of [true, false]) {
        const s = await heraldSubject(ctx.url, { name: 'herald wake-ups (LISTEN/NOTIFY), engine.emit', env: { HERALD_JOB_POLL_MS: '50' }, wakeups });
        try {
          await warmUp(s, ctx);
          const counter = await countNotifies(ctx.url);
          const r = await streamMode(s, 16, ctx.sizes.queue);
          const notifies = await counter.stop();
          // Both sides poll every 50 ms (shipped: 1 s), so the difference is the wake-ups alone.
          r.mode = wakeups
            ? 'on (NOTIFY and in-memory wake-ups as shipped; 50 ms polling as off), 16 producers'
            : 'off (no NOTIFY, no in-memory wake-up; 50 ms polling), 16 producers';
          r.extra = { ...r.extra, notifiesPerEvent: notifies / r.events };
          if (!wakeups && s.rewrites() === 0) r.verified = 'could not switch wake-ups off: no pg_notify seen';
          ctx.report(r);
        } finally {
          await s.close();
        }
      }
    },
  },
  'herald-http': {
    run: (ctx) =>
      runHttp({ subject: 'herald HTTP emit (Postgres)', url: ctx.url, modes: ['workflow', 'direct'], n: ctx.sizes.http.n, clients: ctx.sizes.http.clients, maxMs: ctx.sizes.http.maxMs }, ctx.report),
  },
  'herald-pglite': {
    run: (ctx) =>
      runHttp({ subject: 'herald HTTP emit (embedded PGlite)', pglite: true, modes: ['workflow'], n: ctx.sizes.http.pgliteN, clients: ctx.sizes.http.clients, maxMs: ctx.sizes.http.maxMs }, ctx.report),
  },
  // 3× the measured capacity, open loop: what is accepted stays fast, the rest is shed with 429.
  'herald-overload': {
    once: true,
    timeoutMs: (sizes) => sizes.overload.seconds * 1000 + 300_000,
    run: (ctx) => runOverload({ url: ctx.url, clients: ctx.sizes.http.clients, ...ctx.sizes.overload }, ctx.report),
  },
  'herald-fanout': { run: (ctx) => runFanout(ctx.url, ctx.sizes.fanout, ctx.report) },
  'herald-inbox': { once: true, run: (ctx) => runInbox(ctx.url, ctx.sizes.inboxRows, ctx.sizes.inboxIterations, ctx.sizes.runs, ctx.report) },
  // Only with --soak (or --only herald-soak): 10 minutes is most of the full run's budget again.
  'herald-soak': {
    once: true,
    timeoutMs: (sizes) => sizes.soak.minutes * 60_000 + 300_000,
    run: (ctx) => runSoak({ url: ctx.url, minutes: ctx.sizes.soak.minutes, windowS: ctx.sizes.soak.windowS, clients: ctx.sizes.http.clients }, ctx.report),
  },
};
