/**
 * What the fault tests of issue 24 share: a real `herald start` process, signed emits at a steady
 * rate (each with its own Idempotency-Key, carried in the event as `ctx.obra.id` too, so the
 * stored rows can be counted per key), the client's retries of every request that was not
 * acknowledged, and the ledger: acknowledged / lost / duplicated, read back from the database.
 */
import { randomUUID } from 'node:crypto';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import pg from 'pg';
import { Agent, request } from 'undici';
import { signXSignature } from '../../src/signing.ts';
import { startHerald, type Proc } from '../helpers/processes.ts';

export const SIGNING_SECRET = 'fault-test-signing-secret-0123456789';
const JWT_SECRET = 'fault-test-jwt-secret-0123456789-0123456789';

/**
 * A client gives up on a request after this long and records it as hung: no answer of herald's,
 * whatever the fault, may take longer (the issue: "no hang beyond a bound").
 */
export const CLIENT_TIMEOUT_MS = 10_000;

export interface Herald {
  proc: Proc;
  url: string;
  /** true while the process runs (it must live through every fault). */
  alive(): boolean;
  /** How it ended, with the end of its output: the evidence when it did not live. */
  death(): string;
  stop(): Promise<void>;
}

/** `herald start` against `databaseUrl` (migrating it), as an operator would run it. */
export async function startHeraldOn(databaseUrl: string, env: Record<string, string> = {}): Promise<Herald> {
  const proc = startHerald(['start'], {
    DATABASE_URL: databaseUrl,
    REQUEST_SIGNING_SECRET: SIGNING_SECRET,
    REQUEST_SIGNING_DISABLED: '',
    JWT_SECRET,
    HOST: '127.0.0.1',
    PORT: '0',
    WORKFLOWS_DISABLED: '',
    WORKFLOWS_ENABLED: '',
    HERALD_JOB_POLL_MS: '50',
    // A job whose connection died mid-flight runs again when its lease runs out (30 s by default):
    // shorter here, so "the worker resumed" is checked within the test's bound.
    HERALD_JOB_LEASE_MS: '5000',
    HERALD_LOG_LEVEL: 'info',
    NODE_ENV: 'production',
    ...env,
  });
  let url: string;
  try {
    url = (await proc.waitFor(/"url":"(http:[^"]+)","msg":"listening"/, 30_000))[1]!;
    await proc.waitFor(/"msg":"worker started"/, 30_000);
  } catch (err) {
    await proc.kill('SIGKILL');
    throw err;
  }
  const alive = () => proc.child.exitCode === null && proc.child.signalCode === null;
  return {
    proc,
    url,
    alive,
    death: () =>
      alive()
        ? 'still running'
        : `herald exited (code ${proc.child.exitCode}, signal ${proc.child.signalCode}); its last output:\n${tail(proc.output(), 40)}`,
    stop: () => proc.kill('SIGTERM'),
  };
}

/**
 * herald's own warnings and errors (pino level >= 40), grouped by message and error with counts and
 * first/last time relative to `since`: the evidence of what herald saw during a fault.
 */
export function heraldComplaints(output: string, since = 0): string {
  const groups = new Map<string, { n: number; first: number; last: number }>();
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    let entry: { level?: number; time?: number; msg?: string; err?: unknown };
    try {
      entry = JSON.parse(line);
    } catch {
      continue;
    }
    if ((entry.level ?? 0) < 40) continue;
    const err = typeof entry.err === 'string' ? entry.err : JSON.stringify(entry.err ?? '');
    const key = `${entry.level === 40 ? 'warn' : entry.level === 50 ? 'error' : `level ${entry.level}`} ${entry.msg}: ${err.slice(0, 200)}`;
    const g = groups.get(key) ?? { n: 0, first: entry.time ?? 0, last: 0 };
    g.n++;
    g.last = entry.time ?? 0;
    groups.set(key, g);
  }
  return [...groups]
    .map(([k, g]) => `  ${g.n}x ${k} (${since ? `${signed(g.first - since)}..${signed(g.last - since)} ms` : ''})`)
    .join('\n');
}

const signed = (n: number) => (n < 0 ? `${n}` : `+${n}`);

export const tail = (text: string, lines: number) => text.trimEnd().split('\n').slice(-lines).join('\n');

/** A tenant of three users (the actor and two recipients), written straight into the directory. */
export async function seedTenant(databaseUrl: string): Promise<{ tenantId: string; actorId: string }> {
  const tenantId = randomUUID();
  const ids = [randomUUID(), randomUUID(), randomUUID()];
  await withClient(databaseUrl, (c) =>
    c.query(
      `INSERT INTO herald_users (id, tenant_id, name, locale) SELECT u, $1, 'user', 'es' FROM unnest($2::uuid[]) u`,
      [tenantId, ids],
    ),
  );
  return { tenantId, actorId: ids[0]! };
}
/** Each event reaches the tenant's users except its actor. */
export const RECIPIENTS_PER_EVENT = 2;

export async function withClient<T>(databaseUrl: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 5000 });
  c.on('error', () => {});
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => {});
  }
}

/** One emit as the client saw it. */
export interface Attempt {
  sentAt: number;
  answeredAt: number;
  /** The HTTP status, or 'hung' (no answer within CLIENT_TIMEOUT_MS) / 'refused' / 'reset' / another transport failure. */
  status: number | string;
  retryAfter: string | null;
  body: string;
  eventId?: string;
}
export interface EmitRecord {
  key: string;
  raw: string;
  attempts: Attempt[];
}

/**
 * The client: undici's request, not fetch (a third of fetch's CPU per request, measured here: the
 * test process shares two cores with herald and Postgres), on its own keep-alive pool.
 */
const client = new Agent({ connections: null });

/** Sends one signed emit with its key; never throws (a transport failure is an outcome too). */
export async function sendEmit(url: string, rec: EmitRecord): Promise<Attempt> {
  const sentAt = Date.now();
  try {
    const res = await request(`${url}/api/notifications/emit`, {
      method: 'POST',
      body: rec.raw,
      headers: {
        'content-type': 'application/json',
        'idempotency-key': rec.key,
        'x-signature': signXSignature(Buffer.from(SIGNING_SECRET), rec.raw),
      },
      signal: AbortSignal.timeout(CLIENT_TIMEOUT_MS),
      dispatcher: client,
    });
    const body = await res.body.text();
    const status = res.statusCode;
    const retryAfter = res.headers['retry-after'];
    let eventId: string | undefined;
    if (status === 200) eventId = (JSON.parse(body) as { eventId?: string }).eventId;
    return { sentAt, answeredAt: Date.now(), status, retryAfter: retryAfter === undefined ? null : String(retryAfter), body: body.slice(0, 300), eventId };
  } catch (err) {
    const e = err as Error & { code?: string };
    const answeredAt = Date.now();
    const status =
      e.name === 'TimeoutError' || e.name === 'AbortError' || e.code === 'UND_ERR_ABORTED' || answeredAt - sentAt >= CLIENT_TIMEOUT_MS
        ? 'hung'
        : e.code === 'ECONNREFUSED'
          ? 'refused'
          : e.code === 'ECONNRESET' || e.code === 'UND_ERR_SOCKET' || e.code === 'EPIPE'
            ? 'reset'
            : `error:${e.code ?? e.message}`;
    return { sentAt, answeredAt, status, retryAfter: null, body: '' };
  }
}

export interface Load {
  records: EmitRecord[];
  /** The first attempt of every request sent so far. */
  firsts(): Attempt[];
  /** Sends per second actually offered (below the target when this process could not keep up). */
  offeredRate(): number;
  /** The test process's own event-loop delay (ms): inflates every client-side time it measures. */
  clientLag(): { p99: number; max: number };
  /** Stops sending and waits for every request in flight to settle (each is bounded). */
  stop(): Promise<EmitRecord[]>;
}

/** At most this many requests wait for answers at once; beyond it a send is skipped, not queued. */
const MAX_IN_FLIGHT = 3000;
const activeLoads = new Set<Load>();
/** For the files' after hooks: a test that failed (or timed out) half-way leaves no load running. */
export const stopAllLoads = () => Promise.all([...activeLoads].map((l) => l.stop()));

/** Emits at `rate` per second, each request with a unique Idempotency-Key, until stopped. */
export function startLoad(url: string, tenant: { tenantId: string; actorId: string }, rate: number, label: string): Load {
  const records: EmitRecord[] = [];
  const inFlight = new Set<Promise<void>>();
  const started = Date.now();
  let stoppedAt: number | undefined;
  const lag = monitorEventLoopDelay({ resolution: 10 });
  lag.enable();
  const fire = () => {
    const key = `${label}-${records.length}-${randomUUID().slice(0, 8)}`;
    const raw = JSON.stringify({
      type: 'obra.completed',
      ctx: { tenantId: tenant.tenantId, actorId: tenant.actorId, obra: { id: key, name: 'Escuela N° 42', percentage: 100 } },
    });
    const rec: EmitRecord = { key, raw, attempts: [] };
    records.push(rec);
    const p = sendEmit(url, rec).then((a) => {
      rec.attempts.unshift(a);
      inFlight.delete(p);
    });
    inFlight.add(p);
  };
  // Paced by the clock, not by answers: a stalled herald keeps receiving requests, as in
  // production. When this process falls behind (a busy box), the missed sends are dropped rather
  // than fired in a burst (at most 100 ms of them carry over), so the offered rate never exceeds
  // the target; offeredRate() says what was actually sent.
  let credit = 0;
  let last = started;
  const timer = setInterval(() => {
    const now = Date.now();
    credit = Math.min(credit + ((now - last) * rate) / 1000, rate / 10);
    last = now;
    for (; credit >= 1; credit--) if (inFlight.size < MAX_IN_FLIGHT) fire();
  }, 5);
  timer.unref();
  const load: Load = {
    records,
    firsts: () => records.filter((r) => r.attempts.length).map(firstAttempt),
    offeredRate: () => Math.round((records.length * 1000) / Math.max(1, (stoppedAt ?? Date.now()) - started)),
    clientLag: () => ({ p99: Math.round(lag.percentile(99) / 1e6), max: Math.round(lag.max / 1e6) }),
    async stop() {
      stoppedAt ??= Date.now();
      clearInterval(timer);
      activeLoads.delete(load);
      while (inFlight.size) await Promise.all([...inFlight]);
      lag.disable();
      return records;
    },
  };
  activeLoads.add(load);
  return load;
}

/**
 * The client's side of an outage: every request that was not acknowledged is sent again with its
 * key and body until it is (at most `ms`), honouring no more than a short pause between rounds.
 * Returns the records still not acknowledged.
 */
export async function retryUnacknowledged(url: string, records: EmitRecord[], ms = 20_000): Promise<EmitRecord[]> {
  const deadline = Date.now() + ms;
  let pending = records.filter((r) => r.attempts[0]?.status !== 200);
  while (pending.length && Date.now() < deadline) {
    // A few at a time: the retries must not become an overload of their own. (Fifty at once met an
    // emits-in-progress limit kept low by a loaded box, and most of each round was refused 429.)
    for (let i = 0; i < pending.length && Date.now() < deadline; i += 10) {
      await Promise.all(pending.slice(i, i + 10).map(async (r) => r.attempts.unshift(await sendEmit(url, r))));
    }
    pending = pending.filter((r) => r.attempts[0]!.status !== 200);
    if (pending.length) await new Promise((r) => setTimeout(r, 200));
  }
  return pending;
}

export interface Ledger {
  sent: number;
  /** Requests whose first attempt was answered 200. */
  acknowledged: number;
  /** Acknowledged (at first or on a retry) but no stored event: must be 0. */
  lost: number;
  /** Keys with more than one stored event: must be 0. */
  duplicated: number;
  /** A 200 whose eventId is not the stored event's id (a replay that answers a different event). */
  mismatched: number;
  /** Not acknowledged at first, yet stored (the write committed while the answer was a 503: outcome unknown). */
  storedUnacknowledged: number;
  rows: Map<string, { n: number; id: string }>;
}

/** Reads the stored events back and checks them against the answers, key by key. */
export async function ledger(databaseUrl: string, records: EmitRecord[]): Promise<Ledger> {
  const rows = new Map<string, { n: number; id: string }>();
  await withClient(databaseUrl, async (c) => {
    const res = await c.query<{ key: string; n: number; id: string }>(
      `SELECT ctx->'obra'->>'id' AS key, count(*)::int AS n, min(id::text) AS id FROM herald_events GROUP BY 1`,
    );
    for (const r of res.rows) rows.set(r.key, { n: r.n, id: r.id });
  });
  let lost = 0;
  let mismatched = 0;
  let storedUnacknowledged = 0;
  let acknowledged = 0;
  for (const r of records) {
    const first = r.attempts[r.attempts.length - 1];
    if (first?.status === 200) acknowledged++;
    const row = rows.get(r.key);
    const oks = r.attempts.filter((a) => a.status === 200);
    if (oks.length && !row) lost++;
    if (row && oks.some((a) => a.eventId !== row.id)) mismatched++;
    if (row && first?.status !== 200) storedUnacknowledged++;
  }
  const duplicated = [...rows.values()].filter((r) => r.n > 1).length;
  return { sent: records.length, acknowledged, lost, duplicated, mismatched, storedUnacknowledged, rows };
}

/** The first attempt of each record (records keep their attempts newest first). */
export const firstAttempt = (r: EmitRecord) => r.attempts[r.attempts.length - 1]!;

/** Counts outcomes by status ('503', '500', 'hung', ...). */
export function tally(attempts: { status: number | string }[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const a of attempts) out[String(a.status)] = (out[String(a.status)] ?? 0) + 1;
  return out;
}

/**
 * What the requests sent in each second from `from` got, compactly ("+0s 503x98 429x2 | +1s ..."):
 * shows how an answer changes over a fault (e.g. overload sheds first, then 503s).
 */
export function timeline(attempts: Attempt[], from: number, to: number, bucketMs = 1000): string {
  const buckets: Record<string, number>[] = [];
  for (const a of attempts) {
    if (a.sentAt < from || a.sentAt >= to) continue;
    const b = (buckets[Math.floor((a.sentAt - from) / bucketMs)] ??= {});
    b[String(a.status)] = (b[String(a.status)] ?? 0) + 1;
  }
  return [...buckets]
    .map((b, i) => `+${(i * bucketMs) / 1000}s ${Object.entries(b ?? {}).map(([k, v]) => `${k}x${v}`).join(' ')}`)
    .join(' | ');
}

/** A few examples of each unexpected outcome, for the failure message. */
export function examples(attempts: Attempt[], n = 3): string {
  const byStatus = new Map<string, Attempt[]>();
  for (const a of attempts) byStatus.set(String(a.status), [...(byStatus.get(String(a.status)) ?? []), a]);
  return [...byStatus]
    .map(([s, as]) => `${s} ×${as.length}: ${as.slice(0, n).map((a) => `${a.answeredAt - a.sentAt} ms ${JSON.stringify(a.body.slice(0, 120))}`).join(' | ')}`)
    .join('\n');
}

/** Waits until every stored event was expanded into its inbox rows (the worker ran), or `ms` passed. */
export async function expansion(databaseUrl: string, ms: number): Promise<{ events: number; pending: number; inboxRows: number; missingRows: number }> {
  const deadline = Date.now() + ms;
  for (;;) {
    const s = await withClient(databaseUrl, async (c) => {
      const r = await c.query<{ events: number; pending: number; inbox_rows: number; missing: number }>(
        `SELECT (SELECT count(*)::int FROM herald_events) AS events,
                (SELECT count(*)::int FROM herald_events WHERE processed_at IS NULL) AS pending,
                (SELECT count(*)::int FROM notifications) AS inbox_rows,
                (SELECT count(*)::int FROM herald_events e
                  WHERE (SELECT count(*) FROM notifications n WHERE n.event_id = e.id) <> $1) AS missing`,
        [RECIPIENTS_PER_EVENT],
      );
      return r.rows[0]!;
    }).catch(() => undefined);
    if (s && s.pending === 0 && s.missing === 0) return { events: s.events, pending: 0, inboxRows: s.inbox_rows, missingRows: 0 };
    if (Date.now() > deadline) {
      return s
        ? { events: s.events, pending: s.pending, inboxRows: s.inbox_rows, missingRows: s.missing }
        : { events: -1, pending: -1, inboxRows: -1, missingRows: -1 };
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Inbox rows of the events that were acknowledged after `since` (the worker resumed, not just caught up before). */
export async function inboxRowsOfEventsAfter(databaseUrl: string, eventIds: string[]): Promise<number> {
  if (!eventIds.length) return 0;
  return withClient(databaseUrl, async (c) => {
    const r = await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM notifications WHERE event_id = ANY($1::uuid[])`, [eventIds]);
    return r.rows[0]!.n;
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
