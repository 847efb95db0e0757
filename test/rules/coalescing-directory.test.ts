// The batch directory: lookups asked in one turn are merged, users come with their preferences in
// one round trip, and every caller gets exactly its own rows. Runs on real storage (both backends).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { coalescingDirectory } from '../../src/rules/coalescing-directory.ts';
import type { Queryable } from '../../src/storage/db.ts';
import { setPreference } from '../../src/storage/queries/preferences.ts';
import { directoryOn, upsertUser } from '../../src/storage/queries/users.ts';
import { createTestDb, type TestDb } from '../helpers/db.ts';

/** A Queryable that records what it sends: one entry per round trip. */
function recording(q: Queryable) {
  const sent: string[] = [];
  const tx: Queryable = {
    query: (text, values, opts) => {
      sent.push(text.replace(/\s+/g, ' ').slice(0, 40));
      return q.query(text, values, opts);
    },
    exec: (sql) => q.exec(sql),
    pipeline: (statements) => {
      sent.push(`together(${statements.map((s) => s.text.replace(/\s+/g, ' ').slice(0, 40)).join(' | ')})`);
      return q.pipeline(statements);
    },
  };
  return { tx, sent };
}

describe('coalescing directory', () => {
  let t: TestDb;
  const tenant = randomUUID();
  const users = Array.from({ length: 6 }, () => randomUUID());
  before(async () => {
    t = await createTestDb();
    for (const id of users) await upsertUser(t.db, id, { tenantId: tenant, email: `${id}@example.test` });
    await setPreference(t.db, users[0]!, { channel: 'email', scope: '*', enabled: false });
    await setPreference(t.db, users[0]!, { channel: 'in_app', scope: 'billing', enabled: false });
    await setPreference(t.db, users[3]!, { channel: '*', scope: '*', enabled: false });
  });
  after(async () => {
    await t?.drop();
  });

  test('users and their preferences come in one round trip; each caller gets only its own', async () => {
    const { tx, sent } = recording(t.db);
    const dir = coalescingDirectory(directoryOn(tx));
    const missing = randomUUID();
    // Three "events" plan at once, as an expansion batch does: find, then ask for preferences.
    const asks = [[users[0]!, users[1]!], [users[3]!.toUpperCase(), missing], [users[5]!]];
    const answers = await Promise.all(
      asks.map(async (ids) => {
        const found = await dir.findUsers(ids);
        const prefs = await dir.preferences(found.map((u) => u.id));
        return { found: found.map((u) => u.id).sort(), prefs: prefs.map((p) => `${p.user_id}/${p.channel}/${p.scope}`).sort() };
      }),
    );
    assert.deepEqual(answers, [
      { found: [users[0]!, users[1]!].sort(), prefs: [`${users[0]}/email/*`, `${users[0]}/in_app/billing`].sort() },
      { found: [users[3]!], prefs: [`${users[3]}/*/*`] },
      { found: [users[5]!], prefs: [] },
    ]);
    assert.equal(sent.length, 1, sent.join('\n'));
    assert.match(sent[0]!, /^together\(SELECT id, tenant_id.*\| SELECT user_id, channel/);
  });

  test('preferences of users it did not find by id (a tenant selection) are read with a query', async () => {
    const { tx, sent } = recording(t.db);
    const dir = coalescingDirectory(directoryOn(tx));
    const members = await dir.tenantMembers(tenant);
    assert.equal(members.length, users.length);
    const prefs = await dir.preferences(members.map((m) => m.id));
    assert.deepEqual(
      prefs.map((p) => `${p.user_id}/${p.channel}/${p.scope}`).sort(),
      [`${users[0]}/email/*`, `${users[0]}/in_app/billing`, `${users[3]}/*/*`].sort(),
    );
    assert.equal(sent.length, 2, sent.join('\n'));
    assert.match(sent[1]!, /^SELECT user_id, channel/);
  });
});
