import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { serve, type ServerType } from '@hono/node-server';
import { loadConfig, type LoadedConfig } from '../config/load-config.ts';
import type { Settings } from '../config/settings.ts';
import { createEngine, type Engine } from '../engine.ts';
import { createApp } from '../http/app.ts';
import type { Worker } from '../jobs/worker.ts';
import { createLogger, type Logger } from '../log.ts';
import type { Db } from '../storage/db.ts';
import { migrate } from '../storage/migrate.ts';
import { openStorage } from '../storage/open.ts';

/** Whether this process runs the compiled build (dist/) or the TypeScript sources (bin/herald.js decides). */
export const RUNNING_BUILD: 'compiled' | 'source' = import.meta.url.endsWith('.ts') ? 'source' : 'compiled';

/** PGlite's files live in a subdirectory, beside herald's own (dev secrets, pid file). */
export const pgliteDir = (dataDir: string) => join(dataDir, 'pgdata');

/** The Postgres driver's bounds (connect and pool wait, statement, idle transaction) from the settings. */
export const dbTimeouts = (settings: Readonly<Settings>) => ({
  connectTimeoutMs: settings.dbConnectTimeoutMs,
  statementTimeoutMs: settings.dbStatementTimeoutMs,
  idleInTransactionTimeoutMs: settings.dbIdleInTransactionTimeoutMs,
});

export interface Runtime {
  engine: Engine;
  config: LoadedConfig;
  log: Logger;
  close(): Promise<void>;
}

/** Opens storage (migrating it) and loads the config: what every long-running command needs. */
export async function openRuntime(settings: Readonly<Settings>, logFd: 1 | 2 = 1): Promise<Runtime> {
  const log = createLogger(settings.logLevel, logFd);
  // The config first: a missing or broken one stops herald before it touches the database.
  const config = await loadConfig(settings.configPath);
  if (!settings.databaseUrl) await mkdir(settings.dataDir, { recursive: true });
  const db: Db = await openStorage({
    databaseUrl: settings.databaseUrl,
    dataDir: settings.databaseUrl ? undefined : pgliteDir(settings.dataDir),
    onError: (err) => log.warn({ err: err.message }, 'database connection error'),
    ...dbTimeouts(settings),
  });
  try {
    const applied = await migrate(db, (name) => log.info({ migration: name }, 'applied migration'));
    if (applied.length) log.info({ count: applied.length }, 'database migrated');
    log.info({ config: config.path, events: [...config.rules.rules.keys()] }, 'rules loaded');
    const engine = createEngine({ settings, db, rules: config.rules, log });
    return { engine, config, log, close: () => db.close() };
  } catch (err) {
    await db.close().catch(() => {});
    throw err;
  }
}

export interface Running {
  url: string;
  stop(): Promise<void>;
}

/** Serves HTTP and/or runs a worker until stopped; SIGINT/SIGTERM stop it gracefully. */
export async function run(rt: Runtime, parts: { http: boolean; worker: boolean }): Promise<Running> {
  const { settings } = rt.engine;
  let server: ServerType | undefined;
  let url = '';
  let worker: Worker | undefined;
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      rt.log.info('shutting down');
      await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
      await worker?.stop();
      await rt.close();
    })());
  // The handlers go in before anything starts: a signal that arrives while the worker is still
  // starting (after "listening" was logged) waits for the start to finish, then stops gracefully,
  // instead of killing the process with the default action.
  let starting: Promise<void> = Promise.resolve();
  const onSignal = () =>
    void starting
      .catch(() => {})
      .then(stop)
      .then(() => process.exit(0));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  starting = (async () => {
    if (parts.http) {
      const app = createApp(rt.engine);
      await new Promise<void>((resolve, reject) => {
        server = serve({ fetch: app.fetch, port: settings.port, hostname: settings.host }, (info) => {
          const host = info.address.includes(':') ? `[${info.address}]` : info.address;
          url = `http://${host}:${info.port}`;
          resolve();
        });
        server.once('error', reject);
      });
      rt.log.info({ build: RUNNING_BUILD, url }, 'listening');
    }
    if (parts.worker) {
      worker = rt.engine.createWorker();
      await worker.start();
      rt.log.info({ worker: worker.id }, 'worker started');
    }
  })();
  await starting;
  return { url, stop };
}
