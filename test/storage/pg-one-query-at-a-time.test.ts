import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createTestDb, type TestDb } from '../helpers/db.ts';
import { pgOnly, sleep } from './pg-fault-kit.ts';

/**
 * pg's per-client query queue is deprecated (pg 8 warns "Calling client.query() when the client is
 * already executing a query is deprecated and will be removed in pg@9.0"): the driver hands a
 * connection one query at a time itself, in call order, wherever callers issue them concurrently
 * (inside a transaction, on the migration lock's session, on the LISTEN connection).
 */
describe('one query at a time per connection', { skip: pgOnly }, () => {
  let t: TestDb;
  before(async () => {
    t = await createTestDb({ migrate: false });
    await t.db.exec(`CREATE TABLE serial_t (n int)`);
  });
  after(() => t.drop());

  test('concurrent statements on one connection run in call order, and pg never queues one', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      const ns = Array.from({ length: 10 }, (_, i) => i);
      const [together, counted] = await t.db.transaction(async (tx) => {
        const inserts = ns.map((n) => tx.query('INSERT INTO serial_t (n) VALUES ($1)', [n]));
        const all = Promise.all([
          tx.pipeline([{ text: 'SELECT count(*)::int AS c FROM serial_t', values: [] }]),
          tx.query<{ c: number }>('SELECT count(*)::int AS c FROM serial_t'),
        ]);
        await Promise.all(inserts);
        return all;
      });
      assert.equal(together[0]!.rows[0]!.c, 10, 'pipeline ran after the ten inserts');
      assert.equal(counted.rows[0]!.c, 10);

      const inSession = await t.db.withAdvisoryLock('serial.lock', (s) =>
        Promise.all(ns.map((n) => s.query<{ n: number }>('SELECT $1::int AS n', [n]))),
      );
      assert.deepEqual(inSession.map((r) => r.rows[0]!.n), ns);

      // The LISTEN connection: subscriptions and NOTIFYs issued together.
      await Promise.all(['serial_a', 'serial_b', 'serial_c'].map((ch) => t.db.listen(ch, () => {})));
      for (const ch of ['serial_a', 'serial_b', 'serial_c']) t.db.wake(ch);
      await Promise.all(['serial_d', 'serial_e'].map((ch) => t.db.listen(ch, () => {})));
      await sleep(100); // warnings are emitted on a later tick
    } finally {
      process.off('warning', onWarning);
    }
    assert.deepEqual(
      warnings.filter((w) => /pg@9|already executing a query/.test(w.message)).map((w) => w.message),
      [],
    );
  });
});
