import { randomUUID } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { uuidv7 } from '../../src/ids.ts';
import { openHerald, TENANT, USERS } from '../lib/herald.ts';
import type { ModeResult } from '../lib/result.ts';
import type { Sizes } from '../lib/sizes.ts';
import { now } from '../lib/stats.ts';
import { startMeter } from '../lib/usage.ts';

/**
 * What Postgres itself does on herald's notifications table (its indexes, its dedupe key, a
 * full-size row), with no herald in the way: the ceilings every herald number is compared with.
 * Runs as the bootstrap superuser, so RLS is not in the way either.
 */
type Row = [string, string, string, string, string, string, string, string, string, string];

const COLS = 'id, user_id, tenant_id, title, body, type, action_url, data, event_id, dedupe_key';

function makeRows(n: number): Row[] {
  return Array.from({ length: n }, (_, i) => {
    const user = USERS[i % USERS.length]!;
    const event = uuidv7();
    return [
      uuidv7(),
      user,
      TENANT,
      `Item it-${i} is ready`,
      `Benchmark event ${i}: the item «it-${i}» was processed for you. ${randomUUID()}`,
      'info',
      `/items/it-${i}`,
      JSON.stringify({ seq: i, item: `it-${i}` }),
      event,
      `${event}:in_app:${user}`,
    ];
  });
}

const copyLine = (r: Row) => r.map((v) => v.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n')).join('\t') + '\n';

/** A prepared insert method: connections are opened before the clock starts and closed after. */
interface Method {
  run(rows: Row[], deadline: number): Promise<number>;
  close(): Promise<void>;
}

async function measure(observer: pg.Client, subject: string, mode: string, rows: Row[], method: Method, maxMs: number): Promise<ModeResult> {
  await observer.query('TRUNCATE notifications');
  await observer.query('CHECKPOINT');
  const meter = await startMeter(observer);
  const t0 = now();
  const done = await method.run(rows, t0 + maxMs);
  const ms = now() - t0;
  const usage = await meter.stop();
  await method.close();
  const { rows: c } = await observer.query<{ n: number; ids: number }>(
    `SELECT count(*)::int AS n, count(DISTINCT id)::int AS ids FROM notifications`,
  );
  const verified = c[0]!.n === done && c[0]!.ids === done ? 'ok' : `${c[0]!.n} rows (${c[0]!.ids} ids) for ${done} inserted`;
  return { subject, mode, events: done, rate: (done * 1000) / ms, usage, verified };
}

async function openPool(url: string, size: number): Promise<pg.Pool> {
  const pool = new pg.Pool({ connectionString: url, max: size });
  const clients = await Promise.all(Array.from({ length: size }, () => pool.connect()));
  for (const c of clients) c.release();
  return pool;
}

/** `conns` connections, each taking the next `batch` rows until none are left or time is up. */
async function pooled(url: string, conns: number, batch: number, insert: (pool: pg.Pool, rows: Row[]) => Promise<unknown>): Promise<Method> {
  const pool = await openPool(url, conns);
  return {
    async run(rows, deadline) {
      let next = 0;
      let done = 0;
      await Promise.all(
        Array.from({ length: conns }, async () => {
          while (next < rows.length && now() < deadline) {
            const part = rows.slice(next, next + batch);
            next += part.length;
            await insert(pool, part);
            done += part.length;
          }
        }),
      );
      return done;
    },
    close: () => pool.end(),
  };
}

const insertOne = (pool: pg.Pool, rows: Row[]) =>
  pool.query(`INSERT INTO notifications (${COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8::jsonb,$9,$10)`, rows[0]!);

const insertUnnest = (pool: pg.Pool, rows: Row[]) =>
  pool.query(
    `INSERT INTO notifications (${COLS})
     SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $8::jsonb[], $9::uuid[], $10::text[])`,
    rows[0]!.map((_, k) => rows.map((r) => r[k])),
  );

async function copyMethod(url: string): Promise<Method> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  return {
    async run(rows) {
      const chunks = function* () {
        for (let i = 0; i < rows.length; i += 1000) yield rows.slice(i, i + 1000).map(copyLine).join('');
      };
      await pipeline(Readable.from(chunks()), c.query(copyFrom(`COPY notifications (${COLS}) FROM STDIN`)));
      return rows.length;
    },
    close: () => c.end(),
  };
}

export async function runRaw(url: string, sizes: Sizes, report: (r: ModeResult) => void): Promise<void> {
  const h = await openHerald({ databaseUrl: url }); // only to create the schema
  await h.close();
  const observer = new pg.Client({ connectionString: url });
  await observer.connect();
  const subject = 'raw Postgres (notifications table)';
  const all = makeRows(Math.max(sizes.raw.rowTxN, sizes.raw.unnestN, sizes.raw.copyN));
  const { maxMs } = sizes.raw;
  try {
    report(await measure(observer, subject, 'INSERT 1 row/tx, 16 connections', all.slice(0, sizes.raw.rowTxN), await pooled(url, 16, 1, insertOne), maxMs));
    for (const conns of [1, 2]) {
      const mode = `INSERT … unnest, 1,000 rows/statement, ${conns} connection${conns > 1 ? 's' : ''}`;
      report(await measure(observer, subject, mode, all.slice(0, sizes.raw.unnestN), await pooled(url, conns, 1000, insertUnnest), maxMs));
    }
    report(await measure(observer, subject, 'COPY, 1 connection', all.slice(0, sizes.raw.copyN), await copyMethod(url), maxMs));
  } finally {
    await observer.end();
  }
}
