import { createHash } from 'node:crypto';

/**
 * A fixed single-core CPU task (SHA-256 over 64 MiB), in MB/s. Printed with each run, before and
 * after the cases: this VM's speed drifts from day to day (its neighbours share the host), and
 * every subject's figures move with it, the peers' too. Two runs' figures compare only when their
 * box speed does; the ratios to the peers, measured in the same run, hold up better.
 */
export function boxSpeedMBps(): number {
  const chunk = Buffer.alloc(1 << 20, 7);
  const t0 = process.hrtime.bigint();
  const hash = createHash('sha256');
  for (let i = 0; i < 64; i++) hash.update(chunk);
  hash.digest();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return 64 / seconds;
}
