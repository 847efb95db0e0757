import http from 'node:http';
import pg from 'pg';
import { mintUserToken } from '../../src/cli/demo.ts';
import { pcts } from '../lib/drive.ts';
import { JWT_SECRET, openHerald, USERS } from '../lib/herald.ts';
import type { ModeResult } from '../lib/result.ts';
import { now } from '../lib/stats.ts';
import { startMeter, type Usage } from '../lib/usage.ts';
import { startServer } from './herald-http.ts';
import { COUNT_UNREAD_SQL, UNREAD_CAP } from '../../src/storage/queries/inbox.ts';

const SUBJECT = 'herald inbox';

/**
 * The inbox on a big table: `rows` notifications for 1,000 users (time-ordered ids, 30 days of
 * history, ~30 % unread), built with generate_series, not through the API. Then, at c=1: the
 * latest 20, the next page, the unread badge, mark one read, mark all read — as plain SQL (the
 * floor) and over HTTP with a JWT, where each request runs as the user under RLS. The table is
 * built once; the measurements are repeated `repeats` times on it (mark all read on other users).
 */
export async function runInbox(url: string, rows: number, iterations: number, repeats: number, report: (r: ModeResult) => void): Promise<void> {
  const h = await openHerald({ databaseUrl: url });
  const observer = new pg.Client({ connectionString: url });
  await observer.connect();
  const t0 = now();
  await buildInboxTable(observer, rows);
  const buildMs = now() - t0;
  const note = `table of ${rows.toLocaleString('en-US')} rows built in ${(buildMs / 1000).toFixed(1)} s`;

  // The HTTP cases talk to a herald server process (app + worker, as `herald start` runs it), so
  // the server's latency and CPU are not mixed with this process's client work.
  const server = await startServer({ url });
  const port = server.port;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const request = (method: string, path: string, token: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path, method, agent, headers: { authorization: `Bearer ${token}` } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });

  // Users whose ids end in 7, 8 or 9 (mod 10 of their row block) keep unread rows: pick from all.
  const tokens = await Promise.all(USERS.map((u) => mintUserToken(JWT_SECRET, u)));
  /** `op` may call mark() to start the clock after its own preparation (e.g. the first page). */
  const measure = async (mode: string, op: (i: number, mark: () => void) => Promise<string | undefined>, n = iterations, warm = true) => {
    let t = 0;
    const mark = () => void (t = now());
    if (warm) for (let i = 0; i < 20; i++) await op(i, mark);
    const lat = new Float64Array(n);
    let failure: string | undefined;
    const overHttp = mode.startsWith('HTTP');
    // Over HTTP the node CPU is the server's (its own meter); PG CPU and box load are read here.
    const meter = await startMeter(observer);
    if (overHttp) await server.call({ cmd: 'meter-start' });
    for (let i = 0; i < n; i++) {
      t = now();
      const bad = await op(i, mark);
      lat[i] = now() - t;
      failure ??= bad;
    }
    const serverUsage = overHttp ? await server.call<Usage>({ cmd: 'meter-stop' }) : undefined;
    const local = await meter.stop();
    const usage = serverUsage ? { ...serverUsage, pgCpuMs: local.pgCpuMs, boxBusyPct: local.boxBusyPct, loadGenCpuMs: local.nodeCpuMs } : local;
    report({ subject: SUBJECT, mode, events: n, rate: (n * 1000) / usage.wallMs, ...pcts(lat), usage, verified: failure ?? 'ok', note });
  };
  const user = (i: number) => USERS[i % USERS.length]!;
  const checkPage = (items: { user_id: string }[], u: string, n = 20) =>
    items.length !== n ? `${items.length} rows for a page of ${n}` : items.some((r) => r.user_id !== u) ? 'a row of another user' : undefined;

  try {
    for (let rep = 0; rep < repeats; rep++) {
      const scale = `${(rows / 1e6).toLocaleString('en-US')} M rows`;
      const sqlLatest = `SELECT id, user_id, title, body, type, action_url, data, read_at, created_at FROM notifications
                         WHERE user_id = $1 AND archived_at IS NULL ORDER BY created_at DESC, id DESC LIMIT 20`;
      await measure(`SQL: latest 20 (${scale}, c=1)`, async (i) => checkPage((await observer.query(sqlLatest, [user(i)])).rows, user(i)));
      // Badges of users 600-999, whose inboxes mark all read (users 0-599) leaves alone.
      const unreadUser = (i: number) => 600 + (i % 400);
      await measure(`SQL: unread badge, capped at ${UNREAD_CAP} (c=1)`, async (i) => {
        const r = await observer.query(COUNT_UNREAD_SQL, [USERS[unreadUser(i)], UNREAD_CAP + 1]);
        return r.rows[0].n > 0 ? undefined : 'no unread rows';
      });
      await measure(`HTTP + JWT + RLS: latest 20 (c=1)`, async (i) => {
        const r = await request('GET', '/api/notifications?limit=20', tokens[i % tokens.length]!);
        return r.status !== 200 ? `status ${r.status}` : checkPage(JSON.parse(r.body).items, user(i));
      });
      await measure(`HTTP + JWT + RLS: next page (c=1)`, async (i, mark) => {
        const first = JSON.parse((await request('GET', '/api/notifications?limit=20', tokens[i % tokens.length]!)).body);
        mark();
        const r = await request('GET', `/api/notifications?limit=20&cursor=${first.nextCursor}`, tokens[i % tokens.length]!);
        return r.status !== 200 ? `status ${r.status}` : checkPage(JSON.parse(r.body).items, user(i));
      });
      await measure(`HTTP + JWT + RLS: unread badge (c=1)`, async (i) => {
        const r = await request('GET', '/api/notifications/unread-count', tokens[unreadUser(i)]!);
        return r.status !== 200 ? `status ${r.status}` : JSON.parse(r.body).count > 0 ? undefined : 'badge shows 0';
      });
      await measure(`HTTP + JWT + RLS: mark one read (c=1)`, async (i, mark) => {
        // Users 600-999: mark all read (below) uses 0-599.
        const k = 600 + (i % 400);
        const id = (await observer.query(`SELECT id FROM notifications WHERE user_id = $1 AND read_at IS NULL ORDER BY created_at DESC LIMIT 1`, [USERS[k]])).rows[0]?.id;
        mark();
        const r = await request('POST', `/api/notifications/${id}/read`, tokens[k]!);
        return r.status !== 200 ? `status ${r.status}` : undefined;
      });
      // 200 users, each once (a second call would find nothing unread).
      await measure(`HTTP + JWT + RLS: mark all read, ~${Math.round((rows / 1000) * 0.3)} unread (c=1)`, async (i) => {
        const r = await request('POST', '/api/notifications/read-all', tokens[((rep * 200) % 600) + i]!);
        return r.status !== 200 ? `status ${r.status}` : JSON.parse(r.body).updated > 0 ? undefined : 'nothing was unread';
      }, Math.min(200, iterations), false);
    }
  } finally {
    agent.destroy();
    await server.stop();
    await h.close();
    await observer.end();
  }
}

/**
 * The inbox table the inbox cases read: `rows` notifications for the 1,000 bench USERS (user
 * `g % 1000`), time-ordered ids, 30 days of history, ~70 % read, built with generate_series (not
 * through the API), then vacuumed, analyzed and checkpointed so the build's dirty pages are not
 * flushed while latencies are measured. Also used by bench/inbox-layers.ts.
 */
export async function buildInboxTable(client: pg.Client, rows: number): Promise<void> {
  await client.query(
    `INSERT INTO notifications (id, user_id, tenant_id, title, body, type, action_url, data, read_at, created_at)
     SELECT (lpad(to_hex((extract(epoch FROM ts) * 1000)::bigint), 12, '0') || '7' || substr(hx, 1, 3) || '8' || substr(hx, 4, 15))::uuid,
            ('00000000-0000-7000-8000-' || lpad((g % 1000)::text, 12, '0'))::uuid,
            '00000000-0000-7000-8000-00000000beef', 'Item it-' || g || ' is ready',
            'Benchmark event ' || g || ': the item was processed for you.', 'info', '/items/it-' || g,
            jsonb_build_object('seq', g), CASE WHEN (g / 1000) % 10 < 7 THEN ts + interval '1 hour' END, ts
     FROM generate_series(1, $1::int) g,
          LATERAL (SELECT now() - interval '30 days' + (g::float8 / $1) * interval '30 days' AS ts, md5(g::text) AS hx) x`,
    [rows],
  );
  await client.query('VACUUM ANALYZE notifications');
  await client.query('CHECKPOINT');
}
