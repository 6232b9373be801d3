import { expect, it } from 'vitest';
import type { Job } from '../../src/core/job.js';
import { type ClaimCaps, LeasingConsumer } from '../../src/queue/leasing-consumer.js';

/** Deliveries that settle nothing: only what the consumer's accounting reads of them. */
const released: string[] = [];
function fakeDelivery(job: Job) {
  return { job, autoAck() {}, autoNack() {}, holdForRelease() {}, release: () => (released.push(job.id), Promise.resolve(true)) };
}

/** A consumer whose claims stay in flight until the test answers them. */
class HeldClaims extends LeasingConsumer<never> {
  readonly claims: Array<{ limit: number; caps: ClaimCaps | undefined; answer(jobs: Job[]): void }> = [];
  /** What the queue says of itself: jobs may be due. */
  work = true;
  protected hasWork(): boolean {
    return this.work;
  }
  protected claim(limit: number, caps: ClaimCaps | undefined): Promise<Job[]> {
    return new Promise((resolve) => this.claims.push({ limit, caps, answer: resolve }));
  }
  protected delivery(job: Job): never {
    return fakeDelivery(job) as never;
  }
  protected extendLeases(): Promise<readonly string[]> {
    return Promise.resolve([]);
  }
  protected detach(): void {}
  mayHandOff(flowId: string): boolean {
    return this.withinLimit(flowId);
  }
}

const job = (id: string, flowId: string): Job => ({ id, flowId, requestId: `r-${id}`, attempts: 1, maxAttempts: 3, enqueuedAt: 0 });
const logger = { info() {}, warn() {}, error() {} };

it("a claim in flight holds its caps' room: a hand-off of that flow's job meanwhile would exceed the limit", async () => {
  const limits = new Map([['F', 1]]);
  const c = new HeldClaims({ handler: () => new Promise(() => {}), concurrency: 4, leaseMs: 30_000, logger, label: 'test', flowLimits: () => limits });
  try {
    expect(c.mayHandOff('F')).toBe(true);
    c.pump();
    expect(c.claims).toHaveLength(1);
    expect(c.claims[0]!.caps).toEqual(new Map([['F', 1]]));
    // The claim may lease F's one job: a hand-off of F now would make two.
    expect(c.mayHandOff('F')).toBe(false);
    expect(c.mayHandOff('other')).toBe(true);
    // It came back without one (and the queue has nothing more): F has room again.
    c.work = false;
    c.claims[0]!.answer([]);
    await new Promise((r) => setImmediate(r));
    expect(c.mayHandOff('F')).toBe(true);
  } finally {
    c.halt();
  }
});

it('a flow at its limit gets no room in a claim; when one of its jobs ends the consumer claims again at once, though the queue said it had no more', async () => {
  const limits = new Map([['F', 1]]);
  const running = new Map<string, () => void>();
  const c = new HeldClaims({
    handler: (d) => new Promise<void>((resolve) => running.set(d.job.id, resolve)),
    concurrency: 4,
    leaseMs: 30_000,
    logger,
    label: 'test',
    flowLimits: () => limits,
  });
  const settle = () => new Promise((r) => setImmediate(r));
  try {
    c.pump();
    c.claims[0]!.answer([job('1', 'F')]);
    await settle();
    expect(running.has('1')).toBe(true);
    // The next claim, for the free slots, gives F nothing; it finds nothing else either.
    expect(c.claims).toHaveLength(2);
    expect(c.claims[1]!.caps).toEqual(new Map([['F', 0]]));
    c.work = false;
    c.claims[1]!.answer([]);
    await settle();
    expect(c.claims).toHaveLength(2);
    // F's job ends: its waiting jobs may be claimed now, not at the queue's next wake-up.
    running.get('1')!();
    await settle();
    expect(c.claims).toHaveLength(3);
    expect(c.claims[2]!.caps).toEqual(new Map([['F', 1]]));
  } finally {
    c.halt();
  }
});

it('jobs leased ahead beyond a limit set or lowered since their claim are given back, the latest first; the others wait or run', async () => {
  const limits = new Map<string, number>();
  const finish: Array<() => void> = [];
  const c = new HeldClaims({
    handler: () => new Promise<void>((r) => finish.push(r)),
    concurrency: 2,
    prefetch: 4,
    leaseMs: 30_000,
    logger,
    label: 'test',
    flowLimits: () => limits,
  });
  try {
    released.length = 0;
    c.pump();
    // No limit yet: two run, four wait here.
    c.claims[0]!.answer(['1', '2', '3', '4', '5', '6'].map((id) => job(id, 'F')));
    await new Promise((r) => setImmediate(r));
    expect(c.inFlight).toBe(2);
    // A limit of 3 set meanwhile: F holds 6 here, so the 3 latest go back; one stays to run next.
    limits.set('F', 3);
    c.pump();
    expect(released).toEqual(['6', '5', '4']);
    finish.shift()!();
    await new Promise((r) => setImmediate(r));
    expect(c.inFlight).toBe(2);
    expect(released).toEqual(['6', '5', '4']);
  } finally {
    c.halt();
  }
});
