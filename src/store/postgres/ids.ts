import { randomFillSync } from 'node:crypto';
import { v7 } from 'uuid';

/**
 * UUIDv7 ids for rows this process creates (jobs, outbox rows, executions): time-ordered and
 * monotonic within the process, so keyset pagination lists them in creation order even within one
 * millisecond. Random bytes come from a pool: uuid's default rng makes a syscall per id.
 */
const POOL_IDS = 256;
const pool = new Uint8Array(16 * POOL_IDS);
let offset = pool.length;
let lastMs = Number.NEGATIVE_INFINITY;
let seq = 0;

export function newId(): string {
  if (offset === pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  const random = pool.subarray(offset, offset + 16);
  offset += 16;
  const now = Date.now();
  if (now > lastMs) {
    lastMs = now;
    // Random 31-bit start leaves room to count up within the millisecond (as uuid does).
    seq = ((random[6]! << 23) | (random[7]! << 15) | (random[8]! << 7) | (random[9]! >>> 1)) >>> 0;
  } else {
    seq = (seq + 1) | 0;
    if (seq === 0) lastMs++;
  }
  return v7({ random, msecs: lastMs, seq });
}
