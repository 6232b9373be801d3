import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { RecurringFailure, RepeatedLog } from '../../src/core/repeated-log.js';

function recorder() {
  const lines: Array<{ level: string; obj: Record<string, unknown>; msg: string }> = [];
  const at = (level: string) => (obj: object, msg?: string) => lines.push({ level, obj: obj as Record<string, unknown>, msg: msg ?? '' });
  return { lines, info: at('info'), warn: at('warn'), error: at('error') };
}

describe('RepeatedLog', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('writes the first line of a kind, then one line per window saying how many more there were', () => {
    const log = recorder();
    const r = new RepeatedLog(log, 10_000);
    for (let i = 0; i < 500; i++) r.warn('orders/post', { flowId: 'orders', requestId: `r${i}` }, 'step failed');
    expect(log.lines).toEqual([{ level: 'warn', obj: { flowId: 'orders', requestId: 'r0' }, msg: 'step failed' }]);
    vi.advanceTimersByTime(10_000);
    expect(log.lines).toHaveLength(2);
    expect(log.lines[1]).toMatchObject({ level: 'warn', obj: { flowId: 'orders', requestId: 'r499', repeated: 499, windowMs: 10_000 } });
    expect(log.lines[1]!.msg).toMatch(/^step failed \(499 more like it in the last 10 s/);
    // Still failing: one more summary per window, never one line per occurrence.
    for (let i = 0; i < 300; i++) r.warn('orders/post', { requestId: `s${i}` }, 'step failed');
    vi.advanceTimersByTime(10_000);
    expect(log.lines).toHaveLength(3);
    expect(log.lines[2]!.obj).toMatchObject({ requestId: 's299', repeated: 300 });
    // Over: a quiet window closes the kind; the next occurrence is written at once again.
    vi.advanceTimersByTime(10_000);
    expect(log.lines).toHaveLength(3);
    r.warn('orders/post', { requestId: 'later' }, 'step failed');
    expect(log.lines).toHaveLength(4);
    expect(log.lines[3]!.obj).toEqual({ requestId: 'later' });
  });

  it('keeps kinds apart, and flush() writes what is pending', () => {
    const log = recorder();
    const r = new RepeatedLog(log, 10_000);
    r.info('a', { k: 'a' }, 'A');
    r.info('b', { k: 'b' }, 'B');
    r.info('a', { k: 'a2' }, 'A');
    expect(log.lines.map((l) => l.msg)).toEqual(['A', 'B']);
    vi.advanceTimersByTime(3_000);
    r.flush(); // at shutdown: the count so far, over the time it covers
    expect(log.lines).toHaveLength(3);
    expect(log.lines[2]).toMatchObject({ level: 'info', obj: { k: 'a2', repeated: 1, windowMs: 3_000 } });
    expect(log.lines[2]!.msg).toMatch(/^A \(1 more like it in the last 3 s;/);
    vi.advanceTimersByTime(20_000);
    expect(log.lines).toHaveLength(3);
  });
});

describe('RecurringFailure', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('logs the first failure, sums up the next ones, and says when it works again', () => {
    const log = recorder();
    const f = new RecurringFailure(log, 'flow refresh failed', 'flow refresh works again', 10_000);
    f.succeeded(); // nothing failed: nothing to say
    for (let i = 0; i < 30; i++) {
      f.failed({ err: `down ${i}` });
      vi.advanceTimersByTime(2_000);
    }
    // 60 s of failures every 2 s: the first, then one summary per 10 s window.
    expect(log.lines[0]).toMatchObject({ level: 'warn', obj: { err: 'down 0' }, msg: 'flow refresh failed' });
    expect(log.lines.length).toBeLessThanOrEqual(8);
    f.succeeded();
    expect(log.lines.at(-1)).toMatchObject({ level: 'info', obj: { failures: 30, failingForMs: 60_000 }, msg: 'flow refresh works again' });
    const total = log.lines.reduce((n, l) => n + (l.level === 'warn' ? Number(l.obj.repeated ?? 1) : 0), 0);
    expect(total).toBe(30); // every failure counted once
    f.succeeded();
    f.failed({ err: 'again' });
    expect(log.lines.at(-1)).toMatchObject({ level: 'warn', obj: { err: 'again' } });
  });
});
