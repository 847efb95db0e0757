import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { signXSignature } from '../../src/signing.ts';
import { compileEntry } from '../lib/compile.ts';
import { pcts } from '../lib/drive.ts';
import { pingBody, SIGNING_SECRET } from '../lib/herald.ts';
import { httpLoad, type PreparedRequest } from '../lib/http-load.ts';
import type { ModeResult } from '../lib/result.ts';
import { startMeter, type Usage } from '../lib/usage.ts';
import type { ServerCommand, ServerConfig } from '../http-server.ts';

const SERVER = fileURLToPath(new URL('../http-server.ts', import.meta.url));

type Cmd = ServerCommand extends infer C ? (C extends { id: number } ? Omit<C, 'id'> : never) : never;

/** A herald server process (app + worker, like `herald start`) and a typed way to talk to it. */
export async function startServer(cfg: ServerConfig) {
  // HERALD_BENCH_SERVER_PROF=<dir>: the server writes a V8 CPU profile there when it stops.
  const prof = process.env.HERALD_BENCH_SERVER_PROF;
  const execArgv = [...(prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : []), ...(process.env.HERALD_BENCH_SERVER_ARGS?.split(' ').filter(Boolean) ?? [])];
  const child: ChildProcess = fork(await compileEntry(SERVER), { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const pending = new Map<number, (m: { ok: boolean; result?: unknown; error?: string }) => void>();
  let seq = 0;
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`herald server exited (${code}) before listening`)));
    child.on('message', (m: { port?: number; id?: number; ok: boolean }) => {
      if (m.port !== undefined) resolve(m.port);
      else if (m.id !== undefined) pending.get(m.id)?.(m as never);
    });
    child.send(cfg);
  });
  const call = <T>(c: Cmd) =>
    new Promise<T>((resolve, reject) => {
      const id = ++seq;
      pending.set(id, (m) => (m.ok ? resolve(m.result as T) : reject(new Error(m.error))));
      child.send({ ...c, id });
    });
  return {
    port,
    call,
    stop: () =>
      new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

function signedEmits(n: number, offset: number): PreparedRequest[] {
  const secret = Buffer.from(SIGNING_SECRET);
  return Array.from({ length: n }, (_, i) => {
    const body = pingBody(offset + i);
    return {
      path: '/api/notifications/emit',
      body,
      headers: { 'content-type': 'application/json', 'x-signature': signXSignature(secret, body) },
    };
  });
}

/**
 * Signed emits over HTTP from 64 keep-alive clients (this process) to a herald server process.
 * Throughput counts only 200 responses whose event then produced its notification.
 */
export async function runHttp(
  opts: { subject: string; url?: string; pglite?: boolean; modes: ('workflow' | 'direct')[]; n: number; clients: number; maxMs: number },
  report: (r: ModeResult) => void,
): Promise<void> {
  for (const mode of opts.modes) {
    const dataDir = opts.pglite ? mkdtempSync(join(tmpdir(), 'herald-bench-pglite-')) : undefined;
    const env: Record<string, string> = mode === 'direct' ? { WORKFLOWS_DISABLED: '1' } : {};
    const server = await startServer({ url: opts.url, dataDir, env });
    const observer = opts.url ? new pg.Client({ connectionString: opts.url }) : undefined;
    await observer?.connect();
    try {
      const requests = signedEmits(opts.n, 0);
      // Warm-up, then a clean database: the same load for up to 3 s, so the server is measured
      // JIT-compiled and with its connections open, as a long-running one is (a few hundred
      // requests left most of the measured run on V8's unoptimised tiers).
      await httpLoad(server.port, signedEmits(opts.n, 10_000_000), opts.clients, Math.min(opts.maxMs, 3_000));
      await server.call({ cmd: 'reset' });
      await observer?.query('CHECKPOINT');
      const pgMeter = await startMeter(observer, false);
      await server.call({ cmd: 'meter-start' });
      const cpu0 = process.cpuUsage();
      const load = await httpLoad(server.port, requests, opts.clients, opts.maxMs);
      const serverUsage = await server.call<Usage>({ cmd: 'meter-stop' });
      const clientCpu = process.cpuUsage(cpu0);
      const pgUsage = await pgMeter.stop();
      const ids: string[] = [];
      const accepted: number[] = [];
      let bad = 0;
      let shed = 0;
      load.bodies.forEach((b, i) => {
        const parsed = JSON.parse(b) as { eventId?: string; inserted?: number; error?: string };
        if (typeof parsed.eventId === 'string' && (mode === 'workflow' || parsed.inserted === 1)) {
          ids.push(parsed.eventId);
          accepted.push(load.latency[i]!);
        } else if (parsed.error?.startsWith('herald is overloaded')) shed++;
        else bad++;
      });
      const v = await server.call<{ verdict: string }>({ cmd: 'verify', ids });
      // A 429 is herald shedding load (a closed loop of 64 clients keeps it saturated): counted and
      // shown, not a failure; its latency is not mixed into the accepted ones'.
      const failed = [...load.statuses].filter(([s]) => s !== 200 && s !== 429);
      const verdict = bad || failed.length ? `${bad} failed responses (${failed.map(([s, c]) => `${c}×${s}`).join(', ')})` : v.verdict;
      const notes = [opts.pglite ? 'PG CPU inside the server' : '', shed ? `${shed.toLocaleString('en-US')} shed with 429` : ''].filter(Boolean);
      report({
        subject: opts.subject,
        mode: `${mode} mode, ${opts.clients} keep-alive clients, x-signature`,
        events: ids.length,
        rate: (ids.length * 1000) / load.ms,
        ...pcts(accepted),
        usage: { ...serverUsage, pgCpuMs: pgUsage.pgCpuMs, boxBusyPct: pgUsage.boxBusyPct, loadGenCpuMs: (clientCpu.user + clientCpu.system) / 1000 },
        verified: verdict,
        note: notes.length ? notes.join('; ') : undefined,
      });
    } finally {
      await observer?.end();
      await server.stop();
      if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    }
  }
}
