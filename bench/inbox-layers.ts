/**
 * Where an inbox request's time and server CPU go. Run
 *   node --import tsx bench/inbox-layers.ts [--requests 4000] [--rounds 2] [--rows 100000] [--layers a,b] [--pg=server|private]
 * The same request — GET /api/notifications?limit=20 with a user's JWT, one at a time (c=1), as the
 * inbox case of the suite sends it — against servers that add one layer at a time, each in its own
 * process, alternated --rounds times on one table of --rows notifications for 1,000 users, built as
 * the suite's inbox case builds it (buildInboxTable):
 *   bare         Node's http answering with the page, precomputed
 *   hono         + Hono and its Node adapter
 *   hono-jwt     + herald's JWT middleware (HS256, claims)
 *   hono-jwt-pg  + one `pg` query of the user's newest 21 rows (no RLS, no transaction)
 *   sql-json     as hono-jwt-pg, but Postgres builds the page as JSON and it is passed through
 *                unparsed (measured and not taken; see docs/BENCHMARKS.md)
 *   herald       herald's app (createApp) with its worker running, as `herald start` serves it
 *   herald-idle  the same without its worker
 * Prints a markdown table per round — requests/s, the client's p50 / p99, the server's CPU per request
 * (user + system, from the server process) and its Postgres backends' (from /proc) — then their
 * medians (ranges). Every answer is checked: status 200 and 20 rows of its user.
 */
import { fork } from 'node:child_process';
import http from 'node:http';
import { serve } from '@hono/node-server';
import { Hono, type Context } from 'hono';
import pg from 'pg';
import { mintUserToken } from '../src/cli/demo.ts';
import { createApp } from '../src/http/app.ts';
import { jwtUser } from '../src/http/middleware/jwt-user.ts';
import { buildInboxTable } from './cases/inbox.ts';
import { JWT_SECRET, openHerald, USERS } from './lib/herald.ts';
import { startBenchPostgres } from './lib/postgres.ts';
import { fmt, max, median, min, percentile } from './lib/stats.ts';
import { startMeter } from './lib/usage.ts';

const LAYERS = ['bare', 'hono', 'hono-jwt', 'hono-jwt-pg', 'sql-json', 'herald', 'herald-idle'] as const;
type Layer = (typeof LAYERS)[number];

const PAGE_SQL = `SELECT id, user_id, tenant_id, title, body, type, action_url, data, read_at, seen_at, archived_at, created_at
  FROM notifications WHERE user_id = $1 AND archived_at IS NULL ORDER BY created_at DESC, id DESC LIMIT 21`;
// Timestamps as Date#toISOString writes them (milliseconds, Z), so the JSON matches the app's.
const iso = (col: string) => `to_char(${col} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
const PAGE_JSON_SQL = `SELECT json_agg(j ORDER BY rn) FILTER (WHERE rn <= 20)::text AS items, count(*) > 20 AS more,
    min(cursor) FILTER (WHERE rn = 20) AS cursor
  FROM (SELECT row_number() OVER () AS rn, id::text AS cursor,
               json_build_object('id', id, 'user_id', user_id, 'tenant_id', tenant_id, 'title', title, 'body', body,
                 'type', type, 'action_url', action_url, 'data', data, 'read_at', ${iso('read_at')},
                 'seen_at', ${iso('seen_at')}, 'archived_at', ${iso('archived_at')}, 'created_at', ${iso('created_at')}) AS j
          FROM (${PAGE_SQL}) page) numbered`;

/** A server for one layer, in this (child) process; resolves with its port. */
async function serveLayer(layer: Layer, url: string): Promise<number> {
  const listening = (s: http.Server) => new Promise<number>((resolve) => s.once('listening', () => resolve((s.address() as { port: number }).port)));
  if (layer === 'herald' || layer === 'herald-idle') {
    const h = await openHerald({ databaseUrl: url });
    if (layer === 'herald') await h.engine.createWorker().start();
    return listening(serve({ fetch: createApp(h.engine).fetch, port: 0, hostname: '127.0.0.1' }) as http.Server);
  }
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  const page = JSON.stringify({ ok: true, items: (await pool.query({ name: 'page', text: PAGE_SQL, values: [USERS[1]] })).rows.slice(0, 20), nextCursor: null });
  if (layer === 'bare') {
    const s = http.createServer((_req, res) => res.setHeader('content-type', 'application/json').end(page));
    s.listen(0, '127.0.0.1');
    return listening(s);
  }
  // The context the JWT middleware reads: the engine's settings and logger, nothing else.
  const engine = { settings: { jwtSecret: JWT_SECRET }, log: { info() {} } };
  const app = new Hono();
  const answer = async (c: Context): Promise<Response> => {
    const user = (c.get('claims' as never) as { sub: string } | undefined)?.sub ?? USERS[1]!;
    if (layer === 'hono' || layer === 'hono-jwt') return c.json(JSON.parse(page));
    if (layer === 'sql-json') {
      const row = (await pool.query({ name: 'page-json', text: PAGE_JSON_SQL, values: [user] })).rows[0];
      return c.body(`{"ok":true,"items":${row.items ?? '[]'},"nextCursor":${row.more ? JSON.stringify(row.cursor) : 'null'}}`, 200, {
        'content-type': 'application/json',
      });
    }
    const rows = (await pool.query({ name: 'page', text: PAGE_SQL, values: [user] })).rows;
    return c.json({ ok: true, items: rows.slice(0, 20), nextCursor: rows.length > 20 ? rows[19].id : null });
  };
  app.use(async (c, next) => {
    c.set('engine' as never, engine as never);
    await next();
  });
  if (layer === 'hono') app.get('/api/notifications', answer);
  else app.get('/api/notifications', jwtUser as never, answer);
  return listening(serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }) as http.Server);
}

if (process.argv[2] === '--serve') {
  const port = await serveLayer(process.argv[3] as Layer, process.argv[4]!);
  process.on('message', () => process.send!(process.cpuUsage()));
  process.on('disconnect', () => process.exit(0));
  process.send!(port);
} else {
  const argv = process.argv.slice(2);
  const arg = (name: string, fallback: string) => (argv.includes(name) ? (argv[argv.indexOf(name) + 1] ?? fallback) : fallback);
  const requests = Number(arg('--requests', '4000'));
  const rounds = Number(arg('--rounds', '2'));
  const rows = Number(arg('--rows', '100000'));
  const layers = arg('--layers', LAYERS.join(',')).split(',') as Layer[];
  const pgMode = (argv.find((a) => a.startsWith('--pg='))?.slice(5) ?? 'auto') as 'auto';
  if (!(requests >= 100) || !(rounds >= 1) || !(rows >= 21_000) || layers.some((l) => !LAYERS.includes(l))) {
    console.error(`usage: bench/inbox-layers.ts [--requests N≥100] [--rounds N] [--rows N≥21000] [--layers ${LAYERS.join(',')}] [--pg=server|private]`);
    process.exit(2);
  }
  const bp = await startBenchPostgres({ mode: pgMode });
  try {
    const url = await bp.createDatabase(`herald_inbox_layers_${process.pid}`);
    await (await openHerald({ databaseUrl: url })).close(); // migrates
    // Lists the servers' Postgres backends for their CPU (its own is left out); builds the table first.
    const observer = new pg.Client({ connectionString: url });
    await observer.connect();
    await buildInboxTable(observer, rows);
    const tokens = await Promise.all(USERS.map((u) => mintUserToken(JWT_SECRET, u)));
    console.log(`inbox request by layer: ${requests} sequential GETs of the latest 20 per server, ${rows.toLocaleString('en-US')} rows (${bp.kind} Postgres ${bp.version})\n`);
    console.log('| round | server | requests/s | p50 / p99 ms | CPU µs per request: server (user + system) + Postgres |\n|---|---|---|---|---|');
    const results = new Map<Layer, Measured[]>(layers.map((l) => [l, []]));
    for (let round = 1; round <= rounds; round++) {
      for (const layer of layers) {
        const m = await measure(layer, url, tokens, requests, observer);
        results.get(layer)!.push(m);
        const server = m.userUs + m.systemUs;
        console.log(`| ${round} | ${layer} | ${fmt(m.rate)} | ${fmt(m.p50)} / ${fmt(m.p99)} | ${fmt(server + m.pgUs)} = ${fmt(server)} (${fmt(m.userUs)} + ${fmt(m.systemUs)}) + ${fmt(m.pgUs)} |`);
      }
    }
    const cell = (xs: number[]) => (xs.length > 1 ? `${fmt(median(xs))} (${fmt(min(xs))}–${fmt(max(xs))})` : fmt(xs[0]));
    console.log(
      `\nMedians (ranges) of ${rounds} round(s):\n\n| server | requests/s | p50 ms | p99 ms | server CPU µs per request | Postgres CPU µs per request |\n|---|---|---|---|---|---|`,
    );
    for (const [layer, ms] of results) {
      const col = (f: (m: Measured) => number) => cell(ms.map(f));
      console.log(`| ${layer} | ${col((m) => m.rate)} | ${col((m) => m.p50)} | ${col((m) => m.p99)} | ${col((m) => m.userUs + m.systemUs)} | ${col((m) => m.pgUs)} |`);
    }
    await observer.end();
  } finally {
    await bp.cleanup();
  }
}

interface Measured {
  rate: number;
  p50: number;
  p99: number;
  userUs: number;
  systemUs: number;
  /** The database's backends, per request (from /proc; 10 ms ticks). */
  pgUs: number;
}

async function measure(layer: Layer, url: string, tokens: string[], n: number, observer: pg.Client): Promise<Measured> {
  const child = fork(process.argv[1]!, ['--serve', layer, url], { execArgv: ['--import', 'tsx'] });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.once('message', (p) => resolve(p as number));
      child.once('exit', (code) => reject(new Error(`the ${layer} server exited (${code})`)));
    });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const get = (i: number) =>
      new Promise<void>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port, path: '/api/notifications?limit=20', agent, headers: { authorization: `Bearer ${tokens[i % tokens.length]}` } }, (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (c: string) => (body += c));
          res.on('end', () => {
            const items = res.statusCode === 200 ? (JSON.parse(body) as { items: { user_id: string }[] }).items : [];
            const user = layer === 'bare' || layer === 'hono' || layer === 'hono-jwt' ? USERS[1] : USERS[i % tokens.length];
            if (items.length !== 20 || items.some((r) => r.user_id !== user)) reject(new Error(`${layer}: status ${res.statusCode}, ${items.length} rows or another user's`));
            else resolve();
          });
        });
        req.on('error', reject).end();
      });
    const cpu = () =>
      new Promise<NodeJS.CpuUsage>((resolve) => {
        child.once('message', (u) => resolve(u as NodeJS.CpuUsage));
        child.send('cpu');
      });
    for (let i = 0; i < 1000; i++) await get(i); // warm: JIT, connections, prepared statements
    const before = await cpu();
    const meter = await startMeter(observer, false);
    const lat: number[] = [];
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      const t = performance.now();
      await get(i);
      lat.push(performance.now() - t);
    }
    const wallMs = performance.now() - t0;
    const after = await cpu();
    const { pgCpuMs } = await meter.stop();
    agent.destroy();
    return {
      rate: (n * 1000) / wallMs,
      p50: percentile(lat, 50),
      p99: percentile(lat, 99),
      userUs: (after.user - before.user) / n,
      systemUs: (after.system - before.system) / n,
      pgUs: (pgCpuMs * 1000) / n,
    };
  } finally {
    child.kill();
  }
}
