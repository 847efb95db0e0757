// herald-test: no database (runs once, not once per backend: scripts/test.mjs)
// The soak's verdict (bench/lib/stability.ts): a run is stable only if memory, latency and the
// expansion backlog did not grow; the first window (still settling) does not count.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { judgeStability, type SoakWindow } from '../../bench/lib/stability.ts';

const windows = (xs: [p99: number, rssMb: number, backlog: number][]): SoakWindow[] =>
  xs.map(([p99, rssMb, backlog]) => ({ p99, rssMb, backlog }));

test('a flat run is stable, and the text carries the numbers', () => {
  const v = judgeStability(windows([[40, 120, 0], [60, 128, 20], [62, 129, 10], [58, 129, 30], [61, 130, 0]]), 1000);
  assert.equal(v.ok, true);
  assert.match(v.text, /peak RSS 129 → 130 MB/);
  assert.doesNotMatch(v.text, /GREW|more than a second/);
});

test('memory that keeps growing is not stable', () => {
  const v = judgeStability(windows([[40, 120, 0], [50, 130, 0], [50, 150, 0], [50, 170, 0], [50, 190, 0]]), 1000);
  assert.equal(v.ok, false);
  assert.match(v.text, /GREW/);
});

test('a tail that doubles is not stable; the first window does not count', () => {
  assert.equal(judgeStability(windows([[5, 120, 0], [40, 120, 0], [42, 120, 0], [44, 120, 0], [41, 120, 0]]), 1000).ok, true);
  const v = judgeStability(windows([[40, 120, 0], [40, 120, 0], [42, 120, 0], [90, 120, 0], [95, 120, 0]]), 1000);
  assert.equal(v.ok, false);
  assert.match(v.text, /ms \(GREW\)/);
});

test('more than one second of offered load left waiting is not stable', () => {
  const v = judgeStability(windows([[40, 120, 0], [40, 120, 1500], [40, 120, 0]]), 1000);
  assert.equal(v.ok, false);
  assert.match(v.text, /more than a second of load/);
});
