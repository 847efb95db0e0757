import pg from 'pg';
import { PgBoss } from 'pg-boss';
import { Tracker } from '../lib/drive.ts';
import type { QueueSubject } from '../lib/queue-modes.ts';

/**
 * pg-boss with LISTEN/NOTIFY (useListenNotify and a notify queue), workers fetching 100 jobs at
 * a time (batchSize 100, localConcurrency 4, burst while batches come back full, 0.5 s polling),
 * one send() per job from a 16-connection pool. Each mode gets a fresh queue.
 */
export async function pgbossSubject(url: string): Promise<QueueSubject> {
  const observer = new pg.Client({ connectionString: url });
  await observer.connect();
  const boss = new PgBoss({ connectionString: url, max: 16, useListenNotify: true, schedule: false });
  boss.on('error', () => {});
  await boss.start();
  const tracker = new Tracker();
  let queue = '';
  let n = 0;
  let working = false;
  return {
    name: 'pg-boss 12.38 (notify, batch 100)',
    observer,
    tracker,
    async startWorker() {
      await boss.work<{ seq: number }>(
        queue,
        { batchSize: 100, localConcurrency: 4, burstWhenBatchFull: true, pollingIntervalSeconds: 0.5, notifyPollingIntervalSeconds: 0.5 },
        async (jobs) => {
          for (const job of jobs) tracker.onStart(String(job.data.seq));
        },
      );
      working = true;
    },
    async stopWorker() {
      if (working) await boss.offWork(queue, { wait: true });
      working = false;
    },
    async enqueue(seq) {
      const id = await boss.send(queue, { seq });
      if (!id) throw new Error('pg-boss send returned no id');
      return String(seq);
    },
    async enqueueMany(seqs) {
      await boss.insert(queue, seqs.map((seq) => ({ data: { seq } })));
      return seqs.map(String);
    },
    async reset() {
      queue = `bench_${++n}`;
      await boss.createQueue(queue, { notify: true });
      await observer.query('CHECKPOINT');
    },
    async close() {
      await boss.stop({ graceful: false, timeout: 2000 }).catch(() => {});
      await observer.end();
    },
  };
}
