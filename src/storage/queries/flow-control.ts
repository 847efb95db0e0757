import type { Queryable } from '../db.ts';

/**
 * Takes one of `parallelism` slots of a flow key for `holder` until `leaseMs` from now; returns
 * the slot, or undefined when all are busy. A slot whose holder's lease ran out is free again.
 */
export async function takeFlowSlot(tx: Queryable, key: string, parallelism: number, holder: string, leaseMs: number): Promise<number | undefined> {
  await tx.query(
    `INSERT INTO herald_flow_slots (key, slot) SELECT $1, s FROM generate_series(0, $2 - 1) AS s
     ON CONFLICT (key, slot) DO NOTHING`,
    [key, parallelism],
  );
  const { rows } = await tx.query<{ slot: number }>(
    `UPDATE herald_flow_slots SET holder = $3, held_until = now() + make_interval(secs => $4::double precision / 1000)
     WHERE (key, slot) = (
       SELECT key, slot FROM herald_flow_slots
       WHERE key = $1 AND slot < $2 AND (holder IS NULL OR held_until < now() OR holder = $3)
       ORDER BY slot LIMIT 1 FOR UPDATE SKIP LOCKED)
     RETURNING slot`,
    [key, parallelism, holder, leaseMs],
  );
  return rows[0]?.slot;
}

export async function releaseFlowSlot(db: Queryable, key: string, holder: string): Promise<void> {
  await db.query(`UPDATE herald_flow_slots SET holder = NULL, held_until = NULL WHERE key = $1 AND holder = $2`, [key, holder]);
}

/**
 * Counts a delivery start against `rate` per `periodMs` window; returns 0 when it may start now,
 * else how long until the window ends.
 */
export async function takeFlowRate(tx: Queryable, key: string, rate: number, periodMs: number): Promise<number> {
  const { rows } = await tx.query<{ started: number; wait_ms: number }>(
    `WITH w AS (
       SELECT to_timestamp(floor(extract(epoch FROM now()) * 1000 / $3) * $3 / 1000) AS start)
     INSERT INTO herald_flow_windows AS f (key, window_start, started)
     SELECT $1, w.start, 1 FROM w
     ON CONFLICT (key, window_start) DO UPDATE SET started = f.started + 1 WHERE f.started < $2
     RETURNING started, 0 AS wait_ms`,
    [key, rate, periodMs],
  );
  if (rows[0]) return 0;
  const { rows: wait } = await tx.query<{ wait_ms: number }>(
    `WITH t AS (SELECT extract(epoch FROM now())::double precision * 1000 AS ms)
     SELECT greatest(1, ceil((floor(t.ms / $1::double precision) + 1) * $1::double precision - t.ms))::int AS wait_ms FROM t`,
    [periodMs],
  );
  return wait[0]!.wait_ms;
}

/** Maintenance: windows that have passed are forgotten. */
export async function pruneFlowWindows(tx: Queryable): Promise<number> {
  return (await tx.query(`DELETE FROM herald_flow_windows WHERE window_start < now() - interval '1 day'`)).rowCount;
}
