/**
 * The Row Level Security matrix of `notifications`, checked through SQL exactly as the server runs
 * it: a transaction that becomes `herald_user` with the caller's claims (storage/queries/session.ts)
 * and then queries. The test itself connects as a superuser (which bypasses RLS), so every check
 * switches role inside a transaction; superuser reads are used only to verify what really happened.
 * The policies under test (storage/migrations/0001_foundation.sql): a user selects, updates and
 * deletes only rows whose user_id is their auth.uid() and never inserts; the engine inserts and
 * reads only as herald_engine with herald.actor = 'engine'.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import type { Db, Queryable } from '../../src/storage/db.ts';
import { openStorage } from '../../src/storage/open.ts';
import { becomeUser } from '../../src/storage/queries/session.ts';
import { insertEventNotifications, insertNotifications } from '../../src/storage/queries/notifications.ts';
import { asUser } from '../../src/inbox/as-user.ts';
import { uuidv7 } from '../../src/ids.ts';

import { ADMIN_URL, BACKEND } from '../helpers/db.ts';
import { createTestHerald, type TestHerald } from '../helpers/herald.ts';

const STATE_COLUMNS = ['archived_at', 'read_at', 'seen_at'];

type Row = Record<string, unknown>;

/** The SQLSTATE of a driver error (pg and PGlite both expose `code`). */
const sqlState = (err: unknown): string | undefined => (err as { code?: string } | null)?.code;

/** Asserts that `p` rejects with the given SQLSTATE. */
async function rejectsWith(p: Promise<unknown>, code: string, what: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.equal(sqlState(err), code, `${what}: expected SQLSTATE ${code}, got ${sqlState(err)} (${(err as Error).message})`);
    return true;
  });
}

class Rollback extends Error {}

/** Runs `fn` in a transaction that is always rolled back, returning fn's result. */
async function inRolledBackTx<T>(db: Db, fn: (tx: Queryable) => Promise<T>): Promise<T> {
  let out: T | undefined;
  await assert.rejects(
    db.transaction(async (tx) => {
      out = await fn(tx);
      throw new Rollback();
    }),
    Rollback,
  );
  return out as T;
}

/** One request as end user `sub`, the way the server does it (asUser: identity set with BEGIN). */
function asSub<T>(db: Db, sub: string, fn: (tx: Queryable) => Promise<T>, claims: Record<string, unknown> = {}): Promise<T> {
  return asUser(db, { ...claims, sub, role: 'authenticated' }, fn);
}

/** A transaction as role herald_user with arbitrary settings (claims text, claim.sub), or none. */
function asRaw<T>(db: Db, settings: Record<string, string>, fn: (tx: Queryable) => Promise<T>): Promise<T> {
  return db.transaction(async (tx) => {
    await tx.query(`SELECT set_config('role', 'herald_user', true)`);
    for (const [k, v] of Object.entries(settings)) await tx.query(`SELECT set_config($1, $2, true)`, [k, v]);
    return fn(tx);
  });
}

/** Emits a flujo action to `recipientIds` in direct mode; returns the event id. */
async function emitTo(h: TestHerald, recipientIds: string[], action = 'Aprobar'): Promise<string> {
  const res = await h.post('/api/notifications/emit', {
    type: 'flujo.action.triggered',
    ctx: { tenantId: randomUUID(), flujo: { id: 'f-1', name: 'Compras' }, action: { name: action }, recipientIds },
  });
  const body = (await res.json()) as { inserted: number; eventId: string };
  assert.equal(res.status, 200, JSON.stringify(body));
  assert.equal(body.inserted, recipientIds.length);
  return body.eventId;
}

/** What the superuser sees of a user's rows (the ground truth, RLS bypassed). */
async function truth(h: TestHerald, userId: string): Promise<Row[]> {
  return (await h.db.query(`SELECT * FROM notifications WHERE user_id = $1 ORDER BY id`, [userId])).rows;
}

/** The identity a connection carries outside any transaction. */
async function identity(q: Queryable) {
  const { rows } = await q.query<{ pid: number; usr: string; claims: string | null; sub: string | null; uid: string | null }>(
    `SELECT pg_backend_pid() AS pid, current_user::text AS usr,
            current_setting('request.jwt.claims', true) AS claims,
            current_setting('request.jwt.claim.sub', true) AS sub,
            auth.uid()::text AS uid`,
  );
  return rows[0]!;
}

function assertNoIdentity(id: Awaited<ReturnType<typeof identity>>, when: string): void {
  assert.notEqual(id.usr, 'herald_user', `${when}: role herald_user leaked`);
  assert.notEqual(id.usr, 'herald_engine', `${when}: role herald_engine leaked`);
  assert.ok(id.claims === null || id.claims === '', `${when}: claims leaked: ${id.claims}`);
  assert.ok(id.sub === null || id.sub === '', `${when}: claim.sub leaked: ${id.sub}`);
  assert.equal(id.uid, null, `${when}: auth.uid() is not null`);
}

describe('RLS matrix through SQL as herald_user', () => {
  let h: TestHerald;
  const A = randomUUID();
  const B = randomUUID();
  let aIds: string[];
  let bIds: string[];

  before(async () => {
    h = await createTestHerald({ env: { WORKFLOWS_DISABLED: '1' } });
    await emitTo(h, [A, B], 'Compartida');
    await emitTo(h, [A], 'Solo A');
    await emitTo(h, [B], 'Solo B');
    aIds = (await truth(h, A)).map((r) => r.id as string);
    bIds = (await truth(h, B)).map((r) => r.id as string);
    assert.equal(aIds.length, 2);
    assert.equal(bIds.length, 2);
  });
  after(async () => {
    await h?.close();
  });

  test('A reads only A’s rows; B’s rows are invisible, by id or by user_id', async () => {
    await asSub(h.db, A, async (tx) => {
      const all = (await tx.query<{ id: string; user_id: string }>(`SELECT id, user_id FROM notifications`)).rows;
      assert.deepEqual(all.map((r) => r.id).sort(), [...aIds].sort());
      assert.ok(all.every((r) => r.user_id === A));
      assert.equal((await tx.query(`SELECT * FROM notifications WHERE id = ANY($1::uuid[])`, [bIds])).rows.length, 0);
      assert.equal((await tx.query(`SELECT * FROM notifications WHERE user_id = $1`, [B])).rows.length, 0);
      const { rows } = await tx.query<{ n: number }>(`SELECT count(*)::int AS n FROM notifications WHERE user_id <> $1`, [A]);
      assert.equal(rows[0]!.n, 0);
      const me = await tx.query<{ usr: string; uid: string }>(`SELECT current_user::text AS usr, auth.uid()::text AS uid`);
      assert.deepEqual(me.rows[0], { usr: 'herald_user', uid: A });
    });
  });

  test('A updating B’s read_at / seen_at / archived_at affects 0 rows; B’s rows are unchanged', async () => {
    const before = await truth(h, B);
    await asSub(h.db, A, async (tx) => {
      for (const col of STATE_COLUMNS) {
        const r = await tx.query(`UPDATE notifications SET ${col} = now() WHERE id = ANY($1::uuid[]) RETURNING id`, [bIds]);
        assert.equal(r.rows.length, 0, `${col}: RETURNING must be empty`);
        assert.equal(r.rowCount, 0, `${col}: rowCount`);
      }
      const all = await tx.query(`UPDATE notifications SET read_at = now() WHERE user_id = $1 RETURNING id`, [B]);
      assert.equal(all.rows.length, 0);
    });
    assert.deepEqual(await truth(h, B), before);
  });

  test('A updating its own read_at works (positive control), inside a rolled-back transaction', async () => {
    const n = await inRolledBackTx(h.db, async (tx) => {
      const identity = becomeUser({ sub: A });
      await tx.query(identity.text, identity.values);
      return (await tx.query(`UPDATE notifications SET read_at = now(), seen_at = now(), archived_at = now() RETURNING user_id`)).rows;
    });
    assert.deepEqual(
      n.map((r) => r.user_id),
      aIds.map(() => A),
    );
  });

  test('A deleting B’s rows affects 0 rows; B’s rows remain', async () => {
    const before = await truth(h, B);
    await asSub(h.db, A, async (tx) => {
      const r = await tx.query(`DELETE FROM notifications WHERE id = ANY($1::uuid[]) RETURNING id`, [bIds]);
      assert.equal(r.rows.length, 0);
      const r2 = await tx.query(`DELETE FROM notifications WHERE user_id = $1 RETURNING id`, [B]);
      assert.equal(r2.rows.length, 0);
    });
    assert.deepEqual(await truth(h, B), before);
  });

  test('A updating any non-state column of its own row is 42501 (column privilege)', async () => {
    const cols = (
      await h.db.query<{ column_name: string; data_type: string }>(
        `SELECT column_name, data_type FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name = 'notifications' ORDER BY ordinal_position`,
      )
    ).rows.filter((c) => !STATE_COLUMNS.includes(c.column_name));
    assert.ok(cols.some((c) => c.column_name === 'title') && cols.some((c) => c.column_name === 'user_id'));
    const value: Record<string, string> = {
      uuid: `'${randomUUID()}'::uuid`,
      text: `'x'`,
      jsonb: `'{}'::jsonb`,
      'timestamp with time zone': `now()`,
    };
    for (const c of cols) {
      const expr = value[c.data_type];
      assert.ok(expr, `no test value for ${c.data_type}`);
      await rejectsWith(
        asSub(h.db, A, (tx) => tx.query(`UPDATE notifications SET ${c.column_name} = ${expr} WHERE id = $1 RETURNING id`, [aIds[0]])),
        '42501',
        `UPDATE ${c.column_name}`,
      );
    }
    // Mixed with an allowed column it still fails as a whole.
    await rejectsWith(
      asSub(h.db, A, (tx) => tx.query(`UPDATE notifications SET read_at = now(), title = 'pwned' WHERE id = $1`, [aIds[0]])),
      '42501',
      'UPDATE read_at + title',
    );
    const rows = await truth(h, A);
    assert.ok(rows.every((r) => r.title !== 'pwned' && r.read_at === null));
  });

  test('A setting its own user_id := B is 42501 and the row stays A’s', async () => {
    await rejectsWith(
      asSub(h.db, A, (tx) => tx.query(`UPDATE notifications SET user_id = $1 WHERE id = $2 RETURNING id`, [B, aIds[0]])),
      '42501',
      'UPDATE user_id := B',
    );
    await rejectsWith(
      asSub(h.db, A, (tx) => tx.query(`UPDATE notifications SET user_id = $1`, [B])),
      '42501',
      'UPDATE all user_id := B',
    );
    assert.deepEqual(
      (await truth(h, A)).map((r) => r.id),
      aIds.slice().sort(),
    );
  });

  test('A inserting a notification (for itself or for B) is 42501', async () => {
    for (const target of [A, B]) {
      await rejectsWith(
        asSub(h.db, A, (tx) =>
          tx.query(`INSERT INTO notifications (id, user_id, title, type) VALUES ($1, $2, 'forged', 'info')`, [uuidv7(), target]),
        ),
        '42501',
        `INSERT for ${target === A ? 'A' : 'B'}`,
      );
    }
    const { rows } = await h.db.query(`SELECT 1 FROM notifications WHERE title = 'forged'`);
    assert.equal(rows.length, 0);
  });

  test('A cannot TRUNCATE notifications (42501)', async () => {
    await rejectsWith(asSub(h.db, A, (tx) => tx.query(`TRUNCATE notifications`)), '42501', 'TRUNCATE');
    assert.equal((await truth(h, B)).length, 2);
  });

  test('anon (role herald_user, no claims): 0 rows and no error for read, update and delete', async () => {
    await asRaw(h.db, {}, async (tx) => {
      const who = await tx.query<{ usr: string; uid: string | null }>(`SELECT current_user::text AS usr, auth.uid()::text AS uid`);
      assert.deepEqual(who.rows[0], { usr: 'herald_user', uid: null });
      assert.equal((await tx.query(`SELECT * FROM notifications`)).rows.length, 0);
      assert.equal((await tx.query(`UPDATE notifications SET read_at = now() RETURNING id`)).rows.length, 0);
      assert.equal((await tx.query(`DELETE FROM notifications RETURNING id`)).rows.length, 0);
    });
    await rejectsWith(
      asRaw(h.db, {}, (tx) => tx.query(`INSERT INTO notifications (id, user_id, title, type) VALUES ($1, $2, 'x', 'info')`, [uuidv7(), A])),
      '42501',
      'anon INSERT',
    );
    assert.equal((await truth(h, A)).length, 2);
    assert.equal((await truth(h, B)).length, 2);
  });

  test('odd claims (no sub, empty, null, number, non-uuid, not JSON, SQL-ish) fail safe: 0 rows or an error', async () => {
    const variants: Record<string, string>[] = [
      { 'request.jwt.claims': '{}' },
      { 'request.jwt.claims': '{"sub":""}' },
      { 'request.jwt.claims': '{"sub":null}' },
      { 'request.jwt.claims': '{"sub":123}' },
      { 'request.jwt.claims': '{"sub":"not-a-uuid"}' },
      { 'request.jwt.claims': `{"sub":"${A}' OR true --"}` },
      { 'request.jwt.claims': '{"role":"service_role"}' },
      { 'request.jwt.claims': 'not json at all' },
      { 'request.jwt.claims': '' },
      { 'request.jwt.claims': 'null' },
      { 'request.jwt.claims': '[]' },
      { 'request.jwt.claim.sub': '' },
      { 'request.jwt.claim.sub': 'not-a-uuid' },
      { 'request.jwt.claim.sub': '', 'request.jwt.claims': '{"sub":""}' },
    ];
    for (const v of variants) {
      const label = JSON.stringify(v);
      for (const sql of [
        `SELECT id FROM notifications`,
        `UPDATE notifications SET read_at = now() RETURNING id`,
        `DELETE FROM notifications RETURNING id`,
      ]) {
        let rows: Row[] | undefined;
        try {
          rows = await asRaw(h.db, v, async (tx) => (await tx.query(sql)).rows);
        } catch (err) {
          // An error is a safe outcome (e.g. 22P02 for a non-uuid sub); it must be a database error.
          assert.ok(sqlState(err), `${label} ${sql}: unexpected non-SQL error ${(err as Error).message}`);
          continue;
        }
        assert.deepEqual(rows, [], `${label} ${sql}: must see no rows`);
      }
    }
    // The claims handed to the real asUser with a bad sub behave the same way.
    for (const sub of ['', 'not-a-uuid', `${A}x`]) {
      try {
        const rows = await asSub(h.db, sub, async (tx) => (await tx.query(`SELECT id FROM notifications`)).rows);
        assert.deepEqual(rows, [], `sub ${JSON.stringify(sub)}`);
      } catch (err) {
        assert.ok(sqlState(err), `sub ${JSON.stringify(sub)}: ${(err as Error).message}`);
      }
    }
    assert.equal((await truth(h, A)).length, 2, 'nothing was deleted');
    assert.ok((await truth(h, A)).every((r) => r.read_at === null), 'nothing was marked read');
  });

  test('claims reach Postgres exactly as signed, whatever quotes and backslashes they hold', async () => {
    const tricky = { name: `O'Brien \\ "q" ');  DROP TABLE notifications; --`, path: 'C:\\x\\\'y', nl: 'a\nb', uni: 'ñ ✓' };
    const seen = await asSub(h.db, A, async (tx) => {
      const claims = (await tx.query<{ c: Record<string, unknown> }>(`SELECT current_setting('request.jwt.claims')::jsonb AS c`)).rows[0]!.c;
      const ids = (await tx.query<{ id: string }>(`SELECT id FROM notifications`)).rows.map((r) => r.id);
      return { claims, ids };
    }, tricky);
    assert.deepEqual(seen.claims, { ...tricky, sub: A, role: 'authenticated' });
    assert.deepEqual(seen.ids.sort(), [...aIds].sort(), 'still exactly A\'s rows');
    assert.equal((await truth(h, A)).length, 2, 'nothing was dropped or deleted');
  });

  test('an upper-case sub is the same user (uuid comparison), not a different one', async () => {
    const rows = await asSub(h.db, A.toUpperCase(), async (tx) => (await tx.query<{ id: string }>(`SELECT id FROM notifications`)).rows);
    assert.deepEqual(rows.map((r) => r.id).sort(), [...aIds].sort());
  });

  test('Supabase’s request.jwt.claim.sub convention works and auth.uid() returns the sub', async () => {
    const seen = await asRaw(h.db, { 'request.jwt.claim.sub': B }, async (tx) => {
      const uid = (await tx.query<{ uid: string }>(`SELECT auth.uid()::text AS uid`)).rows[0]!.uid;
      const ids = (await tx.query<{ id: string }>(`SELECT id FROM notifications`)).rows.map((r) => r.id);
      return { uid, ids };
    });
    assert.equal(seen.uid, B);
    assert.deepEqual(seen.ids.sort(), [...bIds].sort());
    // request.jwt.claims alone: auth.uid() reads ->> 'sub'.
    const uid2 = await asRaw(h.db, { 'request.jwt.claims': JSON.stringify({ sub: A, role: 'authenticated' }) }, async (tx) =>
      (await tx.query<{ uid: string }>(`SELECT auth.uid()::text AS uid`)).rows[0]!.uid,
    );
    assert.equal(uid2, A);
    // An empty claim.sub (what a reused connection holds) falls through to request.jwt.claims.
    const uid3 = await asRaw(h.db, { 'request.jwt.claim.sub': '', 'request.jwt.claims': JSON.stringify({ sub: A }) }, async (tx) =>
      (await tx.query<{ uid: string }>(`SELECT auth.uid()::text AS uid`)).rows[0]!.uid,
    );
    assert.equal(uid3, A);
    // auth.uid() is typed uuid, as on Supabase.
    const { rows } = await h.db.query<{ t: string }>(`SELECT pg_typeof(auth.uid())::text AS t`);
    assert.equal(rows[0]!.t, 'uuid');
  });

  test('FORCE RLS: the table owner without a policy sees 0 rows (owner role created in a rolled-back tx)', async () => {
    const owner = `herald_t_owner_${randomBytes(5).toString('hex')}`;
    const n = await inRolledBackTx(h.db, async (tx) => {
      await tx.query(`CREATE ROLE ${owner} NOLOGIN NOSUPERUSER NOBYPASSRLS`);
      await tx.query(`ALTER TABLE notifications OWNER TO ${owner}`);
      await tx.query(`SET LOCAL ROLE ${owner}`);
      const r = await tx.query<{ n: number }>(`SELECT count(*)::int AS n FROM notifications`);
      const upd = await tx.query(`UPDATE notifications SET title = 'owner' RETURNING id`);
      return { n: r.rows[0]!.n, upd: upd.rows.length };
    });
    assert.deepEqual(n, { n: 0, upd: 0 });
    const { rows } = await h.db.query<{ owner: string }>(`SELECT relowner::regrole::text AS owner FROM pg_class WHERE oid = 'public.notifications'::regclass`);
    assert.notEqual(rows[0]!.owner, owner, 'ownership change was rolled back');
  });

  describe('connection reuse', () => {
    let db1: Db;
    before(async () => {
      // On Postgres: a pool of exactly one connection, so every request reuses it. PGlite is
      // always a single connection.
      db1 = BACKEND === 'postgres' ? await openStorage({ databaseUrl: h.url!, poolSize: 1 }) : h.db;
    });
    after(async () => {
      if (db1 !== h.db) await db1?.close();
    });

    test('after a user transaction the same connection has no role, no claims and auth.uid() is null', async () => {
      const start = await identity(db1);
      assertNoIdentity(start, 'fresh connection');
      const inside = await asUser(db1, { sub: A }, async (tx) => {
        const id = await identity(tx);
        const n = (await tx.query(`SELECT id FROM notifications`)).rows.length;
        return { ...id, n };
      });
      assert.equal(inside.pid, start.pid, 'same connection');
      assert.equal(inside.usr, 'herald_user');
      assert.equal(inside.uid, A);
      assert.equal(inside.n, 2);
      const afterTx = await identity(db1);
      assert.equal(afterTx.pid, start.pid, 'same connection');
      assertNoIdentity(afterTx, 'after a committed user transaction');
      // A claims-less herald_user transaction on the reused connection: 0 rows and no cast error.
      const anon = await asRaw(db1, {}, async (tx) => ({
        ...(await identity(tx)),
        n: (await tx.query(`SELECT id FROM notifications`)).rows.length,
      }));
      assert.equal(anon.pid, start.pid);
      assert.equal(anon.uid, null);
      assert.equal(anon.n, 0);
    });

    test('after the Supabase-style claim.sub transaction the setting is gone too', async () => {
      await asRaw(db1, { 'request.jwt.claim.sub': B }, async (tx) => {
        assert.equal((await identity(tx)).uid, B);
      });
      assertNoIdentity(await identity(db1), 'after a claim.sub transaction');
    });

    test('after a transaction that errors midway (SQL error, JS throw) nothing leaks', async () => {
      const pid = (await identity(db1)).pid;
      await rejectsWith(
        asUser(db1, { sub: A }, async (tx) => {
          assert.equal((await tx.query(`SELECT id FROM notifications`)).rows.length, 2);
          await tx.query(`SELECT 1 / 0`);
        }),
        '22012',
        'division by zero',
      );
      let id = await identity(db1);
      assert.equal(id.pid, pid);
      assertNoIdentity(id, 'after a transaction aborted by an SQL error');

      await assert.rejects(
        asUser(db1, { sub: B }, async (tx) => {
          await tx.query(`SELECT id FROM notifications`);
          throw new Error('handler failed');
        }),
        /handler failed/,
      );
      id = await identity(db1);
      assert.equal(id.pid, pid);
      assertNoIdentity(id, 'after a transaction whose handler threw');

      // A denied statement (42501) also rolls back cleanly.
      await rejectsWith(
        asUser(db1, { sub: A }, (tx) => tx.query(`UPDATE notifications SET title = 'x'`)),
        '42501',
        'column privilege',
      );
      assertNoIdentity(await identity(db1), 'after a 42501');
      const anonRows = await asRaw(db1, {}, async (tx) => (await tx.query(`SELECT id FROM notifications`)).rows);
      assert.deepEqual(anonRows, []);
    });
  });

  test('pool-leak stress: ~2000 interleaved A/B/anon requests, some erroring, each sees only its own rows', async () => {
    const db2 = BACKEND === 'postgres' ? await openStorage({ databaseUrl: h.url!, poolSize: 2 }) : h.db;
    // A small deterministic PRNG, so a failure can be replayed with the printed seed.
    const seed = randomBytes(4).readUInt32BE(0);
    let s = seed || 1;
    const rand = () => {
      s ^= s << 13;
      s >>>= 0;
      s ^= s >>> 17;
      s ^= s << 5;
      s >>>= 0;
      return s / 0x100000000;
    };
    const own: Record<string, string[]> = { [A]: [...aIds].sort(), [B]: [...bIds].sort() };
    const stats = { user: 0, sqlError: 0, jsError: 0, anon: 0, bare: 0, crossUser: 0, stale: 0 };
    const problems: string[] = [];

    async function request(i: number): Promise<void> {
      const r = rand();
      const who = rand() < 0.5 ? A : B;
      if (r < 0.1) {
        // No user: role herald_user and no claims must see nothing, whatever ran before on this connection.
        stats.anon++;
        const res = await asRaw(db2, {}, async (tx) => ({
          uid: (await tx.query<{ uid: string | null }>(`SELECT auth.uid()::text AS uid`)).rows[0]!.uid,
          rows: (await tx.query(`SELECT id FROM notifications`)).rows.length,
        }));
        if (res.uid !== null) (stats.stale++, problems.push(`#${i} anon saw uid ${res.uid}`));
        if (res.rows !== 0) (stats.crossUser++, problems.push(`#${i} anon saw ${res.rows} rows`));
        return;
      }
      if (r < 0.15) {
        // Outside any transaction: the pooled connection must carry no identity.
        stats.bare++;
        const id = await identity(db2);
        if (id.usr === 'herald_user' || (id.claims ?? '') !== '' || id.uid !== null) {
          stats.stale++;
          problems.push(`#${i} bare query on a pooled connection saw ${JSON.stringify(id)}`);
        }
        return;
      }
      const mode = r < 0.3 ? 'sql-error' : r < 0.4 ? 'js-error' : 'ok';
      try {
        await asUser(db2, { sub: who }, async (tx) => {
          const uid = (await tx.query<{ uid: string }>(`SELECT auth.uid()::text AS uid`)).rows[0]!.uid;
          if (uid !== who) (stats.stale++, problems.push(`#${i} expected uid ${who}, got ${uid}`));
          const ids = (await tx.query<{ id: string; user_id: string }>(`SELECT id, user_id FROM notifications ORDER BY id`)).rows;
          if (ids.some((x) => x.user_id !== who) || JSON.stringify(ids.map((x) => x.id)) !== JSON.stringify(own[who])) {
            stats.crossUser++;
            problems.push(`#${i} ${who === A ? 'A' : 'B'} saw ${JSON.stringify(ids)}`);
          }
          if (mode === 'sql-error') await tx.query(`SELECT 1 / 0`);
          if (mode === 'js-error') throw new Error('boom');
        });
        stats.user++;
      } catch (err) {
        if (mode === 'ok') throw err;
        if (mode === 'sql-error') (assert.equal(sqlState(err), '22012'), stats.sqlError++);
        else (assert.equal((err as Error).message, 'boom'), stats.jsError++);
      }
    }

    const TOTAL = 2000;
    const CONCURRENCY = 8;
    let next = 0;
    try {
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (next < TOTAL) await request(next++);
        }),
      );
    } finally {
      if (db2 !== h.db) await db2.close();
    }
    assert.deepEqual(problems.slice(0, 5), [], `seed ${seed}`);
    assert.equal(stats.crossUser, 0);
    assert.equal(stats.stale, 0);
    assert.equal(stats.user + stats.sqlError + stats.jsError + stats.anon + stats.bare, TOTAL);
    assert.ok(stats.sqlError > 50 && stats.jsError > 50 && stats.anon > 50 && stats.bare > 20, JSON.stringify(stats));
    // The stress left the data as it was.
    assert.equal((await truth(h, A)).length, 2);
    assert.equal((await truth(h, B)).length, 2);
  });

  test('the engine path (herald_engine) writes rows and leaves no role behind', async () => {
    const C = randomUUID();
    const eventId = uuidv7();
    const db1 = BACKEND === 'postgres' ? await openStorage({ databaseUrl: h.url!, poolSize: 1 }) : h.db;
    try {
      const inserted = await db1.transaction((tx) =>
        insertNotifications(tx, eventId, [
          { userId: C, tenantId: null, title: 't', body: null, type: 'info', actionUrl: null, data: {}, dedupeKey: `${eventId}:c` },
        ]),
      );
      assert.equal(inserted, 1);
      assertNoIdentity(await identity(db1), 'after an engine insert');
      const rows = await asSub(db1, C, async (tx) => (await tx.query(`SELECT user_id FROM notifications`)).rows);
      assert.deepEqual(rows, [{ user_id: C }]);
    } finally {
      if (db1 !== h.db) await db1.close();
    }
  });

  test('the engine insert marks every event it was given processed, with the rows it inserted', async () => {
    const [withRows, without, repeated] = [uuidv7(), uuidv7(), uuidv7()];
    for (const id of [withRows, without, repeated]) {
      await h.db.query(`INSERT INTO herald_events (id, type, ctx, mode) VALUES ($1, 'test.marks', '{}', 'workflow')`, [id]);
    }
    const row = (eventId: string, key: string) => ({
      userId: randomUUID(), tenantId: null, title: 't', body: null, type: 'info', actionUrl: null, data: {}, dedupeKey: `${eventId}:${key}`,
    });
    // An earlier run already inserted this event's row (its dedupe key exists): nothing new now.
    await h.db.transaction((tx) => insertNotifications(tx, repeated, [row(repeated, 'x')]));
    await h.db.query(`UPDATE herald_events SET processed_at = NULL, inserted = NULL WHERE id = $1`, [repeated]);
    const counts = await h.db.transaction((tx) =>
      insertEventNotifications(tx, [
        { eventId: withRows, rows: [row(withRows, 'a'), row(withRows, 'b')] },
        { eventId: without, rows: [] },
        { eventId: repeated, rows: [row(repeated, 'x')] },
      ]),
    );
    assert.deepEqual(Object.fromEntries(counts), { [withRows]: 2, [without]: 0, [repeated]: 0 });
    const marks = await h.db.query<{ id: string; processed: boolean; inserted: number }>(
      `SELECT id::text, processed_at IS NOT NULL AS processed, inserted FROM herald_events WHERE type = 'test.marks'`,
    );
    assert.deepEqual(
      Object.fromEntries(marks.rows.map((r) => [r.id, [r.processed, r.inserted]])),
      { [withRows]: [true, 2], [without]: [true, 0], [repeated]: [true, 0] },
    );
    // A call whose events have no rows at all marks them too (the insert inserts nothing).
    const lone = uuidv7();
    await h.db.query(`INSERT INTO herald_events (id, type, ctx, mode) VALUES ($1, 'test.marks', '{}', 'workflow')`, [lone]);
    await h.db.transaction((tx) => insertEventNotifications(tx, [{ eventId: lone, rows: [] }]));
    const loneMark = await h.db.query<{ inserted: number }>(`SELECT inserted FROM herald_events WHERE id = $1 AND processed_at IS NOT NULL`, [lone]);
    assert.deepEqual(loneMark.rows, [{ inserted: 0 }]);
    assertNoIdentity(await identity(h.db), 'after the engine insert and marks');
  });
});

describe('catalogue: RLS is on, roles are weak, nothing bypasses it', () => {
  let h: TestHerald;
  before(async () => {
    h = await createTestHerald({ env: { WORKFLOWS_DISABLED: '1' } });
  });
  after(async () => {
    await h?.close();
  });

  test('notifications (and every table with a user_id column) has ENABLE and FORCE row level security', async () => {
    const { rows } = await h.db.query<{ rel: string; rls: boolean; force: boolean }>(
      `SELECT c.relname AS rel, c.relrowsecurity AS rls, c.relforcerowsecurity AS force
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
         AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'user_id' AND NOT a.attisdropped)`,
    );
    assert.ok(rows.some((r) => r.rel === 'notifications'), 'notifications has user_id');
    for (const r of rows) assert.deepEqual(r, { rel: r.rel, rls: true, force: true });
  });

  test('herald_user and herald_engine are not superuser, not BYPASSRLS, cannot log in, and do not own the table', async () => {
    const { rows } = await h.db.query<{ rolname: string; rolsuper: boolean; rolbypassrls: boolean; rolcanlogin: boolean }>(
      `SELECT rolname, rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname IN ('herald_user', 'herald_engine') ORDER BY rolname`,
    );
    assert.deepEqual(rows, [
      { rolname: 'herald_engine', rolsuper: false, rolbypassrls: false, rolcanlogin: false },
      { rolname: 'herald_user', rolsuper: false, rolbypassrls: false, rolcanlogin: false },
    ]);
    const owner = await h.db.query<{ owner: string }>(
      `SELECT pg_get_userbyid(relowner) AS owner FROM pg_class WHERE oid = 'public.notifications'::regclass`,
    );
    assert.ok(!['herald_user', 'herald_engine'].includes(owner.rows[0]!.owner), `owner is ${owner.rows[0]!.owner}`);
    // Nor members of a role that is.
    const { rows: strong } = await h.db.query(
      `SELECT r.rolname FROM pg_roles r
       WHERE (r.rolsuper OR r.rolbypassrls OR r.oid = (SELECT relowner FROM pg_class WHERE oid = 'public.notifications'::regclass))
         AND (pg_has_role('herald_user', r.oid, 'USAGE') OR pg_has_role('herald_engine', r.oid, 'USAGE'))`,
    );
    assert.deepEqual(strong, []);
  });

  test('herald_user may UPDATE only read_at, seen_at, archived_at, SELECT and DELETE, and never INSERT', async () => {
    const cols = await h.db.query<{ column_name: string }>(
      `SELECT column_name FROM information_schema.column_privileges
       WHERE table_schema = 'public' AND table_name = 'notifications' AND grantee = 'herald_user' AND privilege_type = 'UPDATE'
       ORDER BY column_name`,
    );
    assert.deepEqual(
      cols.rows.map((r) => r.column_name),
      STATE_COLUMNS,
    );
    const table = await h.db.query<{ privilege_type: string }>(
      `SELECT privilege_type FROM information_schema.table_privileges
       WHERE table_schema = 'public' AND table_name = 'notifications' AND grantee = 'herald_user' ORDER BY privilege_type`,
    );
    assert.deepEqual(
      table.rows.map((r) => r.privilege_type),
      ['DELETE', 'SELECT'],
    );
    const pub = await h.db.query(
      `SELECT privilege_type FROM information_schema.table_privileges
       WHERE table_schema = 'public' AND table_name = 'notifications' AND grantee = 'PUBLIC'`,
    );
    assert.deepEqual(pub.rows, [], 'PUBLIC has no privilege on notifications');
  });

  test('policies: herald_user has SELECT/UPDATE/DELETE policies on auth.uid(), UPDATE with a WITH CHECK, no INSERT policy', async () => {
    const { rows } = await h.db.query<{ cmd: string; qual: string | null; with_check: string | null; permissive: string }>(
      `SELECT cmd, qual, with_check, permissive FROM pg_policies
       WHERE schemaname = 'public' AND tablename = 'notifications' AND 'herald_user' = ANY(roles) ORDER BY cmd`,
    );
    assert.deepEqual(
      rows.map((r) => r.cmd),
      ['DELETE', 'SELECT', 'UPDATE'],
    );
    for (const r of rows) assert.match(r.qual ?? '', /auth\.uid\(\)/, `${r.cmd} USING`);
    assert.match(rows.find((r) => r.cmd === 'UPDATE')!.with_check ?? '', /auth\.uid\(\)/, 'UPDATE WITH CHECK');
    const pub = await h.db.query(
      `SELECT policyname FROM pg_policies WHERE schemaname = 'public' AND tablename = 'notifications' AND 'public' = ANY(roles)`,
    );
    assert.deepEqual(pub.rows, [], 'no policy applies to PUBLIC');
  });

  // Both detectors below are checked against a deliberate offender in a rolled-back transaction, so
  // they cannot pass vacuously because the query is wrong.
  const UNSAFE_VIEWS = `
    SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public'
      AND (c.relkind = 'm'
        OR (c.relkind = 'v' AND NOT coalesce(c.reloptions && ARRAY['security_invoker=true', 'security_invoker=on', 'security_invoker=1'], false)))`;
  const PUBLIC_DEFINER_FUNCS = `
    SELECT p.oid::regprocedure::text AS fn FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname IN ('public', 'auth') AND p.prosecdef
      AND (p.proacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'))`;

  test('no view in public lacks security_invoker (and no materialized view exposes rows)', async () => {
    assert.deepEqual((await h.db.query(UNSAFE_VIEWS)).rows, []);
    const caught = await inRolledBackTx(h.db, async (tx) => {
      await tx.query(`CREATE VIEW public.zz_definer_view AS SELECT id FROM notifications`);
      await tx.query(`CREATE VIEW public.zz_invoker_view WITH (security_invoker = true) AS SELECT id FROM notifications`);
      return (await tx.query<{ relname: string }>(UNSAFE_VIEWS)).rows.map((r) => r.relname);
    });
    assert.deepEqual(caught, ['zz_definer_view'], 'the detector flags a definer view and accepts an invoker one');
  });

  test('no SECURITY DEFINER function in public or auth is executable by PUBLIC', async () => {
    assert.deepEqual((await h.db.query(PUBLIC_DEFINER_FUNCS)).rows, []);
    const caught = await inRolledBackTx(h.db, async (tx) => {
      await tx.query(`CREATE FUNCTION public.zz_definer() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'`);
      await tx.query(`CREATE FUNCTION public.zz_definer_revoked() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'`);
      await tx.query(`REVOKE EXECUTE ON FUNCTION public.zz_definer_revoked() FROM PUBLIC`);
      return (await tx.query<{ fn: string }>(PUBLIC_DEFINER_FUNCS)).rows.map((r) => r.fn);
    });
    assert.deepEqual(caught, ['zz_definer()'], 'the detector flags a PUBLIC definer function and accepts a revoked one');
    // auth.uid() itself runs with the caller's rights.
    const { rows } = await h.db.query<{ prosecdef: boolean }>(`SELECT prosecdef FROM pg_proc WHERE oid = 'auth.uid()'::regprocedure`);
    assert.equal(rows[0]!.prosecdef, false);
  });

  test(
    'a non-superuser LOGIN role querying notifications without switching role gets 0 rows or 42501, never all rows',
    { skip: BACKEND === 'pglite' ? 'PGlite has a single built-in superuser connection; no other login role can connect' : false },
    async () => {
      // Rows that a leak would reveal.
      await emitTo(h, [randomUUID(), randomUUID()]);
      const total = (await h.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM notifications`)).rows[0]!.n;
      assert.ok(total >= 2);

      const role = `herald_t_login_${process.pid}_${randomBytes(4).toString('hex')}`;
      const admin = new pg.Client({ connectionString: ADMIN_URL });
      await admin.connect();
      const url = new URL(h.url!);
      url.username = role;
      url.password = '';
      let client: pg.Client | undefined;
      try {
        await admin.query(`CREATE ROLE ${role} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB`);
        client = new pg.Client({ connectionString: url.toString() });
        await client.connect();
        const c = client;
        const me = await c.query(`SELECT current_user::text AS u, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS su`);
        assert.deepEqual(me.rows[0], { u: role, su: false });

        const safe = async (label: string) => {
          try {
            const { rows } = await c.query(`SELECT id FROM notifications`);
            assert.equal(rows.length, 0, `${label}: saw ${rows.length} of ${total} rows`);
            return 'rows:0';
          } catch (err) {
            assert.equal(sqlState(err), '42501', `${label}: ${(err as Error).message}`);
            return '42501';
          }
        };
        // 1. A bare login role: no grant, so 42501.
        assert.equal(await safe('bare login role'), '42501');
        // 2. As deployed: a member of herald_user and herald_engine (what the migration grants a
        //    non-superuser connecting role), but without SET ROLE. Memberships inherit on PG 15, so
        //    it holds herald_user's SELECT grant, but with no claims the user policy matches nothing
        //    and herald_engine has no SELECT policy at all.
        await admin.query(`GRANT herald_user, herald_engine TO ${role}`);
        assert.equal(await safe('member of herald_user/herald_engine without SET ROLE'), 'rows:0');
        // 3. Even with a direct SELECT grant, RLS with no policy for this role denies every row.
        await h.db.query(`GRANT SELECT ON notifications TO ${role}`);
        assert.equal(await safe('SELECT granted, no policy'), 'rows:0');
        // Claims alone (no role switch) change nothing.
        await c.query('BEGIN');
        await c.query(`SELECT set_config('request.jwt.claims', $1, true)`, [JSON.stringify({ sub: randomUUID() })]);
        assert.equal((await c.query(`SELECT id FROM notifications`)).rows.length, 0);
        await c.query('ROLLBACK');
        // 4. The intended path from this role works: SET LOCAL ROLE herald_user + claims.
        const someone = (await h.db.query<{ user_id: string }>(`SELECT user_id FROM notifications LIMIT 1`)).rows[0]!.user_id;
        await c.query('BEGIN');
        await c.query(`SELECT set_config('role', 'herald_user', true), set_config('request.jwt.claims', $1, true)`, [
          JSON.stringify({ sub: someone }),
        ]);
        const mine = await c.query<{ user_id: string }>(`SELECT user_id FROM notifications`);
        await c.query('COMMIT');
        assert.ok(mine.rows.length >= 1 && mine.rows.every((r) => r.user_id === someone));
        assert.equal(await safe('after the user transaction'), 'rows:0');
      } finally {
        await client?.end().catch(() => {});
        await h.db.query(`DROP OWNED BY ${role}`).catch(() => {});
        await admin.query(`DROP ROLE IF EXISTS ${role}`);
        await admin.end();
      }
    },
  );
});
