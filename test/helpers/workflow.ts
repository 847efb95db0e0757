import type { Worker } from '../../src/jobs/worker.ts';
import type { HeraldConfig } from '../../src/rules/types.ts';
import { getRun, type RunRow, type RunState } from '../../src/storage/queries/runs.ts';
import { getSteps, type StepRow } from '../../src/storage/queries/steps.ts';
import { startCodeRun } from '../../src/workflow/start.ts';
import { createTestHerald, eventually, type TestHerald } from './herald.ts';

export const QSTASH_TOKEN = 'test-qstash-token-0123456789';
export const ADMIN_TOKEN = 'test-admin-token-0123456789';

export interface WorkflowHerald extends TestHerald {
  worker: Worker;
  /** Starts a run of `name` with `input` (as the admin API does). */
  start(name: string, input?: unknown): Promise<string>;
  run(runId: string): Promise<RunRow>;
  steps(runId: string): Promise<StepRow[]>;
  /** Waits until the run is in `state` (default: any final state) and returns it. */
  settled(runId: string, state?: RunState, ms?: number): Promise<RunRow>;
  /** Waits until the run has an active waiter for `eventId`. */
  waiting(runId: string, eventId: string): Promise<void>;
  /** POST /v2/notify/... with the notify token. */
  notify(path: string, body?: BodyInit, contentType?: string): Promise<Response>;
}

/** A test herald with the given config, the notify and admin tokens set, and a started worker. */
export async function createWorkflowHerald(config: HeraldConfig, env: Record<string, string> = {}): Promise<WorkflowHerald> {
  const h = await createTestHerald({ config, env: { QSTASH_TOKEN, ADMIN_TOKEN, ...env } });
  const worker = h.engine.createWorker();
  await worker.start();
  const run = async (id: string) => {
    const r = await getRun(h.db, id);
    if (!r) throw new Error(`no run ${id}`);
    return r;
  };
  return {
    ...h,
    worker,
    async start(name, input = {}) {
      const wf = h.engine.rules.workflows.byName.get(name);
      if (!wf) throw new Error(`no workflow ${name}`);
      const started = await h.db.transaction((tx) => startCodeRun(tx, wf, input));
      return started.workflowRunId;
    },
    run,
    steps: (id) => getSteps(h.db, id),
    async settled(id, state, ms = 15_000) {
      const r = await eventually(async () => {
        const row = await run(id);
        return row.state !== 'running' && row;
      }, ms);
      if (state && r.state !== state) throw new Error(`run ${id} ended ${r.state}${r.error ? `: ${r.error}` : ''}, expected ${state}`);
      return r;
    },
    async waiting(id, eventId) {
      await eventually(async () => {
        const { rows } = await h.db.query(`SELECT 1 FROM herald_waiters WHERE run_id = $1 AND event_id = $2`, [id, eventId]);
        return rows.length > 0;
      });
    },
    notify: async (path, body, contentType) =>
      h.app.request(path, {
        method: 'POST',
        body,
        headers: { authorization: `Bearer ${QSTASH_TOKEN}`, ...(contentType ? { 'content-type': contentType } : {}) },
      }),
    async close() {
      await worker.stop();
      await h.close();
    },
  };
}
