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
      return { held: new Set(ids), holders: 1 };
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
    const o = await startFlowOwnership({ owners: f.owners, intervalMs: 60_000, limitedFlows: () => limited, onChange: () => changes++, busy: () => false, logger: quiet });
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
    const o = await startFlowOwnership({ owners: f.owners, intervalMs: 20, limitedFlows: () => [], onChange: () => {}, busy: () => false, logger: quiet });
    await sleep(80);
    expect(f.calls).toHaveLength(0);
    await o.stop();
  });

  it('stops consuming its flows before its lease may run out when it cannot renew, and takes them again once it can', async () => {
    const f = fakeOwners(1_000);
    let changes = 0;
    const o = await startFlowOwnership({ owners: f.owners, intervalMs: 50, limitedFlows: () => ['a'], onChange: () => changes++, busy: () => false, logger: quiet });
    expect(o.holds('a')).toBe(true);
    f.state.down = true;
    const downAt = Date.now();
    while (o.holds('a')) await sleep(5);
    // Kept while the lease surely holds (its end less an interval, from the last renewal, at most
    // one interval before downAt), given up before the lease ends.
    const after = Date.now() - downAt;
    expect(after).toBeGreaterThanOrEqual(850);
    expect(after).toBeLessThan(1_000);
    // No longer consumed: at the timer's next tick (holds() already says no from the lease's end).
    while (changes < 2 && Date.now() - downAt < 1_000) await sleep(5);
    expect(Date.now() - downAt).toBeLessThan(1_000);
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
        return { held: granted, holders: 1 };
      },
      async releaseAll() {},
    };
    const o = await startFlowOwnership({ owners, intervalMs: 50, limitedFlows: () => ['a'], onChange: () => {}, busy: () => false, logger: quiet });
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

  // The chaos review's stall (SIGSTOP): the process is frozen past its lease while its timers
  // cannot run; another instance takes the flow meanwhile. Resumed, it must not believe the hold
  // is still its own before its timer notices, nor let a job of the flow it received before run.
  it('a process stalled past its lease neither holds nor may run its flows the moment it resumes, before its timer runs', async () => {
    const f = fakeOwners(300);
    let changes = 0;
    const o = await startFlowOwnership({ owners: f.owners, intervalMs: 50, limitedFlows: () => ['a', 'b'], onChange: () => changes++, busy: () => false, logger: quiet });
    expect(o.holds('a')).toBe(true);
    expect(o.mayRun('a')).toBe(true);
    expect(o.mayRun('other')).toBe(false); // never held here
    expect(changes).toBe(1);
    // Stalled: nothing else runs on this thread for longer than the lease.
    const resumeAt = Date.now() + 400;
    while (Date.now() < resumeAt) {
      /* frozen */
    }
    // Resumed, same tick: no timer has run yet.
    expect(o.holds('a')).toBe(false);
    expect(changes).toBe(1);
    expect(o.mayRun('a')).toBe(false);
    // mayRun found the lapse: the flows held here are no longer consumed, at once.
    expect(changes).toBe(2);
    expect(o.holds('b')).toBe(false);
    // The next renewal takes them again (nobody else held them here).
    await sleep(150);
    expect(o.holds('a')).toBe(true);
    expect(o.mayRun('a')).toBe(true);
    await o.stop();
    expect(o.mayRun('a')).toBe(false);
  });

  it('a flow being given up may still run its jobs here while the hold is renewed', async () => {
    // Two flows, two holders: this instance's share is one, so one of the two is being given up
    // while a job of it is still here (busy).
    const owners: FlowOwners = {
      leaseMs: 60_000,
      async hold(ids) {
        return { held: new Set(ids), holders: 2 };
      },
      async releaseAll() {},
    };
    const o = await startFlowOwnership({ owners, intervalMs: 1_000, limitedFlows: () => ['a', 'b'], onChange: () => {}, busy: () => true, logger: quiet });
    expect(o.holds('a')).toBe(true);
    expect(o.holds('b')).toBe(false); // over the share: no longer consumed
    expect(o.mayRun('b')).toBe(true); // its jobs here end here
    await o.stop();
  });
});

/**
 * The store's semantics in memory (PgFlowOwners is tested against PostgreSQL in the conformance
 * suite): one holder per flow, free flows taken up to ceil(shareOf / live holders).
 */
function sharedOwners(leaseMs: number) {
  const rows = new Map<string, { owner: string; until: number }>();
  const holders = new Map<string, number>();
  let next = 0;
  const open = (): FlowOwners => {
    const me = `o${next++}`;
    return {
      leaseMs,
      async hold(ids, shareOf) {
        const now = Date.now();
        holders.set(me, now + leaseMs);
        const n = [...holders.values()].filter((until) => until >= now).length;
        for (const [id, r] of rows) if (r.owner === me && !ids.includes(id)) rows.delete(id);
        const mine = ids.filter((id) => rows.get(id)?.owner === me);
        const free = ids.filter((id) => { const r = rows.get(id); return r === undefined || (r.owner !== me && r.until < now); });
        const taken = free.slice(0, Math.max(0, Math.ceil(shareOf / n) - mine.length));
        for (const id of [...mine, ...taken]) rows.set(id, { owner: me, until: now + leaseMs });
        return { held: new Set([...mine, ...taken]), holders: n };
      },
      async releaseAll() {
        for (const [id, r] of rows) if (r.owner === me) rows.delete(id);
        holders.delete(me);
      },
    };
  };
  return { open, rows };
}

describe('flow ownership: balance', () => {
  it('an instance over its share gives the surplus up once its jobs of those flows ended; no flow is consumed by two instances at any moment', async () => {
    const store = sharedOwners(5_000);
    const flows = ['f1', 'f2', 'f3', 'f4', 'f5', 'f6'];
    const busyOnA = new Set(['f6']);
    const a = await startFlowOwnership({ owners: store.open(), intervalMs: 30, limitedFlows: () => flows, busy: (id) => busyOnA.has(id), onChange: () => {}, logger: quiet });
    expect(flows.every((id) => a.holds(id))).toBe(true);
    let twice = '';
    const watch = setInterval(() => {
      for (const id of flows) if (a.holds(id) && b?.holds(id)) twice = id;
    }, 1);
    let b: Awaited<ReturnType<typeof startFlowOwnership>> | undefined;
    let bCount = 0;
    b = await startFlowOwnership({ owners: store.open(), intervalMs: 30, limitedFlows: () => flows, busy: () => false, onChange: (n) => (bCount = n), logger: quiet });
    const heldBy = (o: typeof a) => flows.filter((id) => o.holds(id));
    // a stops consuming its surplus (the last three) at once, and lets go of f4 and f5 (idle); b takes them.
    const t0 = Date.now();
    while (heldBy(b).length < 2 && Date.now() - t0 < 2_000) await sleep(5);
    expect(heldBy(a)).toEqual(['f1', 'f2', 'f3']);
    expect(heldBy(b)).toEqual(['f4', 'f5']);
    // f6 still has a job on a: a keeps its hold (not consuming), b cannot take it.
    await sleep(200);
    expect(store.rows.get('f6')?.owner).toBe('o0');
    expect(a.holds('f6') || b.holds('f6')).toBe(false);
    // The job ended: the flow moves.
    busyOnA.clear();
    while (!b.holds('f6') && Date.now() - t0 < 4_000) await sleep(5);
    expect(heldBy(b)).toEqual(['f4', 'f5', 'f6']);
    expect(bCount).toBe(3);
    // b stops: a's share is all of them again.
    await b.stop();
    while (heldBy(a).length < 6 && Date.now() - t0 < 6_000) await sleep(5);
    expect(heldBy(a)).toEqual(flows);
    clearInterval(watch);
    await a.stop();
    expect(twice).toBe('');
  });

  it('a flow being given up is consumed again when the share grows before it was let go (the other instance left)', async () => {
    const store = sharedOwners(5_000);
    const flows = ['f1', 'f2'];
    const a = await startFlowOwnership({ owners: store.open(), intervalMs: 30, limitedFlows: () => flows, busy: () => true, onChange: () => {}, logger: quiet });
    const b = await startFlowOwnership({ owners: store.open(), intervalMs: 30, limitedFlows: () => flows, busy: () => false, onChange: () => {}, logger: quiet });
    const t0 = Date.now();
    while (a.holds('f2') && Date.now() - t0 < 2_000) await sleep(5);
    expect(a.holds('f1')).toBe(true);
    expect(a.holds('f2')).toBe(false); // being given up; its job here has not ended
    expect(b.holds('f2')).toBe(false);
    await b.stop();
    while (!a.holds('f2') && Date.now() - t0 < 4_000) await sleep(5);
    expect(a.holds('f2')).toBe(true);
    await a.stop();
  });
});
