import type { QueueSizes } from './queue-modes.ts';

/** How big each case is: the full run (≤ 15 min on 2 cores) and --quick (≤ 2 min). */
export interface Sizes {
  runs: number;
  queue: QueueSizes;
  /** herald has no bulk emit: its backlog is built through emit, so it is smaller. */
  heraldDrainN: number;
  /**
   * herald's paced modes last at least this long (the peers', which saturate and must drain, stay
   * short): long enough that a growing backlog would show in the latencies and the achieved rate.
   */
  heraldPacedSeconds: number;
  raw: { rowTxN: number; unnestN: number; copyN: number; maxMs: number };
  http: { n: number; maxMs: number; clients: number; pgliteN: number };
  fanout: number[];
  inboxRows: number;
  inboxIterations: number;
  /** The soak (only with --soak): its length and the window each table row covers. */
  soak: { minutes: number; windowS: number };
  /**
   * The overload case: 3× the measured capacity for `seconds`, over up to `sockets` connections;
   * its capacity probe and unloaded window last `probeSeconds` each.
   */
  overload: { seconds: number; probeSeconds: number; sockets: number };
}

export const FULL: Sizes = {
  runs: 3,
  queue: {
    streamN: 20_000,
    streamMs: 3_000,
    stream: [16, 256],
    // 5,000/s is offered for 0.6 s only: the peers saturate below 1,000/s and their backlog must
    // drain. herald, which keeps up, is offered both rates for heraldPacedSeconds.
    paced: [
      { rate: 1000, seconds: 1.5 },
      { rate: 5000, seconds: 0.6 },
    ],
    serialN: 500,
    drainN: 20_000,
    waitMs: 60_000,
  },
  heraldDrainN: 2_000,
  heraldPacedSeconds: 5,
  raw: { rowTxN: 20_000, unnestN: 100_000, copyN: 100_000, maxMs: 6_000 },
  http: { n: 30_000, maxMs: 6_000, clients: 64, pgliteN: 5_000 },
  fanout: [1000, 10_000],
  inboxRows: 1_000_000,
  inboxIterations: 500,
  soak: { minutes: 10, windowS: 60 },
  overload: { seconds: 60, probeSeconds: 5, sockets: 256 },
};

export const QUICK: Sizes = {
  runs: 1,
  queue: {
    streamN: 3_000,
    streamMs: 1_500,
    stream: [16],
    paced: [
      { rate: 1000, seconds: 1 },
      { rate: 5000, seconds: 0.3 },
    ],
    serialN: 100,
    drainN: 3_000,
    waitMs: 20_000,
  },
  heraldDrainN: 500,
  heraldPacedSeconds: 1,
  raw: { rowTxN: 3_000, unnestN: 20_000, copyN: 20_000, maxMs: 2_000 },
  http: { n: 3_000, maxMs: 1_500, clients: 64, pgliteN: 1_000 },
  fanout: [500],
  inboxRows: 100_000,
  inboxIterations: 200,
  soak: { minutes: 1, windowS: 10 },
  overload: { seconds: 5, probeSeconds: 2, sockets: 256 },
};
