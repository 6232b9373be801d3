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
    expect(cache.stats()).toEqual({ hits: 1, misses: 2, entries: 0, bytes: 0 });
  });

  it('stays within its byte budget by dropping the oldest messages first', () => {
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
});
