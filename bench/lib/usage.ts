import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import type pg from 'pg';

/**
 * CPU and memory accounting for one measured window: this process (process.cpuUsage, RSS sampled
 * every 50 ms), the Postgres backends serving the benchmark's database (utime+stime from /proc of
 * their pids, as listed by pg_stat_activity), and the whole box (/proc/stat).
 */
export interface Usage {
  wallMs: number;
  nodeCpuMs: number;
  pgCpuMs: number;
  boxBusyPct: number;
  peakRssMb: number;
  /** CPU of a load generator in another process than the one measured (HTTP cases). */
  loadGenCpuMs?: number;
  /** The measured server's event-loop delay, when asked for (the soak): how long ready work waited for the loop. */
  loopDelayP99Ms?: number;
  loopDelayMaxMs?: number;
  /** Time inside the measured server per request, handler called → response ready (the soak). */
  handlingP50Ms?: number;
  handlingP99Ms?: number;
}

/** The measured server's own figures (time inside it, its event-loop delay) as a result's extras: NaN where it reported none. */
export const serverFigures = (u: Usage) => ({
  handlingP50Ms: u.handlingP50Ms ?? Number.NaN,
  handlingP99Ms: u.handlingP99Ms ?? Number.NaN,
  loopDelayP99Ms: u.loopDelayP99Ms ?? Number.NaN,
  loopDelayMaxMs: u.loopDelayMaxMs ?? Number.NaN,
});

/** CPU % (of 100 per core) that the box spent on things outside this measurement. */
export const foreignPct = (u: Usage) =>
  Math.max(0, u.boxBusyPct - (100 * (u.nodeCpuMs + u.pgCpuMs + (u.loadGenCpuMs ?? 0))) / u.wallMs);

const TICK_MS = 10; // CLK_TCK is 100 on Linux

function procCpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * TICK_MS; // utime, stime
  } catch {
    return undefined;
  }
}

function boxTicks(): { busy: number; total: number } {
  // user nice system idle iowait irq softirq steal (guest time is already inside user/nice)
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0] = line.trim().split(/\s+/).slice(1).map(Number);
  const busy = user + nice + system + irq + softirq;
  return { busy, total: busy + idle + iowait };
}

async function backendPids(client: pg.Client | pg.Pool): Promise<number[]> {
  const { rows } = await client.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`,
  );
  return rows.map((r) => r.pid);
}

export interface Meter {
  stop(): Promise<Usage>;
}

/**
 * Starts measuring. `observer` is a connection used only to list backends (its own pid is
 * excluded); a backend that appears during the window counts from zero.
 */
export async function startMeter(observer: pg.Client | pg.Pool | undefined, self = true): Promise<Meter> {
  const pidsAtStart = observer ? await backendPids(observer) : [];
  const pgStart = new Map(pidsAtStart.map((p) => [p, procCpuMs(p) ?? 0]));
  const cpu0 = process.cpuUsage();
  const box0 = boxTicks();
  const t0 = performance.now();
  let peakRss = process.memoryUsage.rss();
  const timer = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage.rss());
  }, 50);
  timer.unref();
  return {
    async stop() {
      const wallMs = performance.now() - t0;
      const cpu = process.cpuUsage(cpu0);
      const box1 = boxTicks();
      clearInterval(timer);
      peakRss = Math.max(peakRss, process.memoryUsage.rss());
      let pgCpuMs = 0;
      if (observer) {
        const pids = new Set([...pgStart.keys(), ...(await backendPids(observer))]);
        for (const pid of pids) {
          const end = procCpuMs(pid);
          if (end !== undefined) pgCpuMs += end - (pgStart.get(pid) ?? 0);
        }
      }
      return {
        wallMs,
        nodeCpuMs: self ? (cpu.user + cpu.system) / 1000 : 0,
        pgCpuMs,
        boxBusyPct: box1.total > box0.total ? (100 * cpus().length * (box1.busy - box0.busy)) / (box1.total - box0.total) : 0,
        peakRssMb: peakRss / 2 ** 20,
      };
    },
  };
}
