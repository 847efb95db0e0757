// herald-test: no database (runs once, not once per backend: scripts/test.mjs)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isUuid, uuidv7 } from '../../src/ids.ts';

/** herald's ids: RFC 9562 version 7, time-ordered, unique, drawn from pooled randomness. */

const timestampOf = (id: string) => parseInt(id.replace(/-/g, '').slice(0, 12), 16);

test('ids from one process are unique and strictly increasing, across counter overflows and pool refills', () => {
  // 100,000 ids in well under 100 ms: the 12-bit counter overflows many times (each overflow
  // borrows the next millisecond) and the 4 KiB random pool is refilled ~200 times.
  const ids = Array.from({ length: 100_000 }, () => uuidv7());
  assert.equal(new Set(ids).size, ids.length);
  for (let i = 1; i < ids.length; i++) assert.ok(ids[i]! > ids[i - 1]!, `${ids[i - 1]} then ${ids[i]}`);
});

test('uuidv7 carries the millisecond timestamp, version 7 and the RFC variant', () => {
  const at = Date.now() + 3_600_000; // ahead of every id made so far, so nothing is borrowed
  const id = uuidv7(at);
  assert.ok(isUuid(id), id);
  const hex = id.replace(/-/g, '');
  assert.equal(timestampOf(id), at);
  assert.equal(hex[12], '7');
  assert.ok('89ab'.includes(hex[16]!), `variant nibble ${hex[16]}`);
});

test('a clock that steps back still yields a larger id', () => {
  const before = uuidv7(Date.now() + 7_200_000);
  const after = uuidv7(Date.now());
  assert.ok(after > before, `${before} then ${after}`);
  assert.equal(timestampOf(after), timestampOf(before));
});

test('the random part differs between ids of the same millisecond', () => {
  const at = Date.now() + 10_800_000;
  const a = uuidv7(at).replace(/-/g, '').slice(20);
  const b = uuidv7(at).replace(/-/g, '').slice(20);
  assert.notEqual(a, b);
});
