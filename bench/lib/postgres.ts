import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

const PG_BIN = process.env.HERALD_BENCH_PG_BIN ?? '/usr/lib/postgresql/15/bin';
const SERVER_URL = process.env.HERALD_BENCH_SERVER_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/**
 * The Postgres every benchmark runs against: a private throw-away cluster (initdb into a temp dir,
 * a free loopback port, stock settings, synchronous_commit=on), or, when that cannot run (initdb
 * refuses root), throw-away databases on the machine's server. Either way nothing is left behind.
 */
export interface BenchPostgres {
  kind: 'private' | 'server';
  /** A superuser URL to the maintenance database. */
  adminUrl: string;
  version: string;
  /** Settings that matter for the numbers, as the server reports them. */
  settings: Record<string, string>;
  createDatabase(name: string): Promise<string>;
  dropDatabase(name: string): Promise<void>;
  /** Drops every database made here and stops/removes a private cluster. Idempotent, synchronous-safe. */
  cleanup(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function admin<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => {});
  }
}

async function describe(url: string) {
  return admin(url, async (c) => {
    const version = (await c.query<{ v: string }>('SELECT current_setting($$server_version$$) AS v')).rows[0]!.v;
    const names = ['synchronous_commit', 'fsync', 'shared_buffers', 'max_wal_size', 'wal_level', 'max_connections'];
    const { rows } = await c.query<{ name: string; setting: string; unit: string | null }>(
      'SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1)',
      [names],
    );
    const settings = Object.fromEntries(rows.map((r) => [r.name, r.unit ? `${r.setting}${r.unit}` : r.setting]));
    return { version, settings };
  });
}

function startPrivate(): { dir: string; port: number; stop: () => void } | undefined {
  if (process.getuid?.() === 0) return undefined; // initdb refuses to run as root
  const dir = mkdtempSync(join(tmpdir(), 'herald-bench-pg-'));
  try {
    execFileSync(join(PG_BIN, 'initdb'), ['-D', join(dir, 'data'), '-U', userInfo().username, '--auth=trust', '-E', 'UTF8', '--no-instructions'], {
      stdio: 'ignore',
    });
  } catch {
    rmSync(dir, { recursive: true, force: true });
    return undefined;
  }
  return { dir, port: 0, stop: () => {} };
}

export async function startBenchPostgres(opts: { mode?: 'auto' | 'private' | 'server' } = {}): Promise<BenchPostgres> {
  const mode = opts.mode ?? 'auto';
  const created = new Set<string>();
  let adminUrl = SERVER_URL;
  let kind: 'private' | 'server' = 'server';
  let stopPrivate: (() => void) | undefined;

  if (mode !== 'server') {
    const init = startPrivate();
    if (!init && mode === 'private') throw new Error('cannot create a private cluster (initdb refuses root); use --pg=server');
    if (init) {
      const port = await freePort();
      const data = join(init.dir, 'data');
      const r = spawnSync(
        join(PG_BIN, 'pg_ctl'),
        ['-D', data, '-l', join(init.dir, 'log'), '-w', '-o', `-p ${port} -k ${init.dir} -c listen_addresses=127.0.0.1 -c synchronous_commit=on`, 'start'],
        { stdio: 'ignore' },
      );
      stopPrivate = () => {
        spawnSync(join(PG_BIN, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop'], { stdio: 'ignore' });
        rmSync(init.dir, { recursive: true, force: true });
      };
      if (r.status !== 0) {
        stopPrivate();
        throw new Error('the private Postgres cluster did not start');
      }
      adminUrl = `postgres://${encodeURIComponent(userInfo().username)}@127.0.0.1:${port}/postgres`;
      kind = 'private';
    }
  }
  const { version, settings } = await describe(adminUrl);
  if (settings.synchronous_commit !== 'on') throw new Error(`synchronous_commit is ${settings.synchronous_commit}; the benchmarks need on`);

  const dbUrl = (name: string) => {
    const u = new URL(adminUrl);
    u.pathname = `/${name}`;
    return u.toString();
  };
  let cleaned: Promise<void> | undefined;
  return {
    kind,
    adminUrl,
    version,
    settings,
    async createDatabase(name) {
      if (!/^[a-z0-9_]+$/.test(name)) throw new Error(`bad database name ${name}`);
      created.add(name);
      await admin(adminUrl, (c) => c.query(`CREATE DATABASE ${name}`));
      return dbUrl(name);
    },
    async dropDatabase(name) {
      await admin(adminUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
      created.delete(name);
    },
    cleanup() {
      cleaned ??= (async () => {
        if (stopPrivate) {
          stopPrivate(); // the whole cluster goes, databases included
          created.clear();
          return;
        }
        for (const name of [...created]) {
          await admin(adminUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).catch(() => {});
          created.delete(name);
        }
      })();
      return cleaned;
    },
  };
}
