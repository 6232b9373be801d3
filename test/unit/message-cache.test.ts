import { describe, expect, it } from 'vitest';
import type { ReceivedMessage } from '../../src/core/message.js';
import { MessageCache } from '../../src/store/message-cache.js';
import { makeMessage } from '../conformance/helpers.js';

const sized = (id: string, rawBytes: number, receivedAt = 1_700_000_000_000): ReceivedMessage =>
  makeMessage({ id, receivedAt, rawBody: Buffer.alloc(rawBytes), headers: {}, query: {} });

describe('MessageCache', () => {
  it('serves a message once, then leaves the read to the store', () => {
    const cache = new MessageCache(1024 * 1024);
    const m = sized('a', 100);
    cache.put(m);
    expect(cache.take('a')).toBe(m);
    expect(cache.take('a')).toBeUndefined();
    expect(cache.take('unknown')).toBeUndefined();
    expect(cache.stats()).toEqual({ hits: 1, misses: 2, refused: 0, entries: 0, bytes: 0 });
  });

  it("'drop-oldest' (the default) stays within its byte budget by dropping the oldest messages first", () => {
    // Each message counts 1 KiB of overhead plus twice its raw bytes: 1024 + 2 * 1000 = 3024.
    const cache = new MessageCache(10_000);
    for (const id of ['m1', 'm2', 'm3', 'm4']) cache.put(sized(id, 1000));
    expect(cache.stats().entries).toBe(3);
    expect(cache.stats().bytes).toBeLessThanOrEqual(10_000);
    expect(cache.take('m1')).toBeUndefined(); // the oldest went
    expect(cache.take('m4')).toBeDefined();
    // A message larger than the whole budget is never held (and evicts nothing).
    cache.put(sized('huge', 20_000));
    expect(cache.take('huge')).toBeUndefined();
    expect(cache.take('m2')).toBeDefined();
  });

  it('counts a body stored apart from the raw bytes (form fields whose bytes went to the attachment store)', () => {
    const cache = new MessageCache(10_000);
    // No raw bytes, a 2,000-byte body JSON: 1024 + 2 * 2000 = 5024 each, so one fits, not two.
    cache.put(sized('f1', 0), 2_000);
    cache.put(sized('f2', 0), 2_000);
    expect(cache.stats().entries).toBe(1);
    expect(cache.stats().bytes).toBe(5_024);
    // Without the hint each would count 1 KiB: the budget would not bound them.
    cache.put(sized('g1', 0));
    expect(cache.stats().bytes).toBe(5_024 + 1_024);
  });

  it('holds nothing with a budget of 0 (MESSAGE_CACHE=0)', () => {
    const cache = new MessageCache(0);
    cache.put(sized('a', 10));
    expect(cache.take('a')).toBeUndefined();
    expect(cache.stats().entries).toBe(0);
  });

  it('counts header and query text, and replaces an entry put twice without counting it twice', () => {
    const cache = new MessageCache(1024 * 1024);
    const m = makeMessage({ id: 'h', rawBody: Buffer.alloc(0), headers: { 'x-long': 'v'.repeat(500), multi: ['ab', 'cd'] }, query: { q: 'x'.repeat(100) } });
    cache.put(m);
    const bytes = cache.stats().bytes;
    expect(bytes).toBe(1024 + 'x-long'.length + 500 + 'multi'.length + 4 + 1 + 100);
    cache.put(m);
    expect(cache.stats()).toMatchObject({ entries: 1, bytes });
  });

  it('forgets messages received before a retention purge cutoff', () => {
    const cache = new MessageCache(1024 * 1024);
    cache.put(sized('old', 10, 1000));
    cache.put(sized('new', 10, 3000));
    cache.dropReceivedBefore(2000);
    expect(cache.take('old')).toBeUndefined();
    expect(cache.take('new')).toBeDefined();
  });
  it('evicts in put order under churn: taken and replaced entries neither count nor shield others', () => {
    // 3 messages of 3024 bytes fit in 10 000.
    const cache = new MessageCache(10_000);
    for (let i = 0; i < 5000; i++) {
      cache.put(sized(`m${i}`, 1000));
      if (i % 2 === 0) expect(cache.take(`m${i}`)).toBeDefined();
    }
    // Held now: the three newest odd ones; everything older is gone.
    expect(cache.stats().entries).toBe(3);
    expect(cache.stats().bytes).toBe(3 * 3024);
    for (const id of ['m4995', 'm4997', 'm4999']) expect(cache.take(id)).toBeDefined();
    expect(cache.take('m4993')).toBeUndefined();

    // Put again, an entry moves to the newest place: its old place evicts nothing.
    for (const id of ['a', 'b', 'c']) cache.put(sized(id, 1000));
    cache.put(sized('a', 1000));
    cache.put(sized('d', 1000)); // over budget: the oldest is now b
    expect(cache.take('b')).toBeUndefined();
    for (const id of ['a', 'c', 'd']) expect(cache.take(id)).toBeDefined();
  });

  it("'keep-held' refuses new messages while full, and takes them again once reads make room", () => {
    const now = Date.now();
    const cache = new MessageCache(10_000, { whenFull: 'keep-held' });
    for (const id of ['m1', 'm2', 'm3', 'm4']) cache.put(sized(id, 1000, now));
    expect(cache.stats()).toMatchObject({ entries: 3, refused: 1 });
    expect(cache.take('m4')).toBeUndefined(); // refused: its execution reads the store
    expect(cache.take('m1')).toBeDefined();
    cache.put(sized('m5', 1000, now));
    for (const id of ['m2', 'm3', 'm5']) expect(cache.take(id)).toBeDefined();
    expect(cache.stats()).toMatchObject({ entries: 0, bytes: 0, refused: 1 });
  });

  it("'keep-held' lets messages held longer than staleAfterMs make room (a stopped flow's are never read)", () => {
    const t = 1_700_000_000_000;
    const cache = new MessageCache(10_000, { whenFull: 'keep-held', staleAfterMs: 60_000 });
    cache.put(sized('old', 1000, t));
    cache.put(sized('mid', 1000, t + 30_000));
    cache.put(sized('new', 1000, t + 50_000));
    cache.put(sized('a', 1000, t + 70_000)); // 'old' is now 70 s old: it goes
    expect(cache.take('old')).toBeUndefined();
    cache.put(sized('b', 1000, t + 80_000)); // 'mid' is 50 s old: kept, 'b' refused
    expect(cache.take('b')).toBeUndefined();
    for (const id of ['mid', 'new', 'a']) expect(cache.take(id)).toBeDefined();
    expect(cache.stats().refused).toBe(1);
  });

  it("'keep-held' keeps serving a FIFO backlog that outgrew it, where 'drop-oldest' ends up missing every read", () => {
    // Each tick 10 messages are committed and 8 executions read the oldest waiting ones, in queue
    // order (a backlog that grows by 2 a tick); the cache holds 100 messages.
    const run = (whenFull: 'keep-held' | 'drop-oldest') => {
      const cache = new MessageCache(100 * 3024, { whenFull });
      let put = 0;
      let read = 0;
      let lateHits = 0;
      for (let tick = 0; tick < 2000; tick++) {
        for (let i = 0; i < 10; i++) cache.put(sized(`m${put++}`, 1000, 1_700_000_000_000 + tick));
        for (let i = 0; i < 8; i++) {
          const hit = cache.take(`m${read++}`) !== undefined;
          if (tick >= 1000 && hit) lateHits++;
        }
      }
      return { ...cache.stats(), lateHits };
    };
    const dropOldest = run('drop-oldest');
    const keepHeld = run('keep-held');
    // drop-oldest: once the backlog passes 100 / (10/8 - 1) = 400 messages, every read misses.
    expect(dropOldest.lateHits).toBe(0);
    // keep-held: a read hits while the cache is being refilled at the pace of the reads; a hit rate
    // that decays slowly (by 8/10 each time the reads pass over the cache's contents).
    expect(keepHeld.lateHits).toBeGreaterThan(50);
    expect(keepHeld.hits).toBeGreaterThan(2 * dropOldest.hits);
    expect(keepHeld.bytes).toBeLessThanOrEqual(100 * 3024);
  });

  it('holds no message it has let go of (taken, dropped, replaced) until its list is compacted', () => {
    const cache = new MessageCache(64 * 1024 * 1024);
    // 500 put/take cycles of 64 KiB: fewer than the 1,024 entries that trigger a compaction.
    for (let i = 0; i < 500; i++) {
      cache.put(sized(`m${i}`, 64 * 1024));
      expect(cache.take(`m${i}`)).toBeDefined();
    }
    cache.put(sized('kept', 10));
    cache.put(sized('kept', 20)); // replaced
    const order = (cache as unknown as { order: Array<{ message: unknown }> }).order;
    // Only the live entry still references a message: the others' bytes can be collected.
    expect(order.filter((h) => h.message !== undefined)).toHaveLength(1);
    expect(cache.stats()).toMatchObject({ entries: 1 });
  });

  it("serves a job only its own request: same flow, received shortly before the job was enqueued", () => {
    const cache = new MessageCache(1024 * 1024);
    const at = 1_700_000_000_000;
    cache.put(makeMessage({ id: 'x', flowId: 'orders', receivedAt: at }));
    expect(cache.take('x', { flowId: 'billing', enqueuedAt: at })).toBeUndefined(); // another flow's id
    cache.put(makeMessage({ id: 'y', flowId: 'orders', receivedAt: at }));
    // A sender reused the id after retention purged the first request (elsewhere): this is the old one.
    expect(cache.take('y', { flowId: 'orders', enqueuedAt: at + 2 * 60_000 })).toBeUndefined();
    const z = makeMessage({ id: 'z', flowId: 'orders', receivedAt: at });
    cache.put(z);
    expect(cache.take('z', { flowId: 'orders', enqueuedAt: at + 5 })).toBe(z);
    expect(cache.stats()).toMatchObject({ hits: 1, misses: 2, entries: 0 });
  });

  it('a message too large to keep still replaces the one held under its id', () => {
    const cache = new MessageCache(10_000);
    cache.put(sized('id', 100));
    cache.put(sized('id', 50_000));
    expect(cache.take('id')).toBeUndefined();
  });
});
