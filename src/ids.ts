import { randomFillSync } from 'node:crypto';

/** The millisecond of the last id (can run ahead of the clock after a counter overflow). */
let lastMs = 0;
let seq = 0;

// Random bytes are drawn from a pool refilled 4 KiB at a time: one randomBytes() call per id cost
// ~10 µs of CPU per event in bench/profile.ts (crypto.randomUUID pools its entropy the same way).
const POOL_SIZE = 4096;
const pool = Buffer.alloc(POOL_SIZE);
let poolOffset = POOL_SIZE;

function take(n: number): number {
  if (poolOffset + n > POOL_SIZE) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const at = poolOffset;
  poolOffset += n;
  return at;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/**
 * UUIDv7 (RFC 9562): 48-bit millisecond timestamp, then random bits. Time-ordered ids keep the
 * primary-key index append-only and make (created_at, id) a natural keyset. Ids from one process
 * are strictly increasing: within one millisecond a 12-bit counter (started at a random value
 * below 2048) orders them; when it overflows, or the clock steps back, the id borrows the next
 * millisecond (RFC 9562 §6.2, method 1).
 */
export function uuidv7(clock = Date.now()): string {
  let now: number;
  if (clock <= lastMs) {
    seq++;
    if (seq > 0xfff) {
      lastMs++;
      seq = 0;
    }
    now = lastMs;
  } else {
    now = lastMs = clock;
    const at = take(2);
    seq = ((pool[at]! << 8) | pool[at + 1]!) & 0x7ff;
  }
  const r = take(8);
  const h = HEX;
  // 48-bit timestamp, big-endian: the high 16 bits, then the low 32.
  const hi = Math.floor(now / 0x100000000);
  const lo = now >>> 0;
  return (
    h[(hi >>> 8) & 0xff]! + h[hi & 0xff]! + h[lo >>> 24]! + h[(lo >>> 16) & 0xff]! + '-' +
    h[(lo >>> 8) & 0xff]! + h[lo & 0xff]! + '-' +
    h[0x70 | (seq >> 8)]! + h[seq & 0xff]! + '-' +
    h[0x80 | (pool[r]! & 0x3f)]! + h[pool[r + 1]!]! + '-' +
    h[pool[r + 2]!]! + h[pool[r + 3]!]! + h[pool[r + 4]!]! + h[pool[r + 5]!]! + h[pool[r + 6]!]! + h[pool[r + 7]!]!
  );
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const isUuid = (s: unknown): s is string => typeof s === 'string' && UUID_RE.test(s);
