import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Db } from './storage/db.ts';
import { deliveryCounts } from './storage/queries/deliveries.ts';
import { jobCounts } from './storage/queries/jobs.ts';
import { runCounts } from './storage/queries/runs.ts';
import { waiterCount } from './storage/queries/waiters.ts';

/**
 * Prometheus metrics, one registry per engine. Gauges that describe the database (runs by state,
 * active waiters, jobs) are read from it at scrape time, so every process reports the same truth;
 * counters and histograms describe what this process did.
 */
export function createMetrics(db: Db) {
  const registry = new Registry();
  const stepDuration = new Histogram({
    name: 'herald_workflow_step_duration_seconds',
    help: 'Time to execute and record a workflow step, by step type and outcome',
    labelNames: ['type', 'outcome'] as const,
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120],
    registers: [registry],
  });
  const runsFinished = new Counter({
    name: 'herald_workflow_runs_finished_total',
    help: 'Workflow runs this process finished, by outcome',
    labelNames: ['state'] as const,
    registers: [registry],
  });
  const notifies = new Counter({
    name: 'herald_notify_requests_total',
    help: 'Notify requests, by kind and result',
    labelNames: ['kind', 'result'] as const,
    registers: [registry],
  });
  const deliveries = new Counter({
    name: 'herald_workflow_deliveries_total',
    help: 'Deliveries to HTTP workflow endpoints, by response status',
    labelNames: ['status'] as const,
    registers: [registry],
  });
  const channelSends = new Histogram({
    name: 'herald_channel_send_duration_seconds',
    help: 'One attempt at an email, WhatsApp or webhook delivery, by channel and outcome (sent, retry, dead)',
    labelNames: ['channel', 'outcome'] as const,
    buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
    registers: [registry],
  });
  new Gauge({
    name: 'herald_channel_deliveries',
    help: 'Email, WhatsApp and webhook deliveries by channel and state (from the database)',
    labelNames: ['channel', 'state'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const r of await deliveryCounts(db)) this.set({ channel: r.channel, state: r.state }, r.n);
    },
  });
  new Gauge({
    name: 'herald_workflow_runs',
    help: 'Workflow runs by state (from the database)',
    labelNames: ['state'] as const,
    registers: [registry],
    async collect() {
      const counts = await runCounts(db);
      for (const state of ['running', 'completed', 'failed', 'cancelled']) this.set({ state }, counts[state] ?? 0);
    },
  });
  new Gauge({
    name: 'herald_waiters_active',
    help: 'Active waiters (from the database)',
    registers: [registry],
    async collect() {
      this.set(await waiterCount(db));
    },
  });
  new Gauge({
    name: 'herald_jobs',
    help: 'Jobs by state (from the database)',
    labelNames: ['state'] as const,
    registers: [registry],
    async collect() {
      const counts = await jobCounts(db);
      for (const state of ['queued', 'running', 'failed']) this.set({ state }, counts[state] ?? 0);
    },
  });
  const observeDelivery = (channel: string, outcome: 'sent' | 'retry' | 'dead', seconds: number) => channelSends.observe({ channel, outcome }, seconds);
  return { registry, stepDuration, runsFinished, notifies, deliveries, observeDelivery };
}

export type Metrics = ReturnType<typeof createMetrics>;
