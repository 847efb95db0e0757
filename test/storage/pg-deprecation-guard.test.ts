import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { REPO } from '../helpers/processes.ts';

const GUARD = fileURLToPath(new URL('../../scripts/fail-on-pg-deprecation.mjs', import.meta.url));

/** Runs `code` (an ES module) in a child node with the guard loaded, from the repo (so `pg` resolves). */
function runGuarded(code: string) {
  return spawnSync(process.execPath, ['--import', GUARD, '--input-type=module', '-e', code], {
    cwd: REPO,
    encoding: 'utf8',
    env: { ...process.env, NODE_OPTIONS: '' },
    timeout: 20_000,
  });
}

/**
 * The suite fails on pg's own deprecation warnings (so the deprecated query queue, or anything else
 * pg 9 removes, cannot come back silently), not on every dependency's.
 */
describe('the pg deprecation guard', () => {
  test("a process that triggers pg's deprecation warning fails, saying why", () => {
    // Two queries on one client without waiting: pg's deprecated per-client queue.
    const r = runGuarded(`
      import pg from 'pg';
      const c = new pg.Client({ connectionString: 'postgres://nobody@127.0.0.1:9/x' });
      c.query('SELECT 1', () => {});
      c.query('SELECT 2', () => {});
      setTimeout(() => {}, 50);
    `);
    assert.notEqual(r.status, 0, r.stderr);
    assert.match(r.stderr, /pg deprecation/);
    assert.match(r.stderr, /already executing a query/);
  });

  test("another package's deprecation warning does not fail the process", () => {
    const r = runGuarded(`
      import { deprecate } from 'node:util';
      deprecate(() => {}, 'some other library: this call is deprecated', 'DEP_OTHER_LIB')();
      setTimeout(() => {}, 50);
    `);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /some other library/, 'still printed as a warning');
  });

  const runner = !process.env.HERALD_TEST_BACKEND && 'runs under scripts/test.mjs (npm test), which loads the guard';
  test('this suite runs with the guard loaded (scripts/test.mjs)', { skip: runner }, () => {
    assert.equal((globalThis as Record<symbol, unknown>)[Symbol.for('herald.pgDeprecationGuard')], true);
  });
});
