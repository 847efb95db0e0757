import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import pino from 'pino';
import { mintUserToken } from '../../src/cli/demo.ts';
import { loadConfig } from '../../src/config/load-config.ts';
import { resolveSettings, secretBytes } from '../../src/config/settings.ts';
import { createEngine, type Engine } from '../../src/engine.ts';
import { createApp, type HeraldApp } from '../../src/http/app.ts';
import { signXSignature } from '../../src/signing.ts';
import type { Worker } from '../../src/jobs/worker.ts';
import type { Db, Queryable } from '../../src/storage/db.ts';
import { loadMigrations, migrate } from '../../src/storage/migrate.ts';
import { openStorage } from '../../src/storage/open.ts';
import { BOOTSTRAP_SQL } from '../../src/storage/queries/roles.ts';
import { unconfinedRole } from '../../src/storage/role-check.ts';
import { ADMIN_URL, BACKEND } from '../helpers/db.ts';
import { eventually, JWT_SECRET, SECRET } from '../helpers/herald.ts';
import { HERALD_BIN, REPO, startHerald } from '../helpers/processes.ts';

// The least-privilege setup of docs/DEPLOYMENT.md on a real server: a superuser runs the bootstrap
// once, an owner role (no SUPERUSER, no CREATEROLE, owns the database) migrates, and a login role
// that is a member of herald_runtime (no SUPERUSER, no BYPASSRLS, owns nothing) serves.
// Roles are cluster-wide: this file's have unique names and are dropped afterwards.

const SKIP = BACKEND !== 'postgres' && 'roles, grants and who bypasses Row Level Security need a Postgres server (PGlite is one embedded superuser)';
const run = promisify(execFile);

describe('least privilege: an owner role migrates, a runtime role serves', { skip: SKIP }, () => {
  const sfx = `${process.pid}_${randomBytes(4).toString('hex')}`;
  const owner = `herald_lp_owner_${sfx}`;
  const runtime = `herald_lp_runtime_${sfx}`;
  const bypass = `herald_lp_bypass_${sfx}`;
  const database = `herald_lp_${sfx}`;
  const superuser = decodeURIComponent(new URL(ADMIN_URL).username) || 'postgres';
  const urlAs = (role: string | undefined) => {
    const u = new URL(ADMIN_URL);
    u.pathname = `/${database}`;
    if (role) u.username = role;
    return u.toString();
  };
  let admin: pg.Client;
  const opened: Db[] = [];
  const open = async (role?: string) => {
    const db = await openStorage({ databaseUrl: urlAs(role), poolSize: 4 });
    opened.push(db);
    return db;
  };
  let asOwner: Db;
  let asRuntime: Db;
  let asSuperuser: Db;

  before(async () => {
    admin = new pg.Client({ connectionString: ADMIN_URL });
    await admin.connect();
    await admin.query(BOOTSTRAP_SQL);
    await admin.query(`CREATE ROLE ${owner} LOGIN NOSUPERUSER NOCREATEROLE NOBYPASSRLS`);
    await admin.query(`CREATE ROLE ${runtime} LOGIN NOSUPERUSER NOCREATEROLE NOBYPASSRLS IN ROLE herald_runtime`);
    await admin.query(`CREATE ROLE ${bypass} LOGIN NOSUPERUSER BYPASSRLS IN ROLE herald_runtime`);
    await admin.query(`CREATE DATABASE ${database} OWNER ${owner}`);
    [asOwner, asRuntime, asSuperuser] = await Promise.all([open(owner), open(runtime), open()]);
  });
  after(async () => {
    await Promise.all(opened.map((db) => db.close().catch(() => {})));
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    for (const role of [runtime, bypass, owner]) await admin.query(`DROP ROLE IF EXISTS ${role}`);
    await admin.end();
  });

  test('the runtime role may not migrate (a clear error); the owner, without SUPERUSER or CREATEROLE, migrates', async () => {
    await assert.rejects(migrate(asRuntime), /permission denied.*migrate as the owner role/is);
    const names = (await loadMigrations()).map((m) => m.name);
    assert.deepEqual(await migrate(asOwner), names);
    assert.deepEqual(await migrate(asRuntime), [], 'the runtime role starts: nothing pending, nothing to create');
  });

  test('the runtime role: neither SUPERUSER nor BYPASSRLS, owns nothing, and every herald table is granted to herald_runtime', async () => {
    const { rows: [role] } = await asRuntime.query<{ rolsuper: boolean; rolbypassrls: boolean }>(
      `SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user`,
    );
    assert.deepEqual(role, { rolsuper: false, rolbypassrls: false });
    const { rows: owned } = await asSuperuser.query(
      `SELECT relname FROM pg_class WHERE pg_has_role($1, relowner, 'USAGE') AND relnamespace = 'public'::regnamespace`,
      [runtime],
    );
    assert.deepEqual(owned, []);
    // A migration that adds a table must grant it to herald_runtime (0009 says so), or the
    // least-privilege setup breaks on its first use: this catches the one that forgets.
    const { rows: tables } = await asSuperuser.query<{ table: string; granted: boolean }>(
      `SELECT tablename AS table, has_table_privilege('herald_runtime', format('%I', tablename), 'SELECT, INSERT, UPDATE, DELETE') AS granted
         FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'herald\\_%' AND tablename <> 'herald_migrations'`,
    );
    assert.ok(tables.length >= 18, `herald's tables are there (${tables.length})`);
    assert.deepEqual(tables.filter((t) => !t.granted).map((t) => t.table), [], 'tables herald_runtime cannot use');
  });

  describe('an engine connected as the runtime role', () => {
    let engine: Engine;
    let app: HeraldApp;
    let worker: Worker;
    const tenantId = randomUUID();
    const users = { actor: randomUUID(), a: randomUUID(), b: randomUUID() };
    const logged: string[] = [];
    before(async () => {
      const settings = resolveSettings({ REQUEST_SIGNING_SECRET: SECRET, JWT_SECRET, HERALD_JOB_POLL_MS: '50', HERALD_MAINTENANCE_MS: '50' });
      const rules = (await loadConfig(undefined, '/nonexistent-dir')).rules;
      // Warnings and errors are kept: a query the runtime role may not run must not hide in a log.
      const log = pino({ level: 'warn' }, { write: (line: string) => void logged.push(line) });
      engine = createEngine({ settings, db: asRuntime, rules, log });
      app = createApp(engine);
      // The directory, written as the runtime role (herald_users is one of its tables).
      for (const [name, id] of Object.entries(users)) {
        await asRuntime.query(`INSERT INTO herald_users (id, tenant_id, name, email, locale) VALUES ($1, $2, $3, $4, 'es')`, [id, tenantId, name, `${name}@example.test`]);
      }
      worker = engine.createWorker();
      await worker.start();
    });
    after(async () => {
      await worker?.stop();
    });
    const asUser = async (userId: string, path: string, init: RequestInit = {}) => {
      const headers = new Headers(init.headers);
      headers.set('authorization', `Bearer ${await mintUserToken(JWT_SECRET, userId)}`);
      return app.request(path, { ...init, headers });
    };

    test('emit -> worker -> inbox works under RLS, each user sees only their rows, and a preference the user set (as herald_user) holds', async () => {
      // b turns email off through the end-user API (herald_user); the engine must see it when it plans.
      const pref = await asUser(users.b, '/api/preferences', {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ preferences: [{ channel: 'email', enabled: false }] }),
      });
      assert.equal(pref.status, 200, await pref.text());

      const body = JSON.stringify({ type: 'obra.completed', ctx: { tenantId, actorId: users.actor, obra: { id: 'obra-1', name: 'Escuela', percentage: 100 } } });
      const res = await app.request('/api/notifications/emit', {
        method: 'POST',
        body,
        headers: { 'content-type': 'application/json', 'x-signature': signXSignature(secretBytes(SECRET), body) },
      });
      const answer = await res.text();
      assert.equal(res.status, 200, answer);
      const { eventId } = JSON.parse(answer) as { eventId: string };

      type Item = { id: string; title: string };
      const inboxOf = async (userId: string) => ((await (await asUser(userId, '/api/notifications')).json()) as { items: Item[] }).items;
      const [a, b] = await eventually(async () => {
        const both = await Promise.all([inboxOf(users.a), inboxOf(users.b)]);
        return both.every((items) => items.length === 1) && both;
      });
      assert.notEqual(a[0]!.id, b[0]!.id, 'each user reads their own row, not the other one');
      assert.equal((await inboxOf(users.actor)).length, 0);
      const { rows } = await asSuperuser.query<{ user_id: string }>(`SELECT user_id FROM notifications WHERE event_id = $1 ORDER BY user_id`, [eventId]);
      assert.deepEqual(rows.map((r) => r.user_id), [users.a, users.b].sort(), 'the superuser sees both: the rows are there');
      // Deliveries (FORCE RLS, the runtime role's policy): a's email planned and sent; b opted out.
      const sent = await eventually(async () => {
        const { rows: d } = await asSuperuser.query<{ user_id: string; state: string }>(`SELECT user_id, state FROM herald_deliveries WHERE event_id = $1`, [eventId]);
        return d.length === 1 && d[0]!.state === 'sent' && d;
      });
      assert.equal(sent[0]!.user_id, users.a);
      assert.deepEqual(logged, [], 'the engine logged no warning or error (a privilege it lacks, say)');
    });

    test('a superuser session leaves herald_user with RESET ROLE and reads every inbox; the runtime role cannot escalate', async () => {
      const total = (await asSuperuser.query<{ total: number }>(`SELECT count(*)::int AS total FROM notifications`)).rows[0]!.total;
      assert.ok(total >= 2, 'rows of two users exist');
      // Both start as a's request (what asUser sends) and try to get out of it.
      const escape = (db: Db, fn: (tx: Queryable) => Promise<unknown>) =>
        db.transaction(async (tx) => {
          await tx.query(`SELECT set_config('role', 'herald_user', true), set_config('request.jwt.claims', $1, true)`, [JSON.stringify({ sub: users.a })]);
          const own = await count(tx);
          await tx.query(`RESET ROLE`);
          return { own, afterReset: await count(tx), more: await fn(tx) };
        });
      const count = async (q: Queryable) => (await q.query<{ n: number }>(`SELECT count(*)::int AS n FROM notifications`)).rows[0]!.n;

      const su = await escape(asSuperuser, async (tx) => {
        await tx.query(`SET LOCAL row_security = off`);
        return count(tx);
      });
      assert.deepEqual(su, { own: 1, afterReset: total, more: total }, 'a superuser is out of RLS');

      const rt = await escape(asRuntime, async () => undefined);
      assert.deepEqual(rt, { own: 1, afterReset: 1, more: undefined }, 'after RESET ROLE the runtime role still sees a\'s row only');

      // Each way out is refused with insufficient_privilege (42501), each in a transaction of its own.
      const attempts = [
        `SET ROLE ${owner}`,
        `SET ROLE ${superuser}`,
        `ALTER TABLE notifications NO FORCE ROW LEVEL SECURITY`,
        `ALTER TABLE notifications DISABLE ROW LEVEL SECURITY`,
        `DROP POLICY notifications_user_select ON notifications`,
        `ALTER ROLE ${runtime} BYPASSRLS`,
        `COPY (SELECT 1) TO PROGRAM 'true'`,
      ];
      for (const sql of attempts) {
        await assert.rejects(asRuntime.transaction((tx) => tx.query(sql)), (err: { code?: string; message: string }) => {
          assert.equal(err.code, '42501', `${sql}: ${err.message}`);
          return true;
        }, sql);
      }
      // row_security = off does not lift RLS for a role without BYPASSRLS: the query is refused.
      await assert.rejects(
        asRuntime.transaction(async (tx) => {
          await tx.query(`SET LOCAL row_security = off`);
          return count(tx);
        }),
        /row-level security/,
      );
    });
  });

  test('unconfinedRole names the superuser, the BYPASSRLS role and the owner; the runtime role passes', async () => {
    const asBypass = await open(bypass);
    assert.match((await unconfinedRole(asSuperuser)) ?? '', new RegExp(`as "${superuser}", a superuser`));
    assert.match((await unconfinedRole(asBypass)) ?? '', new RegExp(`as "${bypass}", a BYPASSRLS role`));
    assert.match((await unconfinedRole(asOwner)) ?? '', new RegExp(`as "${owner}", the owner of herald's tables: it may switch Row Level Security off`));
    assert.equal(await unconfinedRole(asRuntime), undefined);
  });

  test('herald start warns in one line at start as a superuser, and not as the runtime role', { timeout: 90_000 }, async () => {
    const env = { REQUEST_SIGNING_SECRET: 'a-production-grade-secret-123', JWT_SECRET: 'x'.repeat(32), PORT: '0' };
    const procs = [startHerald(['start'], { ...env, DATABASE_URL: urlAs(undefined) }), startHerald(['start'], { ...env, DATABASE_URL: urlAs(runtime) })];
    try {
      await Promise.all(procs.map((p) => p.waitFor(/"msg":"worker started"/, 60_000)));
      const warnings = procs.map((p) => p.output().split('\n').filter((l) => l.includes('herald connects to Postgres as')));
      assert.equal(warnings[0]!.length, 1, procs[0]!.output());
      assert.match(warnings[0]![0]!, new RegExp(`"level":40,.*as \\\\"${superuser}\\\\", a superuser`));
      assert.deepEqual(warnings[1], [], procs[1]!.output());
    } finally {
      await Promise.all(procs.map((p) => p.kill('SIGTERM')));
    }
  });
});

test('herald migrate --print-bootstrap prints the bootstrap, and docs/DEPLOYMENT.md shows the same SQL', async () => {
  const { stdout } = await run(process.execPath, [HERALD_BIN, 'migrate', '--print-bootstrap'], { env: { ...process.env, DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' } });
  assert.equal(stdout, BOOTSTRAP_SQL, 'it connects to nothing (the URL above is unreachable)');
  const dedent = (text: string) => text.replace(/^[ \t]+/gm, ''); // the doc's copy sits in a list item
  assert.ok(dedent(readFileSync(`${REPO}docs/DEPLOYMENT.md`, 'utf8')).includes(dedent(BOOTSTRAP_SQL)), 'docs/DEPLOYMENT.md carries the bootstrap verbatim');
});
