import { createHash, randomFillSync } from 'node:crypto';

/**
 * UUIDv7 (RFC 9562): a 48-bit Unix-ms timestamp, then random bits — ids sort by creation time, so
 * keyset pagination and "newest first" need no extra column, and B-tree inserts stay append-like
 * (random keys made SQLite inserts 4× slower here). Monotonic within a thread: ids made in the same
 * millisecond count up from a random start, as uuid's own v7() does. The random bytes come from a
 * pool: uuid's default makes one getRandomValues call per id, a tenth of the accept hot path.
 * Laid out and formatted here, as uuid's v7() does it (bytes and text alike).
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
  const r = offset;
  offset += 16;
  const ms = Math.floor(now);
  if (ms > lastMs) {
    lastMs = ms;
    // A random 31-bit start leaves room to count up within the millisecond.
    seq = ((pool[r + 6]! << 23) | (pool[r + 7]! << 15) | (pool[r + 8]! << 7) | (pool[r + 9]! >>> 1)) >>> 0;
  } else {
    seq = (seq + 1) | 0;
    if (seq === 0) lastMs++;
  }
  // RFC 9562's layout, as uuid's v7() lays it out: 48-bit ms, version 7 and the sequence's top
  // 12 bits, the variant and 18 more bits of it, then 2 last bits of it and random bits.
  bytes[0] = (lastMs / 0x10000000000) & 0xff;
  bytes[1] = (lastMs / 0x100000000) & 0xff;
  bytes[2] = (lastMs / 0x1000000) & 0xff;
  bytes[3] = (lastMs / 0x10000) & 0xff;
  bytes[4] = (lastMs / 0x100) & 0xff;
  bytes[5] = lastMs & 0xff;
  bytes[6] = 0x70 | ((seq >>> 28) & 0x0f);
  bytes[7] = (seq >>> 20) & 0xff;
  bytes[8] = 0x80 | ((seq >>> 14) & 0x3f);
  bytes[9] = (seq >>> 6) & 0xff;
  bytes[10] = ((seq << 2) & 0xff) | (pool[r + 10]! & 0x03);
  for (let i = 11; i < 16; i++) bytes[i] = pool[r + i]!;
  return format(bytes);
}

/**
 * The canonical text, written as ASCII into one buffer and read back as one flat string: uuid's
 * stringify concatenates 20 pieces (a rope of small strings, flattened again wherever the id is
 * used: a map key, a SQLite parameter, a message to the writer thread).
 */
function format(b: Uint8Array): string {
  for (let i = 0; i < 16; i++) {
    const at = TEXT_AT[i]!;
    text[at] = HEX_DIGITS[b[i]! >>> 4]!;
    text[at + 1] = HEX_DIGITS[b[i]! & 0x0f]!;
  }
  return text.toString('latin1');
}

const bytes = new Uint8Array(16);
const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');
/** Where each byte's two digits go in xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx. */
const TEXT_AT = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
const text = Buffer.alloc(36, '-', 'latin1');

/**
 * The smallest UUIDv7 of the millisecond `ms`: every id uuidv7 makes at `ms` or later sorts at or
 * after it (as text), every id of an earlier millisecond before it. Time bounds over tables keyed
 * by these ids (GET /api/executions?since=&until=).
 */
export function uuidv7Floor(ms: number): string {
  const hex = Math.max(0, Math.floor(ms)).toString(16).padStart(12, '0');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-7000-8000-000000000000`;
}

/**
 * A sender's x-request-id that another flow's request already has: this flow's requests with that
 * id get this one instead — the same for every retry (still stored once), and no 409 that would
 * block an unrelated sender or tell it which ids other flows have seen. Applied by the ingress, or
 * by the worker that records a request its job carried (RABBITMQ_ACCEPT=broker).
 */
export function flowScopedRequestId(flowId: string, requestId: string): string {
  return scopedId('rid', flowId, requestId);
}

/** An id derived from a flow and an id of the sender's (request-id.ts): `<prefix>-` and 32 base64url characters. */
export function scopedId(prefix: string, flowId: string, id: string): string {
  return `${prefix}-${createHash('sha256').update(`${flowId}\n${id}`).digest('base64url').slice(0, 32)}`;
}
