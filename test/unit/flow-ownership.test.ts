import { describe, expect, it } from 'vitest';
import { startFlowOwnership } from '../../src/flow-ownership.js';
import type { FlowOwners } from '../../src/store/backend.js';

const quiet = { warn: () => {} };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Owners that grant every flow asked for, or fail while `down`; records the calls. */
function fakeOwners(leaseMs: number) {
  const calls: string[][] = [];
  let released = 0;
  const state = { down: false };
  const owners: FlowOwners = {
    leaseMs,
    async hold(ids) {
      calls.push([...ids]);
      if (state.down) throw new Error('database down');
      return new Set(ids);
    },
    async releaseAll() {
      released++;
    },
  };
  return { owners, calls, state, released: () => released };
}

describe('flow ownership', () => {
  it('holds the limited flows from the start, asks again only when they change, and gives them up on stop', async () => {
    const f = fakeOwners(180_000);
    let limited = ['a'];
    let changes = 0;
    const o = await startFlowOwnership({ owners: f.owners, intervalMs: 60_000, limitedFlows: () => limited, onChange: () => changes++, logger: quiet });
    expect(o.holds('a')).toBe(true);
    expect(changes).toBe(1);
    o.refresh(); // the same flows: no statement
    expect(f.calls).toHaveLength(1);
    limited = ['a', 'b'];
    o.refresh();
    await sleep(10);
    expect(f.calls).toHaveLength(2);
    expect(o.holds('b')).toBe(true);
    expect(changes).toBe(2);
    await o.stop();
    expect(o.holds('a')).toBe(false);
    expect(f.released()).toBe(1);
  });

  it('no statement while there is nothing to hold', async () => {
    const f = fakeOwners(60_000);
    const o = await startFlowOwnership({ owners: f.owners, intervalMs: 20, limitedFlows: () => [], onChange: () => {}, logger: quiet });
    await sleep(80);
    expect(f.calls).toHaveLength(0);
    await o.stop();
  });

  it('stops consuming its flows before its lease may run out when it cannot renew, and takes them again once it can', async () => {
    const f = fakeOwners(1_000);
    let changes = 0;
    const o = await startFlowOwnership({ owners: f.owners, intervalMs: 50, limitedFlows: () => ['a'], onChange: () => changes++, logger: quiet });
    expect(o.holds('a')).toBe(true);
    f.state.down = true;
    const downAt = Date.now();
    while (o.holds('a')) await sleep(5);
    // Kept while the lease surely holds (its end less an interval, from the last renewal, at most
    // one interval before downAt), given up before the lease ends.
    const after = Date.now() - downAt;
    expect(after).toBeGreaterThanOrEqual(850);
    expect(after).toBeLessThan(1_000);
    expect(changes).toBe(2);
    f.state.down = false;
    while (!o.holds('a')) await sleep(5);
    expect(changes).toBe(3);
    await o.stop();
  });
  // A hold whose answer comes back after the lease it granted has run out (slow network, a long
  // pause): another instance may hold the flow by then; no consuming on that stale grant.
  it('does not consume a flow on a grant whose lease ran out before the answer arrived', async () => {
    const leaseMs = 300;
    let slow = false;
    const owners: FlowOwners = {
      leaseMs,
      async hold(ids) {
        const granted = new Set(ids);
        if (slow) await sleep(3 * leaseMs);
        return granted;
      },
      async releaseAll() {},
    };
    const o = await startFlowOwnership({ owners, intervalMs: 50, limitedFlows: () => ['a'], onChange: () => {}, logger: quiet });
    expect(o.holds('a')).toBe(true);
    slow = true;
    const t0 = Date.now();
    while (o.holds('a') && Date.now() - t0 < 2_000) await sleep(5);
    expect(o.holds('a')).toBe(false);
    let heldOnStaleGrant = false;
    const until = Date.now() + 3 * leaseMs;
    while (Date.now() < until) {
      if (o.holds('a')) heldOnStaleGrant = true;
      await sleep(2);
    }
    await o.stop();
    expect(heldOnStaleGrant).toBe(false);
  });
});
