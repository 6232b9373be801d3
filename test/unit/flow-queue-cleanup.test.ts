import { describe, expect, it } from 'vitest';
import { createFlowQueueCleanup } from '../../src/flow-queue-cleanup.js';
import type { Queue } from '../../src/queue/contract.js';
import type { FlowDeletion, FlowStore } from '../../src/store/contracts.js';

const logger = { info: () => {}, warn: () => {}, error: () => {} };

type Record = Omit<FlowDeletion, 'ageMs'>;
/** The store's clock (ms): records' ages are measured on it. */
let clock = 0;

/** A flow store holding only deletion records (the rest is never called here). */
function recordsStore(records: Record[]): FlowStore & { records: Record[] } {
  return {
    records,
    list: () => Promise.reject(new Error('unused')),
    get: () => Promise.reject(new Error('unused')),
    put: () => Promise.reject(new Error('unused')),
    delete: () => Promise.reject(new Error('unused')),
    deletions: async () => records.map((r) => ({ ...r, ageMs: clock - r.deletedAt })),
    async forgetDeletion(id, deletedAt, cleanUp) {
      if (!records.some((r) => r.id === id && r.deletedAt === deletedAt)) return false;
      if (cleanUp && !(await cleanUp(async () => {}))) return false;
      const i = records.findIndex((r) => r.id === id && r.deletedAt === deletedAt);
      if (i < 0) return false;
      records.splice(i, 1);
      return true;
    },
  };
}

type PerFlowQueue = Queue & { retired: string[][]; removals: string[]; removeFlow(id: string): Promise<boolean> };

function perFlowQueue(ready: Map<string, number>): PerFlowQueue {
  const q = {
    retired: [] as string[][],
    removals: [] as string[],
    enqueue: () => Promise.reject(new Error('unused')),
    consume: () => {
      throw new Error('unused');
    },
    deadLetters: () => Promise.reject(new Error('unused')),
    retryDead: () => Promise.reject(new Error('unused')),
    discardDead: () => Promise.reject(new Error('unused')),
    stats: () => Promise.reject(new Error('unused')),
    retryDeadLetters: () => Promise.reject(new Error('unused')),
    retireFlows(ids: Iterable<string>) {
      q.retired.push([...ids]);
    },
    async removeFlow(id: string) {
      q.removals.push(id);
      return (ready.get(id) ?? 0) === 0;
    },
  };
  return q;
}

describe('flow queue cleanup', () => {
  it('retires every deleted flow at once, removes its queue only after the grace and once empty, then forgets the record', async () => {
    const flows = recordsStore([
      { id: 'old-empty', deletedAt: 1_000 },
      { id: 'old-busy', deletedAt: 2_000 },
      { id: 'recent', deletedAt: 9_500 },
    ]);
    const ready = new Map([['old-busy', 3]]);
    const queue = perFlowQueue(ready);
    const cleanup = createFlowQueueCleanup({ flows, queue, graceMs: 5_000, everyMs: 60_000, logger });

    clock = 10_000;
    expect(await cleanup.runOnce()).toEqual({ removed: ['old-empty'], waiting: ['old-busy'], failed: [] });
    expect(queue.retired).toEqual([['old-empty', 'old-busy', 'recent']]);
    expect(queue.removals).toEqual(['old-empty', 'old-busy']); // 'recent' is within its grace
    expect(flows.records.map((r) => r.id)).toEqual(['old-busy', 'recent']);

    // Drained meanwhile (the runner dead-lettered its jobs); the recent one's grace ran out.
    ready.set('old-busy', 0);
    clock = 14_500;
    expect(await cleanup.runOnce()).toEqual({ removed: ['old-busy', 'recent'], waiting: [], failed: [] });
    expect(queue.retired.at(-1)).toEqual(['old-busy', 'recent']);
    expect(flows.records).toEqual([]);
  });

  it('with a queue that keeps nothing per flow (embedded, PostgreSQL), records are only forgotten after the grace', async () => {
    const flows = recordsStore([
      { id: 'a', deletedAt: 1_000 },
      { id: 'b', deletedAt: 8_000 },
    ]);
    const { retireFlows: _r, removeFlow: _m, retired: _x, removals: _y, ...plain } = perFlowQueue(new Map());
    const cleanup = createFlowQueueCleanup({ flows, queue: plain, graceMs: 5_000, everyMs: 60_000, logger });
    clock = 10_000;
    expect(await cleanup.runOnce()).toEqual({ removed: ['a'], waiting: [], failed: [] });
    expect(flows.records.map((r) => r.id)).toEqual(['b']);
  });

  it('a removal that fails (broker away) is reported and tried again next pass; the other flows go on', async () => {
    const flows = recordsStore([
      { id: 'a', deletedAt: 0 },
      { id: 'b', deletedAt: 0 },
    ]);
    const queue = perFlowQueue(new Map());
    let down = true;
    const removeFlow = queue.removeFlow.bind(queue);
    queue.removeFlow = async (id) => {
      if (down && id === 'a') throw new Error('broker away');
      return removeFlow(id);
    };
    const cleanup = createFlowQueueCleanup({ flows, queue, graceMs: 5_000, everyMs: 60_000, logger });
    clock = 10_000;
    const first = await cleanup.runOnce();
    expect(first).toMatchObject({ removed: ['b'], waiting: [], failed: ['a'] });
    expect((first.error as Error).message).toBe('broker away');
    expect(flows.records.map((r) => r.id)).toEqual(['a']);
    down = false;
    clock = 10_000;
    expect(await cleanup.runOnce()).toEqual({ removed: ['a'], waiting: [], failed: [] });
    await cleanup.stop();
  });

  it('stop() during a pass ends it after the flow it is at; start() skips a tick while a pass runs', async () => {
    const flows = recordsStore([
      { id: 'a', deletedAt: 0 },
      { id: 'b', deletedAt: 0 },
    ]);
    const queue = perFlowQueue(new Map());
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const removeFlow = queue.removeFlow.bind(queue);
    queue.removeFlow = async (id) => {
      if (id === 'a') await gate;
      return removeFlow(id);
    };
    clock = 10_000;
    const cleanup = createFlowQueueCleanup({ flows, queue, graceMs: 5_000, everyMs: 10, logger });
    cleanup.start(); // a pass at once, stuck at 'a'
    await new Promise((r) => setTimeout(r, 60)); // ticks meanwhile: skipped, not queued
    expect(queue.retired).toHaveLength(1);
    let stopped = false;
    const stopping = cleanup.stop().then(() => {
      stopped = true;
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(stopped).toBe(false); // waits for the flow it is at
    release();
    await stopping;
    expect(queue.retired).toHaveLength(1); // no pass queued behind the stuck one
    expect(queue.removals).toEqual(['a']); // not 'b'
    expect(flows.records.map((r) => r.id)).toEqual(['b']);
  });

  it('a pass whose records cannot be read rejects; the next pass runs', async () => {
    const flows = recordsStore([{ id: 'a', deletedAt: 0 }]);
    const deletions = flows.deletions;
    flows.deletions = () => Promise.reject(new Error('store away'));
    const cleanup = createFlowQueueCleanup({ flows, queue: perFlowQueue(new Map()), graceMs: 5_000, everyMs: 60_000, logger });
    clock = 10_000;
    await expect(cleanup.runOnce()).rejects.toThrow('store away');
    flows.deletions = deletions;
    clock = 10_000;
    expect(await cleanup.runOnce()).toEqual({ removed: ['a'], waiting: [], failed: [] });
  });
});
