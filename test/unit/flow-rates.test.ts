import { describe, expect, it } from 'vitest';
import type { ExecutionRateDef } from '../../src/core/flow.js';
import { FlowRates } from '../../src/queue/flow-rates.js';

describe('flow rates (a token bucket per flow)', () => {
  it('allows the burst at once, then one start per 1/perSecond, and never saves up more than the burst', () => {
    let now = 1_000_000;
    const rates = new Map<string, ExecutionRateDef>([['f', { perSecond: 10, burst: 3 }]]);
    const r = new FlowRates(() => rates, () => 1, () => now);
    expect(r.has('f')).toBe(true);
    expect(r.has('other')).toBe(false);
    expect(r.available('other')).toBe(Number.POSITIVE_INFINITY);
    expect(r.take('other')).toBe(true);
    expect([r.take('f'), r.take('f'), r.take('f'), r.take('f')]).toEqual([true, true, true, false]);
    expect(r.nextAt('f')).toBe(now + 100);
    now += 99;
    expect(r.take('f')).toBe(false);
    now += 1;
    expect(r.take('f')).toBe(true);
    expect(r.availableWithin('f', 250)).toBe(2);
    // Idle for a minute: the burst, no more.
    now += 60_000;
    expect(r.available('f')).toBe(3);
    r.refund('f');
    expect(r.available('f')).toBe(3);
    expect(r.within('f', 60_000)).toBe(603);
  });

  it('a changed rate starts from a full bucket; a removed one lets everything through', () => {
    let now = 0;
    const rates = new Map<string, ExecutionRateDef>([['f', { perSecond: 1 }]]);
    const r = new FlowRates(() => rates, () => 1, () => now);
    expect([r.take('f'), r.take('f')]).toEqual([true, false]);
    rates.set('f', { perSecond: 2, burst: 2 });
    expect([r.take('f'), r.take('f'), r.take('f')]).toEqual([true, true, false]);
    now += 500;
    expect(r.take('f')).toBe(true);
    rates.delete('f');
    expect(r.take('f')).toBe(true);
    expect(r.nextAt('f')).toBe(now);
  });

  it('each process takes its share of the rate (and of the burst, at least one start)', () => {
    let now = 0;
    let share = 0.5;
    const rates = new Map<string, ExecutionRateDef>([['f', { perSecond: 10, burst: 4 }]]);
    const r = new FlowRates(() => rates, () => share, () => now);
    expect(r.available('f')).toBe(2);
    expect([r.take('f'), r.take('f'), r.take('f')]).toEqual([true, true, false]);
    expect(r.nextAt('f')).toBe(200);
    now += 200;
    expect(r.take('f')).toBe(true);
    // A tenth of a rate of 10 with a burst of 4: one start a second, saved up to one.
    share = 0.1;
    now += 10_000;
    expect(r.available('f')).toBe(1);
  });
});

describe('flow rates: reserve (the runner pacing its calls)', () => {
  it('books the next start whenever it comes: 0 while the burst lasts, then one interval more each', () => {
    let now = 0;
    const r = new FlowRates(() => new Map([['f', { perSecond: 10, burst: 2 }]]), () => 1, () => now);
    expect([r.reserve('f'), r.reserve('f'), r.reserve('f'), r.reserve('f')]).toEqual([0, 0, 100, 200]);
    now += 200; // the two booked starts came: the bucket is back at zero
    expect(r.reserve('f')).toBe(100);
    expect(r.reserve('other')).toBe(0);
  });
});
