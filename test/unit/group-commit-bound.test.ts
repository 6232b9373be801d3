import { describe, expect, it } from 'vitest';
import { GroupCommit, type Outcome } from '../../src/store/postgres/group-commit.js';

const tick = () => new Promise((r) => setImmediate(r));

describe('group commit: a bound on what waits for a batch', () => {
  it('refuses at once past the bound while a batch hangs, and takes items again once it is through', async () => {
    let release: (() => void) | undefined;
    const ran: number[][] = [];
    const gc = new GroupCommit<number, number>(
      async (items) => {
        ran.push([...items]);
        if (release === undefined) await new Promise<void>((r) => (release = r)); // the first batch hangs
        return items.map((i): Outcome<number> => ({ ok: true, value: i }));
      },
      { maxItems: 2, maxBytes: 1_000, maxInflight: 1, maxQueued: { items: 3, bytes: 100, overloaded: () => new Error('overloaded') } },
    );
    const first = gc.submit(0, 'k0', 10);
    await tick();
    expect(ran).toEqual([[0]]); // in flight, hanging

    const waiting = [1, 2, 3].map((i) => gc.submit(i, `k${i}`, 10));
    await expect(gc.submit(4, 'k4', 10)).rejects.toThrow('overloaded'); // 3 items wait
    const fresh = new GroupCommit<number, number>(async (items) => items.map((i) => ({ ok: true as const, value: i })), {
      maxItems: 2,
      maxBytes: 1_000,
      maxInflight: 1,
      maxQueued: { items: 100, bytes: 100, overloaded: () => new Error('overloaded') },
    });
    // Bytes: one item larger than the bound goes alone; a second one is refused while it waits.
    const big = fresh.submit(1, 'a', 500);
    await expect(fresh.submit(2, 'b', 10)).rejects.toThrow('overloaded');
    expect(await big).toBe(1);

    release!();
    expect(await first).toBe(0);
    expect(await Promise.all(waiting)).toEqual([1, 2, 3]);
    expect(await gc.submit(5, 'k5', 10)).toBe(5);
  });
});
