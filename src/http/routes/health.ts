import { Hono } from 'hono';
import { DatabaseUnavailableError } from '../../errors.ts';
import type { Db } from '../../storage/db.ts';
import type { AppEnv } from '../context.ts';
import { databaseUnavailable, refusalResponse } from '../unavailable.ts';

/**
 * How long readiness waits for the database. A probe that hangs (a server that accepts TCP and
 * never answers, a pool whose every connection is stuck) must not hang the probe's caller:
 * orchestrators time probes out and count that as failure anyway, and a hung request holds a
 * socket. One probe query is in flight per database at a time: callers while it runs share it,
 * so a stuck database costs one pool connection, not one per probe.
 */
const READY_PROBE_MS = 1000;
const probes = new WeakMap<Db, Promise<void>>();

function probe(db: Db): Promise<void> {
  let running = probes.get(db);
  if (!running) {
    running = db.query(`SELECT 1 FROM herald_migrations LIMIT 1`).then(
      () => void probes.delete(db),
      (err: unknown) => {
        probes.delete(db);
        throw err;
      },
    );
    running.catch(() => {}); // its callers may have stopped waiting
    probes.set(db, running);
  }
  return running;
}

async function databaseReady(db: Db): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DatabaseUnavailableError(`the database did not answer the readiness probe within ${READY_PROBE_MS} ms`)), READY_PROBE_MS);
  });
  try {
    await Promise.race([probe(db), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

export const healthRoutes = new Hono<AppEnv>()
  // Liveness: the process answers. Never the database: an orchestrator restarts a process whose
  // liveness fails, and restarting every process whenever the database blinks helps nobody.
  .get('/healthz', (c) => c.json({ ok: true }))
  // Readiness: the database answers (within READY_PROBE_MS) and the schema is migrated.
  .get('/readyz', async (c) => {
    const engine = c.get('engine');
    try {
      await databaseReady(engine.db);
      return c.json({ ok: true, database: engine.db.kind });
    } catch (err) {
      const unavailable = databaseUnavailable(err);
      // Not migrated (42P01) or another error of the probe itself: not ready either, said as it is.
      if (!unavailable) {
        engine.log.warn({ err: (err as Error).message }, 'readiness check failed');
        return c.json({ ok: false, error: 'database not ready' }, 503);
      }
      return refusalResponse(c, unavailable);
    }
  });
