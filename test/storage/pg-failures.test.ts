// herald-test: no database (runs once, not once per backend: scripts/test.mjs)
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DatabaseUnavailableError } from '../../src/errors.ts';
import { classify, isConnectionFailure } from '../../src/storage/drivers/pg-failures.ts';

const coded = (code: string, message = `error ${code}`) => Object.assign(new Error(message), { code });

/**
 * Which failures the Postgres driver reports as an outage (DatabaseUnavailableError) and which stay
 * the statement's own errors. The faults themselves are provoked for real in
 * pg-connection-loss.test.ts and pg-timeouts.test.ts; this pins the whole list.
 */
describe('connection failures and SQL errors', () => {
  test('network errors, pg\'s lost-connection messages and session-ending SQLSTATEs are outages', () => {
    for (const code of ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND']) {
      assert.ok(isConnectionFailure(coded(code)), code);
    }
    for (const code of ['08000', '08003', '08006', '08001', '08P01', '57P01', '57P02', '57P03', '53300', '25P03', '57P05']) {
      assert.ok(isConnectionFailure(coded(code)), code);
    }
    for (const message of [
      'Connection terminated unexpectedly',
      'Connection terminated',
      'Connection terminated due to connection timeout',
      'timeout exceeded when trying to connect',
      'Client has encountered a connection error and is not queryable',
      'timeout expired',
    ]) {
      assert.ok(isConnectionFailure(new Error(message)), message);
    }
    assert.ok(isConnectionFailure(new AggregateError([coded('ECONNREFUSED')], 'connect failed')));
  });

  test('SQL errors are not: constraints, syntax, permissions, a statement cancelled by statement_timeout', () => {
    for (const code of ['23505', '23503', '42601', '42501', '57014', '40001', '40P01', '22P02']) {
      assert.ok(!isConnectionFailure(coded(code)), code);
      const err = coded(code);
      assert.equal(classify(err, true), err, 'returned as it is');
    }
    assert.ok(!isConnectionFailure(new Error('relation "x" does not exist')));
    assert.ok(!isConnectionFailure('a string'));
  });

  test('classify keeps the cause and says whether the outcome is known', () => {
    const lost = coded('57P01', 'terminating connection due to administrator command');
    const known = classify(lost, false) as DatabaseUnavailableError;
    assert.ok(known instanceof DatabaseUnavailableError);
    assert.equal(known.outcomeUnknown, false);
    assert.equal(known.cause, lost);
    const unknown = classify(lost, true) as DatabaseUnavailableError;
    assert.equal(unknown.outcomeUnknown, true);
    assert.match(unknown.message, /may or may not have committed/);
    // An outage already classified keeps its class; a later COMMIT context can only make it unknown.
    assert.equal(classify(known, false), known);
    assert.equal((classify(known, true) as DatabaseUnavailableError).outcomeUnknown, true);
  });
});
