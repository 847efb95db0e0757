// herald-test: no database (runs once, not once per backend: scripts/test.mjs)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseRetryDelay, retryDelayMs } from '../../src/workflow/http/retry-delay.ts';

test('Upstash-Retry-Delay expressions evaluate over retried', () => {
  assert.equal(retryDelayMs('1000', 3), 1000);
  assert.equal(retryDelayMs('pow(2, retried) * 1000', 0), 1000);
  assert.equal(retryDelayMs('pow(2, retried) * 1000', 3), 8000);
  assert.equal(retryDelayMs('max(500, retried * 250) + 10', 4), 1010);
  assert.equal(retryDelayMs('1000 * (1 + retried) / 2', 1), 1000);
  assert.equal(retryDelayMs('min(sqrt(16), abs(-3)) + floor(2.7) + ceil(0.2) + round(1.5)', 0), 8);
  assert.equal(retryDelayMs('-5', 0), 0, 'clamped at 0');
  assert.equal(retryDelayMs('exp(retried)', 100), 86_400_000, 'clamped at one day');
});

test('anything but the arithmetic grammar is refused, never evaluated', () => {
  for (const bad of ['process.exit(1)', 'retried; 1', '1 +', 'pow(2', 'constructor', '(() => 1)()', 'retried ** 2', 'x'.repeat(300)]) {
    assert.throws(() => parseRetryDelay(bad), /Upstash-Retry-Delay/, bad);
  }
});
