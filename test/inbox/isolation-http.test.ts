import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { uuidv7 } from '../../src/ids.ts';
import { createTestHerald, type TestHerald } from '../helpers/herald.ts';

/**
 * Row Level Security seen from the HTTP API: user A can never see, count, change or delete user
 * B's notifications; B's id is the same 404 as a missing one; B's rows are untouched byte for byte;
 * and the per-request identity never leaks between concurrent requests on pooled connections.
 */
let h: TestHerald;
const A = randomUUID();
const B = randomUUID();
const bIds: string[] = [];
const aIds: string[] = [];

before(async () => {
  h = await createTestHerald();
  for (const [user, ids] of [[A, aIds], [B, bIds]] as const) {
    for (let i = 0; i < 5; i++) {
      const id = uuidv7();
      await h.db.query(`INSERT INTO notifications (id, user_id, title, type, data) VALUES ($1, $2, $3, 'info', $4)`, [
        id, user, `${user === A ? 'A' : 'B'} ${i}`, JSON.stringify({ secret: `${user}-${i}` }),
      ]);
      ids.push(id);
    }
  }
});
after(() => h?.close());

const snapshot = async (user: string) =>
  (await h.db.query(`SELECT * FROM notifications WHERE user_id = $1 ORDER BY id`, [user])).rows.map((r) => JSON.stringify(r));

test("A's list, count and read-all touch only A's rows", async () => {
  const list = (await (await h.asUser(A, '/api/notifications?limit=100')).json()) as { items: { user_id: string }[] };
  assert.equal(list.items.length, 5);
  assert.ok(list.items.every((i) => i.user_id === A));
  assert.equal(((await (await h.asUser(A, '/api/notifications/unread-count')).json()) as { count: number }).count, 5);
  const before = await snapshot(B);
  assert.equal(((await (await h.asUser(A, '/api/notifications/read-all', { method: 'POST' })).json()) as { updated: number }).updated, 5);
  assert.deepEqual(await snapshot(B), before, "B's rows are unchanged");
  assert.equal(((await (await h.asUser(B, '/api/notifications/unread-count')).json()) as { count: number }).count, 5);
});

test("B's notification id, used by A, is the same 404 as an id that does not exist, for every operation", async () => {
  const before = await snapshot(B);
  const missing = uuidv7();
  const attempts: [string, RequestInit][] = [
    ['', { method: 'GET' }],
    ['/read', { method: 'POST' }],
    ['/unread', { method: 'POST' }],
    ['/archive', { method: 'POST' }],
    ['/unarchive', { method: 'POST' }],
    ['', { method: 'DELETE' }],
  ];
  for (const [suffix, init] of attempts) {
    const theirs = await h.asUser(A, `/api/notifications/${bIds[0]}${suffix}`, init);
    const none = await h.asUser(A, `/api/notifications/${missing}${suffix}`, init);
    assert.equal(theirs.status, 404, `${init.method} ${suffix}`);
    assert.equal(none.status, 404);
    const [tb, nb] = [await theirs.json(), await none.json()] as { requestId?: string }[];
    assert.deepEqual(tb, nb, 'identical bodies: nothing tells A that the id exists');
  }
  assert.deepEqual(await snapshot(B), before, "B's rows are byte-for-byte unchanged");
});

test('the identity never leaks across concurrent requests on pooled connections', async () => {
  const users = [A, B, randomUUID(), randomUUID()];
  const requests = Array.from({ length: 80 }, (_, i) => users[i % users.length]!);
  const answers = await Promise.all(
    requests.map(async (user) => {
      const res = await h.asUser(user, '/api/notifications?limit=100');
      const body = (await res.json()) as { items: { user_id: string; data: { secret: string } }[] };
      return { user, items: body.items };
    }),
  );
  for (const { user, items } of answers) {
    assert.ok(items.every((i) => i.user_id === user), `user ${user} saw only their rows`);
    assert.equal(items.length, user === A || user === B ? 5 : 0);
  }
});

test('after requests as users, the server connection itself is back to its own role', async () => {
  const { rows } = await h.db.query<{ role: string; claims: string | null }>(
    `SELECT current_user AS role, nullif(current_setting('request.jwt.claims', true), '') AS claims`,
  );
  assert.notEqual(rows[0]!.role, 'herald_user');
  assert.equal(rows[0]!.claims, null);
});
