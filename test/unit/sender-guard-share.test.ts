import { describe, expect, it } from 'vitest';
import type { Flow } from '../../src/core/flow.js';
import { SenderGuard } from '../../src/ingress/sender-guard.js';
import { startMembership } from '../../src/store/membership.js';
import type { InstanceRegistry } from '../../src/store/backend.js';

const T0 = 1_700_000_000_000;
const flowWith = (perSecond: number, burst: number): Flow =>
  ({ id: 'f', name: 'f', status: 'started', trigger: { type: 'webhook', rateLimit: { perSecond, burst } }, steps: [] }) as unknown as Flow;

/** Requests admitted at one instant before the first 429. */
function admittedAtOnce(guard: SenderGuard, flow: Flow, now = T0): number {
  let n = 0;
  for (;;) {
    try {
      guard.admit(flow, '127.0.0.1', now);
      n++;
    } catch (err) {
      expect(err).toMatchObject({ statusCode: 429 });
      return n;
    }
    if (n > 1_000) throw new Error('no limit applied');
  }
}

describe('SenderGuard: rate limits shared by instances', () => {
  it('alone (share 1) admits the whole burst', () => {
    expect(admittedAtOnce(new SenderGuard(), flowWith(1, 30))).toBe(30);
  });

  it('one of three instances admits a third of the burst and refills at a third of the rate', () => {
    const guard = new SenderGuard(() => 1 / 3);
    const flow = flowWith(3, 30);
    expect(admittedAtOnce(guard, flow)).toBe(10);
    // 3/s shared by 3: one token per second here.
    expect(admittedAtOnce(guard, flow, T0 + 500)).toBe(0);
    expect(admittedAtOnce(guard, flow, T0 + 1_000)).toBe(1);
  });

  it('follows the instance count as it changes, and never refuses everything', () => {
    let share = 1;
    const guard = new SenderGuard(() => share);
    const flow = flowWith(1, 4);
    share = 1 / 2;
    expect(admittedAtOnce(guard, flow)).toBe(2);
    share = 1 / 10; // a burst of 0.4 would admit nothing: each instance keeps at least one
    expect(admittedAtOnce(guard, flow, T0 + 60_000)).toBe(1);
  });
});

describe('startMembership', () => {
  const logger = { info: () => {}, warn: () => {}, error: () => {} };

  it('is 1 without a registry (embedded)', async () => {
    const m = await startMembership(undefined, 1_000, logger);
    expect(m.share()).toBe(1);
    await m.stop();
  });

  it('shares by the live count, keeps the last count when a beat fails, leaves on stop', async () => {
    const counts: Array<number | Error> = [3, new Error('database down'), 2];
    const calls: string[] = [];
    const seen: number[] = [];
    const registry: InstanceRegistry = {
      beat: async (expireMs, runsFlows) => {
        calls.push(`beat ${expireMs} ${runsFlows}`);
        const next = counts.shift() ?? 2;
        if (next instanceof Error) throw next;
        // One of them without workers.
        return { live: next, runningFlows: next - 1 };
      },
      leave: async () => {
        calls.push('leave');
      },
    };
    const m = await startMembership(registry, 20, logger, (n) => seen.push(n));
    expect(m.share()).toBeCloseTo(1 / 3);
    expect(m.workerShare()).toBeCloseTo(1 / 2);
    await new Promise((r) => setTimeout(r, 30)); // the failed beat
    expect(m.share()).toBeCloseTo(1 / 3);
    await new Promise((r) => setTimeout(r, 30));
    expect(m.share()).toBeCloseTo(1 / 2);
    expect(m.workerShare()).toBe(1);
    await m.stop();
    expect(calls[0]).toBe('beat 5000 true'); // three intervals, at least 5 s
    expect(calls.at(-1)).toBe('leave');
    expect(seen.slice(0, 2)).toEqual([3, 2]);
  });
});
