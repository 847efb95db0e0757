import pg from 'pg';
import { Logger, makeWorkerUtils, run, type Runner, type WorkerUtils } from 'graphile-worker';
import { Tracker } from '../lib/drive.ts';
import type { QueueSubject } from '../lib/queue-modes.ts';

const silent = new Logger(() => () => {});

/**
 * graphile-worker as a team would use it: jobs added with addJob from a 16-connection pool (one
 * job per transaction), a worker in the same process. `default`: concurrency 10, no local queue,
 * no completion batching. `batched`: the configuration of its performance page (24 concurrent
 * jobs, a 500-job local queue, batched completion).
 */
export async function graphileSubject(url: string, variant: 'default' | 'batched'): Promise<QueueSubject> {
  const observer = new pg.Client({ connectionString: url });
  await observer.connect();
  const producerPool = new pg.Pool({ connectionString: url, max: 16 });
  producerPool.on('error', () => {});
  producerPool.on('connect', (client) => client.on('error', () => {}));
  const utils: WorkerUtils = await makeWorkerUtils({ pgPool: producerPool, logger: silent });
  await utils.migrate();
  const tracker = new Tracker();
  let runner: Runner | undefined;
  const preset =
    variant === 'batched'
      ? { worker: { concurrentJobs: 24, localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0, pollInterval: 2000 } }
      : { worker: { concurrentJobs: 10, pollInterval: 2000 } };
  return {
    name: `graphile-worker 0.18 (${variant})`,
    observer,
    tracker,
    async startWorker() {
      runner = await run({
        connectionString: url,
        logger: silent,
        noHandleSignals: true,
        preset,
        taskList: {
          bench: async (payload) => tracker.onStart(String((payload as { seq: number }).seq)),
        },
      });
    },
    async stopWorker() {
      await runner?.stop();
      runner = undefined;
    },
    async enqueue(seq) {
      await utils.addJob('bench', { seq });
      return String(seq);
    },
    async enqueueMany(seqs) {
      await utils.addJobs(seqs.map((seq) => ({ identifier: 'bench', payload: { seq } })));
      return seqs.map(String);
    },
    async reset() {
      await observer.query('CHECKPOINT');
    },
    async close() {
      await runner?.stop().catch(() => {});
      await utils.release();
      await producerPool.end();
      await observer.end();
    },
  };
}
