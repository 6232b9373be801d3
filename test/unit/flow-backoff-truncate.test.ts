import { describe, expect, it } from 'vitest';
import { backoffDelay } from '../../src/flow/backoff.js';
import { isTruncated, recordJson } from '../../src/flow/truncate.js';

describe('backoff schedule', () => {
  const policy = { backoffMs: 1000, maxBackoffMs: 60_000 };

  it('doubles per attempt without jitter at the midpoint', () => {
    const mid = () => 0.5;
    expect([1, 2, 3, 4, 5, 6, 7, 8].map((a) => backoffDelay(a, policy, mid))).toEqual([
      1000, 2000, 4000, 8000, 16000, 32000, 60000 * 0.9 /* capped: jitter only shortens */, 54000,
    ]);
  });

  it('stays within ±20 % of the exponential delay', () => {
    expect(backoffDelay(1, policy, () => 0)).toBe(800);
    expect(backoffDelay(1, policy, () => 0.999999)).toBe(1200);
    expect(backoffDelay(3, policy, () => 0)).toBe(3200);
    expect(backoffDelay(3, policy, () => 0.999999)).toBe(4800);
    for (let i = 0; i < 1000; i++) {
      const d = backoffDelay(2, policy);
      expect(d).toBeGreaterThanOrEqual(1600);
      expect(d).toBeLessThanOrEqual(2400);
    }
  });

  it('never exceeds maxBackoffMs, even for huge attempt numbers', () => {
    for (const attempt of [7, 10, 50, 100, 10_000]) {
      expect(backoffDelay(attempt, policy, () => 0.999999)).toBeLessThanOrEqual(60_000);
      expect(backoffDelay(attempt, policy, () => 0)).toBe(48_000);
    }
  });

  it('handles zero backoff and attempts below 1', () => {
    expect(backoffDelay(3, { backoffMs: 0, maxBackoffMs: 1000 })).toBe(0);
    expect(backoffDelay(0, policy, () => 0.5)).toBe(1000);
  });

  it('gaps grow between consecutive attempts whatever the jitter', () => {
    const small = { backoffMs: 50, maxBackoffMs: 10_000 };
    for (let a = 1; a < 6; a++) {
      expect(backoffDelay(a, small, () => 0.999999)).toBeLessThan(backoffDelay(a + 1, small, () => 0));
    }
  });
});

describe('record truncation', () => {
  it('keeps values that fit, exactly', () => {
    const v = { a: 'x'.repeat(100), b: [1, 2, 3] };
    expect(recordJson(v, 16_384)).toBe(JSON.stringify(v));
    expect(isTruncated(recordJson(v, 16_384))).toBe(false);
    const exact = JSON.stringify(v);
    expect(recordJson(v, Buffer.byteLength(exact))).toBe(exact);
  });

  it('omits undefined', () => {
    expect(recordJson(undefined, 100)).toBeUndefined();
  });

  it('replaces a large value by a valid JSON marker within the limit', () => {
    const v = { text: 'y'.repeat(50_000) };
    const out = recordJson(v, 1024)!;
    expect(Buffer.byteLength(out)).toBeLessThanOrEqual(1024);
    expect(Buffer.byteLength(out)).toBeGreaterThan(1000);
    expect(isTruncated(out)).toBe(true);
    const marker = JSON.parse(out) as { $truncated: boolean; bytes: number; preview: string };
    expect(marker.$truncated).toBe(true);
    expect(marker.bytes).toBe(Buffer.byteLength(JSON.stringify(v)));
    expect(JSON.stringify(v).startsWith(marker.preview)).toBe(true);
  });

  it('counts UTF-8 bytes and escapes, never splitting a surrogate pair', () => {
    const v = { s: '"é😀\n'.repeat(2000) };
    for (const limit of [200, 333, 1000, 4096]) {
      const out = recordJson(v, limit)!;
      expect(Buffer.byteLength(out)).toBeLessThanOrEqual(limit);
      const marker = JSON.parse(out) as { preview: string };
      expect(JSON.stringify(v).startsWith(marker.preview)).toBe(true);
      expect(/[\ud800-\udbff]$/.test(marker.preview)).toBe(false);
    }
    // Multi-byte text near the limit: character count fits, byte count does not.
    const accents = 'é'.repeat(600);
    expect(isTruncated(recordJson(accents, 1000))).toBe(true);
  });

  it('records unserializable values instead of throwing', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(JSON.parse(recordJson(cyclic, 1000)!)).toHaveProperty('$unserializable');
  });
});
