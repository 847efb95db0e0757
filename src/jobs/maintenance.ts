import type { Logger } from '../log.ts';
import type { Db, Queryable } from '../storage/db.ts';
import { runAsLeader } from '../storage/queries/maintenance.ts';
import { createFailureStreak, type FailureStreak } from './db-backoff.ts';

export interface MaintenanceTask {
  name: string;
  /** Minimum time between two runs of this task. */
  everyMs: number;
  run(tx: Queryable): Promise<number>;
}

/**
 * Leader-only periodic work. Every tick, each due task runs in a transaction of its own, on
 * whichever process takes that task's transaction-level advisory lock (the others skip it this
 * tick), so a task never runs in two processes at once and keeps running as long as any process
 * is alive.
 *
 * One transaction per task, not one for the tick: a task that fails (a bug, a constraint it trips
 * on, the database going away) rolls back alone, and the others — the rescue of expired leases,
 * the wait timeouts — still run. A failing task is retried after a capped, jittered backoff
 * (`retryDelayMs`, from the tick interval up to 10 s) rather than every tick, and says so once per
 * streak of failures in the log, not once a tick; it logs again when it recovers.
 */
export function createMaintenance(db: Db, tasks: MaintenanceTask[], log: Logger, tickMs = 1_000) {
  const lastRun = new Map<string, number>();
  const streaks = new Map<string, FailureStreak>(
    tasks.map((t) => [
      t.name,
      createFailureStreak({
        baseMs: tickMs,
        capMs: Math.max(tickMs, 10_000),
        log,
        about: { task: t.name },
        say: { failed: 'maintenance task failed; retrying with backoff', again: 'maintenance task failed again', recovered: 'maintenance task recovered' },
      }),
    ]),
  );
  let current: Promise<void> = Promise.resolve();
  let busy = false;

  async function runTask(t: MaintenanceTask, now: number): Promise<void> {
    try {
      let n = 0;
      await runAsLeader(db, `herald.maintenance.${t.name}`, async (tx) => {
        n = await t.run(tx);
      });
      lastRun.set(t.name, now);
      if (n > 0) log.info({ task: t.name, count: n }, 'maintenance');
      streaks.get(t.name)!.succeeded();
    } catch (err) {
      streaks.get(t.name)!.failed(err);
    }
  }

  return {
    tick(): Promise<void> {
      if (busy) return current;
      busy = true;
      current = (async () => {
        try {
          const now = Date.now();
          const due = tasks.filter(
            (t) => now - (lastRun.get(t.name) ?? 0) >= t.everyMs && now >= streaks.get(t.name)!.retryAt,
          );
          // In order, one after another: the rescue of expired leases first, as before.
          for (const t of due) await runTask(t, now);
        } finally {
          busy = false;
        }
      })();
      return current;
    },
    idle: () => current,
  };
}
