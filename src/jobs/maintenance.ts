import { coerceError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Db, Queryable } from '../storage/db.ts';
import { runAsLeader } from '../storage/queries/maintenance.ts';

export interface MaintenanceTask {
  name: string;
  /** Minimum time between two runs of this task. */
  everyMs: number;
  run(tx: Queryable): Promise<number>;
}

/**
 * Leader-only periodic work. Every tick, each process tries a transaction-level advisory lock; the
 * one that gets it runs the due tasks and the others skip the tick, so a task never runs in two
 * processes at once and keeps running as long as any process is alive.
 */
export function createMaintenance(db: Db, tasks: MaintenanceTask[], log: Logger) {
  const lastRun = new Map<string, number>();
  let current: Promise<void> = Promise.resolve();
  let busy = false;
  return {
    tick(): Promise<void> {
      if (busy) return current;
      busy = true;
      current = (async () => {
        try {
          const now = Date.now();
          const due = tasks.filter((t) => now - (lastRun.get(t.name) ?? 0) >= t.everyMs);
          if (due.length === 0) return;
          await runAsLeader(db, 'herald.maintenance', async (tx) => {
            for (const t of due) {
              const n = await t.run(tx);
              lastRun.set(t.name, now);
              if (n > 0) log.info({ task: t.name, count: n }, 'maintenance');
            }
          });
        } catch (err) {
          log.warn({ err: coerceError(err).message }, 'maintenance failed; retrying next tick');
        } finally {
          busy = false;
        }
      })();
      return current;
    },
    idle: () => current,
  };
}
