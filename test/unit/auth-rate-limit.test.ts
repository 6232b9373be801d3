import { describe, expect, it } from 'vitest';
import { RateLimiter } from '../../src/auth/rate-limit.js';

describe('RateLimiter', () => {
  const T0 = 1_700_000_000_000;

  it('allows a burst, then refills at the configured rate', () => {
    const rl = new RateLimiter({ limit: { perSecond: 2, burst: 3 } });
    expect(rl.take('f', T0)).toEqual({ ok: true, remaining: 2 });
    expect(rl.take('f', T0)).toEqual({ ok: true, remaining: 1 });
    expect(rl.take('f', T0)).toEqual({ ok: true, remaining: 0 });
    expect(rl.take('f', T0)).toEqual({ ok: false, retryAfterSeconds: 1 });
    // 2/s: after 250 ms half a token, still refused; after 500 ms one token.
    expect(rl.take('f', T0 + 250).ok).toBe(false);
    expect(rl.take('f', T0 + 500).ok).toBe(true);
    expect(rl.take('f', T0 + 500).ok).toBe(false);
    // Long idle refills to the burst, never above it.
    expect(rl.take('f', T0 + 60_000)).toEqual({ ok: true, remaining: 2 });
  });

  it('computes Retry-After from the missing tokens and the rate', () => {
    const rl = new RateLimiter();
    const slow = { perSecond: 0.1, burst: 1 };
    expect(rl.take('s', T0, slow).ok).toBe(true);
    expect(rl.take('s', T0, slow)).toEqual({ ok: false, retryAfterSeconds: 10 });
    expect(rl.take('s', T0 + 4_000, slow)).toEqual({ ok: false, retryAfterSeconds: 6 });
    expect(rl.take('s', T0 + 10_000, slow).ok).toBe(true);
  });

  it('keeps buckets per key', () => {
    const rl = new RateLimiter({ limit: { perSecond: 1, burst: 1 } });
    expect(rl.take('a', T0).ok).toBe(true);
    expect(rl.take('a', T0).ok).toBe(false);
    expect(rl.take('b', T0).ok).toBe(true);
  });

  it('a clock stepping backwards adds no tokens', () => {
    const rl = new RateLimiter({ limit: { perSecond: 1, burst: 1 } });
    expect(rl.take('a', T0).ok).toBe(true);
    expect(rl.take('a', T0 - 5_000).ok).toBe(false);
    expect(rl.take('a', T0 + 1_000).ok).toBe(true);
  });

  it('applies a changed limit to an existing bucket', () => {
    const rl = new RateLimiter();
    expect(rl.take('a', T0, { perSecond: 1, burst: 10 }).ok).toBe(true);
    // Burst lowered to 2: the 9 remaining tokens are capped at 2.
    expect(rl.take('a', T0, { perSecond: 1, burst: 2 })).toEqual({ ok: true, remaining: 1 });
  });

  it('bounds memory: evicts least recently used buckets, and sweeps refilled ones', () => {
    const rl = new RateLimiter({ limit: { perSecond: 1, burst: 5 }, maxBuckets: 100 });
    for (let i = 0; i < 1000; i++) rl.take(`k${i}`, T0);
    expect(rl.size).toBe(100);
    // The most recent keys are the ones kept.
    expect(rl.take('k999', T0)).toEqual({ ok: true, remaining: 3 });
    const sweep = new RateLimiter({ limit: { perSecond: 1, burst: 5 } });
    for (let i = 0; i < 500; i++) sweep.take(`old${i}`, T0);
    // Much later, enough activity triggers a sweep of the refilled buckets.
    for (let i = 0; i < 1100; i++) sweep.take('hot', T0 + 3_600_000 + i * 1000);
    expect(sweep.size).toBeLessThan(10);
    expect(sweep.take('hot', T0 + 3_600_000 + 1100 * 1000).ok).toBe(true);
  });

  it('requires a limit', () => {
    expect(() => new RateLimiter().take('a', T0)).toThrow();
  });
});
