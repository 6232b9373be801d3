import { describe, expect, it } from 'vitest';
import type { Flow } from '../../src/core/flow.js';
import { normalizeFlow } from '../../src/core/flow.js';
import type { Job } from '../../src/core/job.js';
import { LeaseDelivery, type NackWrite } from '../../src/queue/lease-delivery.js';
import type { FlowStore } from '../../src/store/contracts.js';
import { FlowRegistry } from '../../src/store/flow-registry.js';

describe('FlowRegistry.fetch', () => {
  it('keeps the object of an unchanged flow (compiled steps are cached per object) and takes a changed one', async () => {
    let stored: Flow = normalizeFlow({ steps: [] }, 'f', new Date('2026-01-01T00:00:00Z'));
    const store = { get: async () => ({ ...stored }), list: async () => [{ ...stored }] } as unknown as FlowStore;
    const registry = new FlowRegistry(store);
    const first = await registry.fetch('f');
    expect(await registry.fetch('f')).toBe(first);
    stored = { ...stored, name: 'renamed', updatedAt: '2026-01-02T00:00:00.000Z' };
    const changed = await registry.fetch('f');
    expect(changed).not.toBe(first);
    expect(changed?.name).toBe('renamed');
  });
});

/** A delivery whose writes the test controls. */
class TestDelivery extends LeaseDelivery<NackWrite> {
  readonly writes: string[] = [];
  failNack: ((err: Error) => void) | undefined;
  constructor(job: Job) {
    super(job, { logger: { warn() {} }, track() {} }, 'test queue');
  }
  protected async writeAck(): Promise<boolean> {
    this.writes.push('ack');
    return true;
  }
  protected writeNack(): Promise<NackWrite> {
    this.writes.push('nack');
    return new Promise((_resolve, reject) => {
      this.failNack = reject;
    });
  }
  protected async writeDeadLetter(): Promise<boolean> {
    this.writes.push('deadLetter');
    return true;
  }
  protected async writeRelease(): Promise<boolean> {
    this.writes.push('release');
    return true;
  }
  protected requeued(): void {}
}

describe('LeaseDelivery held for release (shutdown)', () => {
  it('a settle that fails after shutdown began does not reopen the delivery: the handler returning acks nothing', async () => {
    const d = new TestDelivery({ id: 'j', flowId: 'f', requestId: 'r', attempts: 1, maxAttempts: 3, enqueuedAt: 0 });
    const nacked = d.nack({ delayMs: 10, error: 'x' }); // in flight when the grace ends
    d.holdForRelease();
    d.failNack!(new Error('database down'));
    await expect(nacked).rejects.toThrow('database down');
    d.autoAck(); // the aborted handler returns
    await new Promise((r) => setTimeout(r, 10));
    await d.release();
    expect(d.writes).toEqual(['nack', 'release']);
  });
});
