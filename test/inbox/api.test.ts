import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { SignJWT } from 'jose';
import { uuidv7 } from '../../src/ids.ts';
import { createTestHerald, JWT_SECRET, type TestHerald } from '../helpers/herald.ts';

/** The end-user inbox over HTTP, with real JWTs: every endpoint, its answers and its errors. */

interface Item {
  id: string;
  user_id: string;
  title: string;
  type: string;
  read_at: string | null;
  seen_at: string | null;
  archived_at: string | null;
}

let h: TestHerald;
before(async () => {
  h = await createTestHerald();
});
after(() => h?.close());

/** Inserts `n` notifications for `user`, one second apart (oldest first), via the owner connection. */
async function seed(user: string, n: number, opts: { type?: string; title?: string } = {}): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const id = uuidv7();
    await h.db.query(
      `INSERT INTO notifications (id, user_id, title, type, created_at) VALUES ($1, $2, $3, $4, now() - make_interval(secs => $5))`,
      [id, user, `${opts.title ?? 'item'} ${i}`, opts.type ?? 'info', n - i],
    );
    ids.push(id);
  }
  return ids;
}

const json = async <T>(res: Response) => (await res.json()) as T;
const get = (user: string, path: string) => h.asUser(user, path);
const post = (user: string, path: string) => h.asUser(user, path, { method: 'POST' });

describe('listing', () => {
  test('newest first, limited, with a cursor that neither skips nor repeats while new rows arrive', async () => {
    const user = randomUUID();
    const ids = await seed(user, 25);
    const newestFirst = [...ids].reverse();
    const first = await json<{ ok: boolean; items: Item[]; nextCursor: string }>(await get(user, '/api/notifications?limit=10'));
    assert.equal(first.ok, true);
    assert.deepEqual(first.items.map((i) => i.id), newestFirst.slice(0, 10));
    // A new notification arrives between pages: it is newer than the cursor, so it does not shift them.
    await seed(user, 1, { title: 'late' });
    const second = await json<{ items: Item[]; nextCursor: string }>(await get(user, `/api/notifications?limit=10&cursor=${first.nextCursor}`));
    assert.deepEqual(second.items.map((i) => i.id), newestFirst.slice(10, 20));
    const third = await json<{ items: Item[]; nextCursor: string | null }>(await get(user, `/api/notifications?limit=10&cursor=${second.nextCursor}`));
    assert.deepEqual(third.items.map((i) => i.id), newestFirst.slice(20));
    assert.equal(third.nextCursor, null);
  });

  test('filters: unread only, by type, archived', async () => {
    const user = randomUUID();
    const [a, b] = await seed(user, 2, { type: 'info' });
    const [c] = await seed(user, 1, { type: 'warning' });
    await post(user, `/api/notifications/${a}/read`);
    await post(user, `/api/notifications/${b}/archive`);
    const unread = await json<{ items: Item[] }>(await get(user, '/api/notifications?unread=true'));
    assert.deepEqual(unread.items.map((i) => i.id), [c], 'read and archived ones are not listed as unread');
    const warnings = await json<{ items: Item[] }>(await get(user, '/api/notifications?type=warning'));
    assert.deepEqual(warnings.items.map((i) => i.id), [c]);
    const archived = await json<{ items: Item[] }>(await get(user, '/api/notifications?archived=true'));
    assert.deepEqual(archived.items.map((i) => i.id), [b]);
    const inbox = await json<{ items: Item[] }>(await get(user, '/api/notifications'));
    assert.ok(!inbox.items.some((i) => i.id === b), 'archived notifications leave the default list');
  });

  test('a page of exactly `limit` rows has no next page; one row more has one', async () => {
    const user = randomUUID();
    const ids = (await seed(user, 3)).reverse();
    const whole = await json<{ items: Item[]; nextCursor: string | null }>(await get(user, '/api/notifications?limit=3'));
    assert.deepEqual(whole.items.map((i) => i.id), ids);
    assert.equal(whole.nextCursor, null);
    const first = await json<{ items: Item[]; nextCursor: string | null }>(await get(user, '/api/notifications?limit=2'));
    assert.deepEqual(first.items.map((i) => i.id), ids.slice(0, 2));
    assert.ok(first.nextCursor);
    const rest = await json<{ items: Item[]; nextCursor: string | null }>(await get(user, `/api/notifications?limit=2&cursor=${first.nextCursor}`));
    assert.deepEqual(rest.items.map((i) => i.id), ids.slice(2));
    assert.equal(rest.nextCursor, null);
    const none = await json<{ items: Item[]; nextCursor: string | null }>(await get(randomUUID(), '/api/notifications'));
    assert.deepEqual(none, { ok: true, items: [], nextCursor: null });
  });

  test('rows created in the same microsecond page by id, none skipped or repeated', async () => {
    const user = randomUUID();
    const ids = Array.from({ length: 5 }, () => uuidv7());
    for (const id of ids) {
      await h.db.query(`INSERT INTO notifications (id, user_id, title, type, created_at) VALUES ($1, $2, 'same time', 'info', '2026-01-02 03:04:05.678901+00')`, [id, user]);
    }
    const seen: string[] = [];
    let cursor = '';
    do {
      const page = await json<{ items: Item[]; nextCursor: string | null }>(await get(user, `/api/notifications?limit=2${cursor ? `&cursor=${cursor}` : ''}`));
      seen.push(...page.items.map((i) => i.id));
      cursor = page.nextCursor ?? '';
    } while (cursor);
    assert.deepEqual(seen, [...ids].sort().reverse());
  });

  test('a notification reads the same in the list, alone and after a change', async () => {
    const user = randomUUID();
    const id = uuidv7();
    const data = { order: { id: 'o-1', total: 12.5, items: [1, 2] }, note: 'é 😀 "quoted"\nline', flag: true, none: null };
    await h.db.query(
      `INSERT INTO notifications (id, user_id, tenant_id, title, body, type, action_url, data, seen_at, created_at)
       VALUES ($1, $2, $3, 'Order shipped', 'It is on its way', 'order', '/orders/o-1', $4, '2026-01-02 03:04:06.5+00', '2026-01-02 03:04:05.678901+00')`,
      [id, user, '00000000-0000-7000-8000-00000000beef', JSON.stringify(data)],
    );
    const expected = {
      id,
      user_id: user,
      tenant_id: '00000000-0000-7000-8000-00000000beef',
      title: 'Order shipped',
      body: 'It is on its way',
      type: 'order',
      action_url: '/orders/o-1',
      data,
      read_at: null,
      seen_at: '2026-01-02T03:04:06.500Z',
      archived_at: null,
      created_at: '2026-01-02T03:04:05.678Z', // milliseconds, truncated, as Date#toISOString writes them
    };
    const listed = (await json<{ items: Record<string, unknown>[] }>(await get(user, '/api/notifications'))).items[0]!;
    assert.deepEqual(Object.keys(listed), Object.keys(expected), 'the columns, in this order');
    assert.deepEqual(listed, expected);
    const res = await get(user, `/api/notifications/${id}`);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    assert.deepEqual(await json<{ ok: boolean; notification: unknown }>(res), { ok: true, notification: expected });
    const read = (await json<{ notification: Record<string, unknown> }>(await post(user, `/api/notifications/${id}/read`))).notification;
    assert.deepEqual({ ...read, read_at: null }, expected);
    assert.equal(new Date(read.read_at as string).toISOString(), read.read_at, 'read_at as an ISO timestamp');
  });

  test('bad parameters are 400 naming the parameter, never 5xx', async () => {
    const user = randomUUID();
    for (const [q, field] of [['limit=0', 'limit'], ['limit=101', 'limit'], ['limit=abc', 'limit'], ['cursor=nope', 'cursor'], ['unread=maybe', 'unread']]) {
      const res = await get(user, `/api/notifications?${q}`);
      assert.equal(res.status, 400, q);
      const body = await json<{ ok: boolean; error: string; field?: string }>(res);
      assert.equal(body.ok, false);
      assert.match(body.error, new RegExp(field!));
    }
  });
});

describe('state changes', () => {
  test('read, unread, archive, unarchive return the updated notification', async () => {
    const user = randomUUID();
    const [id] = await seed(user, 1);
    const read = await json<{ notification: Item }>(await post(user, `/api/notifications/${id}/read`));
    assert.ok(read.notification.read_at);
    const unread = await json<{ notification: Item }>(await post(user, `/api/notifications/${id}/unread`));
    assert.equal(unread.notification.read_at, null);
    const archived = await json<{ notification: Item }>(await post(user, `/api/notifications/${id}/archive`));
    assert.ok(archived.notification.archived_at);
    const back = await json<{ notification: Item }>(await post(user, `/api/notifications/${id}/unarchive`));
    assert.equal(back.notification.archived_at, null);
    const one = await json<{ notification: Item }>(await get(user, `/api/notifications/${id}`));
    assert.equal(one.notification.id, id);
  });

  test('the unread count, and read-all (optionally by type)', async () => {
    const user = randomUUID();
    await seed(user, 3, { type: 'info' });
    await seed(user, 2, { type: 'warning' });
    assert.deepEqual(await json(await get(user, '/api/notifications/unread-count')), { ok: true, count: 5, capped: false });
    assert.deepEqual(await json(await post(user, '/api/notifications/read-all?type=warning')), { ok: true, updated: 2 });
    assert.equal((await json<{ count: number }>(await get(user, '/api/notifications/unread-count'))).count, 3);
    assert.deepEqual(await json(await post(user, '/api/notifications/read-all')), { ok: true, updated: 3 });
    assert.equal((await json<{ count: number }>(await get(user, '/api/notifications/unread-count'))).count, 0);
    assert.deepEqual(await json(await post(user, '/api/notifications/read-all')), { ok: true, updated: 0 });
  });

  test('the badge is exact up to 99 and "99+" above, archived and read rows not counted', async () => {
    const user = randomUUID();
    const badge = async () => json<{ ok: boolean; count: number; capped: boolean }>(await get(user, '/api/notifications/unread-count'));
    const [first] = await seed(user, 99);
    assert.deepEqual(await badge(), { ok: true, count: 99, capped: false });
    await seed(user, 1);
    assert.deepEqual(await badge(), { ok: true, count: 99, capped: true });
    // Back under the cap: one archived (no longer in the inbox), the count is exact again.
    await post(user, `/api/notifications/${first}/archive`);
    assert.deepEqual(await badge(), { ok: true, count: 99, capped: false });
    await post(user, '/api/notifications/read-all');
    assert.deepEqual(await badge(), { ok: true, count: 0, capped: false });
  });

  test('delete removes it; afterwards it is a 404', async () => {
    const user = randomUUID();
    const [id] = await seed(user, 1);
    const res = await h.asUser(user, `/api/notifications/${id}`, { method: 'DELETE' });
    assert.deepEqual(await json(res), { ok: true, deleted: true });
    assert.equal((await get(user, `/api/notifications/${id}`)).status, 404);
    assert.equal((await h.asUser(user, `/api/notifications/${id}`, { method: 'DELETE' })).status, 404);
  });

  test('a non-uuid id is a 404 like a missing one, never 5xx', async () => {
    const user = randomUUID();
    for (const path of ['/api/notifications/not-a-uuid', '/api/notifications/123/read']) {
      const res = path.endsWith('read') ? await post(user, path) : await get(user, path);
      assert.equal(res.status, 404);
    }
  });
});

describe('authentication', () => {
  const sign = (claims: Record<string, unknown>, secret = JWT_SECRET, exp: string | number = '1h') =>
    new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setExpirationTime(exp).sign(new TextEncoder().encode(secret));

  const expect401 = async (authorization: string | undefined) => {
    const res = await h.app.request('/api/notifications', { headers: authorization ? { authorization } : {} });
    assert.equal(res.status, 401, authorization);
    assert.deepEqual(await res.json(), { ok: false, error: 'unauthorized' }, 'the reason is logged, not returned');
    assert.equal(res.headers.get('www-authenticate'), 'Bearer');
  };

  test('no token, malformed, wrong secret, expired, non-uuid sub, alg none: 401 without saying why', async () => {
    const user = randomUUID();
    await expect401(undefined);
    await expect401('Bearer not-a-jwt');
    await expect401(`Basic ${Buffer.from('a:b').toString('base64')}`);
    await expect401(`Bearer ${await sign({ sub: user }, 'another-secret-another-secret-another-secret')}`);
    await expect401(`Bearer ${await sign({ sub: user }, JWT_SECRET, Math.floor(Date.now() / 1000) - 60)}`);
    await expect401(`Bearer ${await sign({ sub: 'not-a-uuid' })}`);
    const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${Buffer.from(JSON.stringify({ sub: user })).toString('base64url')}.`;
    await expect401(`Bearer ${none}`);
    // And a valid token works.
    const ok = await h.app.request('/api/notifications', { headers: { authorization: `Bearer ${await sign({ sub: user })}` } });
    assert.equal(ok.status, 200);
  });
});
