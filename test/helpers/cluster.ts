import { execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { chown, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';

/**
 * A private Postgres 15 cluster of the test's own, on a free loopback port, for the fault tests
 * that stop and restart the server (issue 24): the machine's shared server on :5432 is never
 * touched. The cluster is initialised as the `postgres` OS user (initdb refuses root), trusts
 * loopback connections, and is removed afterwards — by `remove()`, by a process 'exit' hook, and,
 * if this process dies without running either (SIGKILL from a test-runner timeout), by a detached
 * watchdog that stops it and deletes its directory once this process is gone.
 */
/** The newest installed server's binaries (Debian keeps each major version under its own directory). */
export const PG_BIN = process.env.HERALD_TEST_PG_BIN ?? newestPgBin();

function newestPgBin(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a)) : [];
  const found = versions.map((v) => join(root, v, 'bin')).find((dir) => existsSync(join(dir, 'initdb')));
  return found ?? join(root, '15', 'bin');
}

/** Why a private cluster cannot run here, or undefined when it can. */
export function clusterUnavailable(): string | undefined {
  if (!existsSync(join(PG_BIN, 'initdb'))) return `no Postgres binaries at ${PG_BIN} (set HERALD_TEST_PG_BIN)`;
  if (process.getuid?.() === 0) {
    try {
      execFileSync('id', ['-u', 'postgres'], { stdio: 'ignore' });
    } catch {
      return 'running as root and there is no `postgres` OS user to run initdb as';
    }
  }
  return undefined;
}

export interface Cluster {
  readonly port: number;
  readonly dir: string;
  /** postgres://postgres@127.0.0.1:<port>/<database> */
  url(database?: string): string;
  /** `pg_ctl stop -m immediate`: every backend dies at once, no checkpoint (a crash, as far as clients see). */
  crash(): Promise<void>;
  /** Starts the server again; returns once it answers a query (after crash recovery). */
  start(): Promise<void>;
  /** Runs SQL as the superuser on `database` (a short-lived client). */
  sql<T = Record<string, unknown>>(text: string, values?: unknown[], database?: string): Promise<T[]>;
  /** Stops the server and deletes its directory; safe to call twice. */
  remove(): Promise<void>;
  /** The server's log so far (for failure messages). */
  log(): Promise<string>;
}

const exec = promisify(execFile);
/** Every pg_ctl/initdb call is bounded, so a stuck server fails the test instead of hanging it. */
const STEP_TIMEOUT_MS = 20_000;

const asPostgres = (cmd: string, args: string[]): [string, string[]] =>
  process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];

async function run(cmd: string, args: string[]): Promise<string> {
  const [file, argv] = asPostgres(join(PG_BIN, cmd), args);
  try {
    const r = await exec(file, argv, { timeout: STEP_TIMEOUT_MS });
    return r.stdout + r.stderr;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}

/**
 * A loopback port below the ephemeral range (32768+ on Linux), free a moment ago: outgoing
 * connections never take it while the server is down between a crash and its restart, and random
 * draws keep two test files that run concurrently apart (a lost race is retried by the caller).
 */
async function candidatePort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 10_000);
    if (port === 5432) continue;
    const free = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (free) return port;
  }
}

/** Creates, configures and starts a cluster; `databases` are created empty. */
export async function startCluster(opts: { databases?: string[] } = {}): Promise<Cluster> {
  const reason = clusterUnavailable();
  if (reason) throw new Error(reason);
  const dir = await mkdtemp(join(tmpdir(), 'herald-cluster-'));
  const data = join(dir, 'data');
  const logFile = join(dir, 'server.log');
  let removed = false;
  let watchdog: ReturnType<typeof spawn> | undefined;

  // Synchronous, for the 'exit' hook (no event loop left there).
  const removeNow = () => {
    if (removed) return;
    removed = true;
    const [file, argv] = asPostgres(join(PG_BIN, 'pg_ctl'), ['-D', data, '-m', 'immediate', 'stop']);
    try {
      execFileSync(file, argv, { stdio: 'ignore', timeout: STEP_TIMEOUT_MS });
    } catch {
      /* not running */
    }
    try {
      execFileSync('rm', ['-rf', dir], { stdio: 'ignore' });
    } catch {
      /* best effort */
    }
    try {
      if (watchdog?.pid) process.kill(watchdog.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  };
  process.once('exit', removeNow);

  try {
    if (process.getuid?.() === 0) {
      const { stdout } = await exec('id', ['-u', 'postgres']);
      const { stdout: gid } = await exec('id', ['-g', 'postgres']);
      await chown(dir, Number(stdout.trim()), Number(gid.trim()));
    }
    // Trust auth on loopback only; --no-sync: the cluster is disposable (the server itself keeps
    // fsync on, so an immediate stop loses nothing that was acknowledged as committed).
    await run('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-sync', '--locale=C']);

    // The watchdog: once this process is gone (however it died), stop the cluster and delete it.
    const [pgctl, pgctlArgs] = asPostgres(join(PG_BIN, 'pg_ctl'), ['-D', data, '-m', 'immediate', 'stop']);
    const stopCmd = [pgctl, ...pgctlArgs].map((a) => `'${a}'`).join(' ');
    watchdog = spawn(
      'sh',
      ['-c', `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; ${stopCmd} >/dev/null 2>&1; rm -rf '${dir}'`],
      { detached: true, stdio: 'ignore' },
    );
    watchdog.unref();

    let port = 0;
    const startServer = async () => {
      await run('pg_ctl', ['-D', data, '-l', logFile, '-w', '-t', String(STEP_TIMEOUT_MS / 1000), 'start']);
    };
    for (let attempt = 0; ; attempt++) {
      port = await candidatePort();
      // Small settings: the tests need a handful of connections, not throughput.
      await writeFile(
        join(data, 'postgresql.auto.conf'),
        [
          `port = ${port}`,
          `listen_addresses = '127.0.0.1'`,
          `unix_socket_directories = '${dir}'`,
          `shared_buffers = '16MB'`,
          `max_connections = 50`,
          `max_wal_size = '64MB'`,
          `log_min_messages = 'warning'`,
          `log_line_prefix = '%m [%p] '`,
          '',
        ].join('\n'),
      );
      try {
        await startServer();
        break;
      } catch (err) {
        if (attempt >= 3) throw err; // a port taken between the check and the bind: draw another
      }
    }

    const url = (database = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${database}`;
    const sql = async <T,>(text: string, values: unknown[] = [], database = 'postgres'): Promise<T[]> => {
      const c = new pg.Client({ connectionString: url(database), connectionTimeoutMillis: 5000 });
      c.on('error', () => {}); // a crash while the client is open must not take the test process down
      await c.connect();
      try {
        return (await c.query(text, values)).rows as T[];
      } finally {
        await c.end().catch(() => {});
      }
    };
    for (const db of opts.databases ?? []) await sql(`CREATE DATABASE ${db}`);

    return {
      port,
      dir,
      url,
      sql,
      async crash() {
        await run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', '-t', String(STEP_TIMEOUT_MS / 1000), 'stop']);
      },
      async start() {
        // pg_ctl -w polls slowly on a busy box (it returned 4-7 s after the server took
        // connections): start without waiting and return the moment a connection answers, so
        // the caller's "Postgres is back" is when it really was.
        await run('pg_ctl', ['-D', data, '-l', logFile, '-W', 'start']);
        const deadline = Date.now() + STEP_TIMEOUT_MS;
        for (;;) {
          const up = await sql('SELECT 1').then(
            () => true,
            () => false,
          );
          if (up) return;
          if (Date.now() > deadline) throw new Error(`Postgres did not take connections within ${STEP_TIMEOUT_MS} ms:\n${await readFile(logFile, 'utf8').catch(() => '')}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      },
      async remove() {
        removeNow();
        process.removeListener('exit', removeNow);
        await rm(dir, { recursive: true, force: true });
      },
      async log() {
        return readFile(logFile, 'utf8').catch(() => '');
      },
    };
  } catch (err) {
    removeNow();
    process.removeListener('exit', removeNow);
    throw err;
  }
}
