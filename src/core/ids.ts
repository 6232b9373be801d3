import { randomFillSync } from 'node:crypto';
import { v7 } from 'uuid';

/**
 * UUIDv7 (RFC 9562): a 48-bit Unix-ms timestamp, then random bits — ids sort by creation time, so
 * keyset pagination and "newest first" need no extra column, and B-tree inserts stay append-like
 * (random keys made SQLite inserts 4× slower here). Monotonic within a thread: ids made in the same
 * millisecond count up from a random start, as uuid's own v7() does. The random bytes come from a
 * pool: uuid's default makes one getRandomValues call per id, a tenth of the accept hot path.
 */
const POOL_IDS = 256;
const pool = new Uint8Array(16 * POOL_IDS);
let offset = pool.length;
let lastMs = Number.NEGATIVE_INFINITY;
let seq = 0;

export function uuidv7(now: number = Date.now()): string {
  if (offset === pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  const random = pool.subarray(offset, offset + 16);
  offset += 16;
  const ms = Math.floor(now);
  if (ms > lastMs) {
    lastMs = ms;
    // A random 31-bit start leaves room to count up within the millisecond.
    seq = ((random[6]! << 23) | (random[7]! << 15) | (random[8]! << 7) | (random[9]! >>> 1)) >>> 0;
  } else {
    seq = (seq + 1) | 0;
    if (seq === 0) lastMs++;
  }
  return v7({ random, msecs: lastMs, seq });
}
