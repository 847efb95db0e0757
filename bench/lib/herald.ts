import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { resolveSettings } from '../../src/config/settings.ts';
import { codeRunHandler, createEngine, type Engine } from '../../src/engine.ts';
import { EXPAND_EVENT_JOB, eventIdsOf, expandEventsHandler } from '../../src/expansion/expand-job.ts';
import type { JobHandler, Worker } from '../../src/jobs/worker.ts';
import { silentLogger } from '../../src/log.ts';
import { compileRules } from '../../src/rules/compile.ts';
import { workflow } from '../../src/rules/define.ts';
import type { HeraldConfig } from '../../src/rules/types.ts';
import type { Db } from '../../src/storage/db.ts';
import { migrate } from '../../src/storage/migrate.ts';
import { openStorage } from '../../src/storage/open.ts';
import { RUN_JOB } from '../../src/storage/queries/runs.ts';

export const SIGNING_SECRET = 'bench-signing-secret-0123456789';
export const JWT_SECRET = 'bench-jwt-secret-0123456789-0123456789-abcdef';
export const QSTASH_TOKEN = 'bench-qstash-token-0123456789';
export const TENANT = '00000000-0000-7000-8000-00000000beef';
/** The 1,000 users the benchmark events go to (round robin). */
export const USERS = Array.from({ length: 1000 }, (_, i) => `00000000-0000-7000-8000-${String(i).padStart(12, '0')}`);

/**
 * The benchmark's rules: `bench.ping` has one in-app recipient named in the ctx, rendered from
 * Liquid templates like a real rule; `bench.park` starts a workflow that waits for a notify;
 * `bench.start` starts one that returns its input's seq at once.
 */
export const benchConfig: HeraldConfig = {
  defaultLocale: 'en',
  events: {
    'bench.ping': {
      schema: z.object({ tenantId: z.string().uuid(), userId: z.string().uuid(), seq: z.number().int(), item: z.string() }),
      recipients: (ctx: { userId: string }, to) => to.users(ctx.userId),
      inApp: {
        title: 'Item {{ ctx.item }} is ready',
        body: 'Benchmark event {{ ctx.seq }}: the item «{{ ctx.item }}» was processed for you.',
        type: 'info',
        actionUrl: '/items/{{ ctx.item }}',
        data: (ctx: { seq: number; item: string }) => ({ seq: ctx.seq, item: ctx.item }),
      },
    },
    'bench.park': { schema: z.object({ tenantId: z.string().uuid(), key: z.string(), seq: z.number().int() }) },
    'bench.start': { schema: z.object({ tenantId: z.string().uuid(), seq: z.number().int() }) },
  },
  workflows: {
    'bench.waiter': workflow<{ key: string }>({
      on: 'bench.park',
      async run(input, step) {
        const r = await step.waitForEvent('wait', input.key, { timeout: '1h' });
        return { resumedAt: Date.now(), timeout: r.timeout };
      },
    }),
    'bench.started': workflow<{ seq: number }>({
      on: 'bench.start',
      async run(input) {
        return input.seq;
      },
    }),
  },
};

export const pingBody = (seq: number) =>
  Buffer.from(JSON.stringify({ type: 'bench.ping', ctx: { tenantId: TENANT, userId: USERS[seq % USERS.length], seq, item: `it-${seq}` } }));

export const startBody = (seq: number) => Buffer.from(JSON.stringify({ type: 'bench.start', ctx: { tenantId: TENANT, seq } }));

export const parkBody = (seq: number, key: string) =>
  Buffer.from(JSON.stringify({ type: 'bench.park', ctx: { tenantId: TENANT, key, seq } }));

export interface BenchHerald {
  engine: Engine;
  db: Db;
  close(): Promise<void>;
}

/** herald with its default settings (pool, worker concurrency, polling), on Postgres or PGlite. */
export async function openHerald(opts: { databaseUrl?: string; dataDir?: string; env?: Record<string, string>; wrapDb?: (db: Db) => Db }): Promise<BenchHerald> {
  const settings = resolveSettings({
    REQUEST_SIGNING_SECRET: SIGNING_SECRET,
    JWT_SECRET,
    QSTASH_TOKEN,
    HERALD_LOG_LEVEL: 'silent',
    ...(opts.databaseUrl ? { DATABASE_URL: opts.databaseUrl } : {}),
    ...opts.env,
  });
  const raw = await openStorage({ databaseUrl: settings.databaseUrl, dataDir: opts.dataDir });
  await migrate(raw);
  const db = opts.wrapDb ? opts.wrapDb(raw) : raw;
  const engine = createEngine({ settings, db, rules: compileRules(benchConfig), log: silentLogger });
  return { engine, db, close: () => raw.close() };
}

/**
 * A worker with herald's own handlers, wrapped to report when the event-expansion handler starts
 * (by event id), when a code run's execution starts (by run id, if asked) and when each job
 * settles.
 */
export function trackedWorker(
  engine: Engine,
  onExpandStart: (eventId: string) => void,
  onSettled?: (job: { kind: string; payload: Record<string, unknown> }, outcome: string) => void,
  onRunStart?: (runId: string) => void,
): Worker {
  const expand = expandEventsHandler(engine.rules);
  const runCode = codeRunHandler(engine);
  const handlers: Record<string, JobHandler> = {
    [EXPAND_EVENT_JOB]: {
      run: (payload, ctx) => {
        for (const id of eventIdsOf(payload)) onExpandStart(id);
        return expand.run(payload, ctx);
      },
      batch: (tx, payloads) => {
        for (const id of payloads.flatMap(eventIdsOf)) onExpandStart(id);
        return expand.batch!(tx, payloads);
      },
    },
    [RUN_JOB.code]: {
      ...runCode,
      run: (payload, ctx) => {
        if (typeof payload.runId === 'string') onRunStart?.(payload.runId);
        return runCode.run(payload, ctx);
      },
    },
  };
  return engine.createWorker({ handlers, onSettled: (job, outcome) => onSettled?.(job, outcome) });
}

/** Empties herald's tables between modes (untimed). */
export async function resetHerald(db: Db): Promise<void> {
  await db.exec(
    `TRUNCATE notifications, herald_events, herald_jobs, herald_idempotency_keys, herald_runs, herald_waiters, herald_run_events CASCADE`,
  );
}

export const uniqueKey = () => `k_${randomUUID()}`;
