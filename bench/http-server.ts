/**
 * A herald HTTP server for the HTTP cases, in its own process (as `herald start` runs it: the app
 * and a worker), so its CPU and RSS are measured apart from the load generator. Controlled over
 * IPC by bench/cases/herald-http.ts; exits when its parent goes away.
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { serve } from '@hono/node-server';
import { createApp } from '../src/http/app.ts';
import { openHerald, resetHerald } from './lib/herald.ts';
import { verifyRows } from './cases/herald-queue.ts';
import { percentile } from './lib/stats.ts';
import { startMeter, type Meter } from './lib/usage.ts';

export interface ServerConfig {
  url?: string;
  dataDir?: string;
  env?: Record<string, string>;
}
export type ServerCommand = { id: number } & (
  | { cmd: 'meter-start'; loopDelay?: boolean }
  | { cmd: 'meter-stop' }
  | { cmd: 'reset' }
  | { cmd: 'verify'; ids: string[] }
  | { cmd: 'rss' }
);

process.on('disconnect', () => process.exit(0));
// A normal exit, so a V8 CPU profile (HERALD_BENCH_SERVER_PROF) is written.
process.on('SIGTERM', () => process.exit(0));
process.once('message', async (cfg: ServerConfig) => {
  const h = await openHerald({ databaseUrl: cfg.url, dataDir: cfg.dataDir, env: cfg.env });
  let worker = h.engine.createWorker();
  await worker.start();
  const app = createApp(h.engine);
  let meter: Meter | undefined;
  // How long ready work (a request, a query's reply) waited for the event loop during the window.
  let loopDelay: IntervalHistogram | undefined;
  // Time inside the server per accepted request (handler called → response ready), with the loop delay:
  // what the client sees beyond it is sockets, the kernel's scheduling and the load generator.
  const handling: number[] = [];
  process.on('message', async (m: ServerCommand) => {
    let result: unknown = null;
    try {
      if (m.cmd === 'meter-start') {
        handling.length = 0;
        meter = await startMeter(undefined);
        // Opt-in: its 1 ms timer is work of its own, kept out of the throughput cases.
        loopDelay = m.loopDelay ? monitorEventLoopDelay({ resolution: 1 }) : undefined;
        loopDelay?.enable();
      } else if (m.cmd === 'meter-stop') {
        loopDelay?.disable();
        // The histogram counts from the 1 ms sampling timer's due time: subtract its resolution.
        const ms = (ns: number) => Math.max(0, ns / 1e6 - 1);
        const delay = loopDelay
          ? { loopDelayP99Ms: ms(loopDelay.percentile(99)), loopDelayMaxMs: ms(loopDelay.max), handlingP50Ms: percentile(handling, 50), handlingP99Ms: percentile(handling, 99) }
          : {};
        loopDelay = undefined;
        result = { ...(await meter!.stop()), ...delay };
      } else if (m.cmd === 'reset') {
        await worker.stop();
        await resetHerald(h.db);
        worker = h.engine.createWorker();
        await worker.start();
      } else if (m.cmd === 'verify') result = await verifyRows(h.db, m.ids);
      // Resident memory now, in MB (the overload case reads it at the start and end of its window).
      else if (m.cmd === 'rss') result = process.memoryUsage().rss / 2 ** 20;
      process.send!({ id: m.id, ok: true, result });
    } catch (err) {
      process.send!({ id: m.id, ok: false, error: (err as Error).message });
    }
  });
  // `env` carries node-server's incoming request: without it the app takes its slow body path.
  const fetch = (req: Request, env: unknown) => {
    if (!loopDelay) return app.fetch(req, env);
    const t = performance.now();
    // Accepted requests only (a 429 of the overload case is fast whatever the load).
    return Promise.resolve(app.fetch(req, env)).then((res) => (res.status === 200 && handling.push(performance.now() - t), res));
  };
  serve({ fetch, port: 0, hostname: '127.0.0.1' }, (info) => process.send!({ port: info.port }));
});
