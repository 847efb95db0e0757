// The benchmark's verdicts on SPEC §3 (bench/lib/bars.ts): a compound bar is met only when every
// part is, a part that was not measured never counts as met, and a bar set at 10 M rows says the
// table size it was judged at. Fed with made-up summaries: the logic, not the machine, is tested.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { barsReport } from '../../bench/lib/bars.ts';
import { median } from '../../bench/lib/stats.ts';
import type { ModeResult } from '../../bench/lib/result.ts';
import { summarise, type Summary } from '../../bench/lib/table.ts';

const summary = (subject: string, mode: string, s: Partial<Summary> = {}): Summary => ({
  subject,
  mode,
  runs: 3,
  rate: 0,
  rateMin: 0,
  rateMax: 0,
  p50: 0,
  p99: 0,
  p99Min: 0,
  p99Max: 0,
  ackP50: 0,
  ackP99: 0,
  cpuUs: 0,
  nodeUs: 0,
  pgUs: 0,
  rssMb: 0,
  boxPct: 0,
  foreignPct: 0,
  verified: 'ok',
  notes: [],
  extra: {},
  ...s,
});

/** The verdict cell of the bar whose name starts with `name`. */
const verdict = (report: string, name: string) => {
  const row = report.split('\n').find((l) => l.startsWith(`| ${name}`));
  assert.ok(row, `no bar "${name}" in the report`);
  return row.split(' | ')[1]!;
};

const heraldStream = summary('herald (engine.emit, workflow mode)', 'stream: 16 producers', { rate: 12_000, ackP99: 4, cpuUs: 100, extra: { ackRate: 12_000 } });
const gwDefault = summary('graphile-worker 0.18 (default)', 'stream: 16 producers', { rate: 500, cpuUs: 2_000 });
const gwBatched = summary('graphile-worker 0.18 (batched)', 'stream: 16 producers', { rate: 700, cpuUs: 1_500 });
const pgBoss = summary('pg-boss 12.38 (notify, batch 100)', 'stream: 16 producers', { rate: 550, cpuUs: 2_500 });

test('engine emit is met only with every part: rate, ack p99 and both ratios to the peers', () => {
  assert.equal(verdict(barsReport([heraldStream, gwDefault, gwBatched, pgBoss]), 'Engine emit'), '**met**');
  // 12,000 / 900 = 13.3× the faster graphile-worker: one part fails, the bar is not met.
  const fasterPeer = { ...gwBatched, rate: 900 };
  assert.equal(verdict(barsReport([heraldStream, gwDefault, fasterPeer, pgBoss]), 'Engine emit'), '**not met**');
  const slowAcks = { ...heraldStream, ackP99: 6 };
  assert.equal(verdict(barsReport([slowAcks, gwDefault, gwBatched, pgBoss]), 'Engine emit'), '**not met**');
});

test('without the peers in the run, the bars that compare with them are not measured, not failed', () => {
  const report = barsReport([heraldStream]);
  assert.equal(verdict(report, 'Engine emit'), 'not measured');
  assert.equal(verdict(report, 'CPU per event'), 'not measured');
  // A part that fails on its own still fails the bar, peers or not.
  assert.equal(verdict(barsReport([{ ...heraldStream, extra: { ackRate: 5_000 } }]), 'Engine emit'), '**not met**');
});

test('CPU per event is compared with the leaner graphile-worker configuration', () => {
  // 1/10 of the leaner (1,500 µs) is 150: 140 meets it, 160 does not, though 160 < 2,000 / 10 would.
  assert.equal(verdict(barsReport([{ ...heraldStream, cpuUs: 140 }, gwDefault, gwBatched]), 'CPU per event'), '**met**');
  assert.equal(verdict(barsReport([{ ...heraldStream, cpuUs: 160 }, gwDefault, gwBatched]), 'CPU per event'), '**not met**');
});

test('the inbox and badge bars say the table size they were judged at when it is under 10 M rows', () => {
  const inbox = (rows: string, sqlP99: number, httpP99: number, badgeP99: number) => [
    summary('herald inbox', `SQL: latest 20 (${rows} M rows, c=1)`, { p99: sqlP99 }),
    summary('herald inbox', 'HTTP + JWT + RLS: latest 20 (c=1)', { p99: httpP99 }),
    summary('herald inbox', 'SQL: unread badge, capped at 99 (c=1)', { p99: badgeP99 }),
  ];
  const small = barsReport(inbox('1', 2, 4, 0.5));
  assert.match(verdict(small, 'Inbox latest 20'), /^\*\*met\*\* at 1 M rows \(the bar is at 10 M/);
  assert.match(verdict(small, 'Unread badge'), /^\*\*met\*\* at 1 M rows/);
  assert.match(verdict(barsReport(inbox('1', 2, 6, 0.5)), 'Inbox latest 20'), /^\*\*not met\*\* at 1 M rows/);
  const full = barsReport(inbox('10', 2, 4, 0.5));
  assert.equal(verdict(full, 'Inbox latest 20'), '**met**');
  assert.equal(verdict(full, 'Unread badge'), '**met**');
});

test('the wake-ups cost is (off − on) / off of the acknowledged rates', () => {
  const report = (on: number, off: number) =>
    barsReport([
      summary('herald wake-ups (LISTEN/NOTIFY), engine.emit', 'on (NOTIFY and in-memory wake-ups as shipped; 50 ms polling as off), 16 producers', { extra: { ackRate: on, notifiesPerEvent: 0.03 } }),
      summary('herald wake-ups (LISTEN/NOTIFY), engine.emit', 'off (no NOTIFY, no in-memory wake-up; 50 ms polling), 16 producers', { extra: { ackRate: off, notifiesPerEvent: 0 } }),
    ]);
  assert.equal(verdict(report(9_100, 10_000), 'Wake-ups'), '**met**');
  assert.equal(verdict(report(8_900, 10_000), 'Wake-ups'), '**not met**');
  assert.match(report(8_900, 10_000), /\(11\.0 % cost\); 0\.030 NOTIFYs per event, one per 33\.3 events/);
});

test('a median of an even number of runs is the mean of the middle two', () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([5, Number.NaN, 7]), 6, 'runs without the figure are left out');
  assert.ok(Number.isNaN(median([])));
});

test('a case\'s "verified" reads "ok (N checked)" only when every run checked all its work', () => {
  const usage = { wallMs: 1000, nodeCpuMs: 100, pgCpuMs: 100, boxBusyPct: 50, peakRssMb: 100 };
  const run = (verified: string, events = 100): ModeResult => ({ subject: 's', mode: 'm', events, rate: events, usage, verified });
  assert.equal(summarise([run('ok'), run('ok', 50)])[0]!.verified, 'ok (150 checked)');
  // A window that checked its answers only says so, not "checked".
  assert.equal(summarise([run('ok'), run('ok (every answer a 200; rows checked at the end)')])[0]!.verified, 'ok (every answer a 200; rows checked at the end)');
  assert.equal(summarise([run('ok'), run('3 rows missing')])[0]!.verified, '3 rows missing');
});

test('the overload bar: accepted p99 within 5× the unloaded p99, no 5xx, RSS within 16 MB; each part can fail it', () => {
  const over = (p99: number, extra: Record<string, number>, verified = 'ok (1,000 checked)') =>
    summary('herald overload (HTTP emit, workflow mode)', '3× capacity: 9,000/s offered for 60 s, open loop, ≤ 256 connections', {
      rate: 1000,
      p99,
      verified,
      extra: { unloadedP99Ms: 10, shedRate: 8000, fiveHundreds: 0, rssStartMb: 130, rssEndMb: 135, handlingP99Ms: 20, ...extra },
    });
  const name = 'Overload: at 3× capacity';
  assert.equal(verdict(barsReport([over(45, {})]), name), '**met**');
  assert.equal(verdict(barsReport([over(60, {})]), name), '**not met**', 'p99 12× the unloaded one');
  assert.equal(verdict(barsReport([over(45, { fiveHundreds: 3 }, 'unexpected answers: 3×503')]), name), '**not met**');
  assert.equal(verdict(barsReport([over(45, { rssEndMb: 190 })]), name), '**not met**', 'RSS grew 60 MB');
  assert.equal(verdict(barsReport([]), name), 'not measured');
});
