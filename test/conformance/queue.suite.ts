import { v7 as uuidv7 } from 'uuid';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Backend } from '../../src/store/backend.js';
import type { Consumer, Delivery, JobHandler } from '../../src/queue/contract.js';
import { normalizeFlow } from '../../src/core/flow.js';
import { stoppedFlowNote } from '../../src/core/job.js';
import { FlowRates } from '../../src/queue/flow-rates.js';
import { deferred, makeMessage, median, sleep, waitFor, type Deferred } from './helpers.js';

/**
 * Queue conformance: every queue (embedded SQLite, RabbitMQ, …) runs this unchanged, through the
 * Backend it belongs to (jobs come from RequestStore.accept, atomically with their request).
 *
 * `open()`: fresh storage per test, the same storage when called again within a test; close()
 * idempotent. Timing assertions are loose (CI), but each one can fail.
 */
export function describeQueueConformance(name: string, open: () => Promise<Backend>): void {
  describe(`${name}: queue conformance`, () => {
    const opened: Backend[] = [];
    const consumers: Consumer[] = [];
    let backend: Backend;

    beforeEach(async () => {
      backend = await open();
      opened.push(backend);
    });

    afterEach(async () => {
      await Promise.allSettled(consumers.splice(0).map((c) => c.stop({ graceMs: 0 })));
      await Promise.allSettled(opened.splice(0).map((b) => b.close()));
    });

    const consume = (handler: JobHandler, concurrency = 1): Consumer => {
      const c = backend.queue.consume(handler, { concurrency });
      consumers.push(c);
      return c;
    };

    /** Consume jobs that take `ms` each; returns the flow of each job, in the order they started. */
    const consumeFlows = (concurrency: number, ms: number): string[] => {
      const started: string[] = [];
      consume(async (d) => {
        started.push(d.job.flowId);
        await sleep(ms);
        await d.ack();
      }, concurrency);
      return started;
    };

    /** Accept a message; returns its request id. */
    const accept = async (opts: { flowId?: string; maxAttempts?: number } = {}): Promise<string> => {
      const m = makeMessage({ flowId: opts.flowId ?? 'flow-q' });
      const outcome = await backend.requests.accept(m, { maxAttempts: opts.maxAttempts ?? 5 });
      expect(outcome.kind).toBe('stored');
      return m.id;
    };

    const zeroStats = { ready: 0, inFlight: 0, delayed: 0, dead: 0 };

    it('delivers every accepted job exactly once, with its fields', async () => {
      const before = await Promise.all(Array.from({ length: 15 }, () => accept({ maxAttempts: 4 })));
      const seen: Delivery[] = [];
      const t0 = Date.now();
      consume(async (d) => {
        seen.push(d);
        await sleep(1);
        await d.ack();
      }, 4);
      const after: string[] = [];
      for (let i = 0; i < 15; i++) after.push(await accept({ maxAttempts: 4 }));
      const all = [...before, ...after];
      await waitFor(() => seen.length >= all.length, `${all.length} deliveries`);
      await sleep(300); // nothing delivered twice after the fact
      expect(seen.map((d) => d.job.requestId).sort()).toEqual([...all].sort());
      expect(new Set(seen.map((d) => d.job.id)).size).toBe(all.length);
      for (const d of seen) {
        expect(d.job).toMatchObject({ flowId: 'flow-q', attempts: 1, maxAttempts: 4 });
        expect(typeof d.job.id).toBe('string');
        expect(d.job.enqueuedAt).toBeGreaterThanOrEqual(t0 - 60_000);
        expect(d.job.enqueuedAt).toBeLessThanOrEqual(Date.now());
      }
      expect(await backend.queue.stats()).toEqual(zeroStats);
    });

    it('ack removes the job for good', async () => {
      const id = await accept();
      const seen: string[] = [];
      const c1 = consume(async (d) => {
        seen.push(d.job.requestId);
        await d.ack();
      });
      await waitFor(() => seen.length === 1, 'first delivery');
      await c1.stop({ graceMs: 1000 });
      expect(await backend.queue.stats()).toEqual(zeroStats);
      consume(async (d) => {
        seen.push(d.job.requestId);
        await d.ack();
      });
      await sleep(400);
      expect(seen).toEqual([id]);
    });

    it('treats a handler that returns without settling as done (ack)', async () => {
      await accept();
      let calls = 0;
      consume(async () => {
        calls++;
      });
      await waitFor(() => calls === 1, 'delivery');
      await sleep(300);
      expect(calls).toBe(1);
      expect(await backend.queue.stats()).toEqual(zeroStats);
    });

    it('nack with a delay redelivers, not before the delay, with attempts and lastError', async () => {
      const id = await accept({ maxAttempts: 3 });
      const deliveries: Array<{ d: Delivery; at: number }> = [];
      let nackedAt = 0;
      let outcome: string | undefined;
      consume(async (d) => {
        deliveries.push({ d, at: Date.now() });
        if (deliveries.length === 1) {
          nackedAt = Date.now();
          outcome = await d.nack({ delayMs: 400, error: 'boom: upstream 503' });
        } else {
          await d.ack();
        }
      });
      await waitFor(() => outcome !== undefined, 'the nack');
      expect(outcome).toBe('retry');
      expect(await backend.queue.stats()).toMatchObject({ delayed: 1, ready: 0, inFlight: 0 });
      await waitFor(() => deliveries.length === 2, 'redelivery', 5_000);
      const second = deliveries[1]!;
      expect(second.at - nackedAt).toBeGreaterThanOrEqual(400);
      expect(second.at - nackedAt).toBeLessThan(400 + 2_000);
      expect(second.d.job).toMatchObject({ requestId: id, attempts: 2, maxAttempts: 3, lastError: 'boom: upstream 503' });
      expect(second.d.job.id).toBe(deliveries[0]!.d.job.id);
    });

    it('dead-letters after maxAttempts, lists dead letters, and retryDead re-queues with attempts reset', async () => {
      const id = await accept({ flowId: 'flow-dl', maxAttempts: 2 });
      const outcomes: string[] = [];
      const seen: Delivery[] = [];
      const c = consume(async (d) => {
        seen.push(d);
        if (seen.length <= 2) outcomes.push(await d.nack({ delayMs: 0, error: `fail ${seen.length}` }));
        else await d.ack();
      });
      await waitFor(() => outcomes.length === 2, 'two nacks');
      expect(outcomes).toEqual(['retry', 'dead']);
      expect(seen.map((d) => d.job.attempts)).toEqual([1, 2]);
      await sleep(300);
      expect(seen).toHaveLength(2); // not delivered again once dead
      expect(await backend.queue.stats()).toEqual({ ...zeroStats, dead: 1 });

      const dead = await backend.queue.deadLetters({ limit: 10 });
      expect(dead).toHaveLength(1);
      expect(dead[0]).toMatchObject({ requestId: id, flowId: 'flow-dl', attempts: 2, maxAttempts: 2, lastError: 'fail 2' });
      expect(dead[0]!.deadAt).toBeGreaterThan(0);
      expect(await backend.queue.deadLetters({ flowId: 'flow-dl', limit: 10 })).toHaveLength(1);
      expect(await backend.queue.deadLetters({ flowId: 'flow-other', limit: 10 })).toEqual([]);

      expect(await backend.queue.retryDead(uuidv7())).toBe(false);
      await backend.flows.put(normalizeFlow({}, 'flow-dl', new Date())); // a dead letter is retried while its flow exists
      expect(await backend.queue.retryDead(dead[0]!.id)).toBe(true);
      await waitFor(() => seen.length === 3, 'delivery after retryDead');
      expect(seen[2]!.job).toMatchObject({ requestId: id, attempts: 1, maxAttempts: 2 });
      await c.stop({ graceMs: 1000 });
      expect(await backend.queue.stats()).toEqual(zeroStats);
      expect(await backend.queue.deadLetters({ limit: 10 })).toEqual([]);
      expect(await backend.queue.retryDead(dead[0]!.id)).toBe(false);
    });

    it("retrying a dead letter of a deleted flow is a 409 and leaves it dead (the runner would only dead-letter it again)", async () => {
      await backend.flows.put(normalizeFlow({}, 'flow-gone', new Date()));
      await accept({ flowId: 'flow-gone', maxAttempts: 1 });
      const c = consume(async (d) => void (await d.deadLetter('no')));
      await waitFor(async () => (await backend.queue.deadLetters({ limit: 10 })).length === 1, 'the dead letter');
      await c.stop({ graceMs: 1000 });
      const [dead] = await backend.queue.deadLetters({ limit: 10 });
      expect(await backend.flows.delete('flow-gone')).toBe(true);
      backend.queue.retireFlows?.(['flow-gone']); // what the composition root does every FLOW_REFRESH
      await expect(backend.queue.retryDead(dead!.id)).rejects.toMatchObject({ statusCode: 409, code: 'CONFLICT' });
      expect((await backend.queue.deadLetters({ limit: 10 })).map((d) => d.id)).toEqual([dead!.id]);
      // A queue per flow: removed as the clean-up would once the grace has passed.
      if (backend.queue.removeFlow) expect(await backend.queue.removeFlow('flow-gone')).toBe(true);
    });

    it("retryDeadLetters: a flow's, since a time, oldest first up to a limit; deleted flows' left dead and counted", async () => {
      for (const id of ['flow-bulk-a', 'flow-bulk-b', 'flow-bulk-gone']) await backend.flows.put(normalizeFlow({}, id, new Date()));
      const a: string[] = [];
      for (let i = 0; i < 3; i++) a.push(await accept({ flowId: 'flow-bulk-a', maxAttempts: 1 }));
      const b = await accept({ flowId: 'flow-bulk-b', maxAttempts: 1 });
      const gone = await accept({ flowId: 'flow-bulk-gone', maxAttempts: 1 });
      const c = consume(async (d) => {
        await sleep(5); // distinct deadAt, mostly (handlers run side by side)
        await d.deadLetter('receiver down');
      });
      await waitFor(async () => (await backend.queue.deadLetters({ limit: 10 })).length === 5, 'five dead letters');
      await c.stop({ graceMs: 1000 });
      expect(await backend.flows.delete('flow-bulk-gone')).toBe(true);
      backend.queue.retireFlows?.(['flow-bulk-gone']);
      const dead = await backend.queue.deadLetters({ limit: 10 });
      const deadAtOf = (requestId: string) => dead.find((d) => d.requestId === requestId)!.deadAt;

      // Nothing matches: nothing moves.
      expect(await backend.queue.retryDeadLetters({ flowId: 'flow-none', limit: 10 })).toEqual({ retried: 0, remaining: 0 });
      // One flow, since its second dead letter, at most one: the oldest of those.
      // Oldest first is (deadAt, id): handlers run side by side, so the order they started in may differ.
      const aInOrder = [...a].sort((x, y) => deadAtOf(x) - deadAtOf(y) || (dead.find((d) => d.requestId === x)!.id < dead.find((d) => d.requestId === y)!.id ? -1 : 1));
      const since = deadAtOf(aInOrder[1]!);
      const fromSince = aInOrder.filter((x) => deadAtOf(x) >= since);
      const seen: string[] = [];
      const r = consume(async (d) => {
        seen.push(d.job.requestId);
        expect(d.job.attempts).toBe(1);
        await d.ack();
      });
      expect(await backend.queue.retryDeadLetters({ flowId: 'flow-bulk-a', since, limit: 1 })).toEqual({ retried: 1, remaining: fromSince.length - 1 });
      await waitFor(() => seen.length === 1, 'the first retried job');
      if (backend.queue.removeFlow === undefined) {
        expect(seen).toEqual([fromSince[0]]);
      } else {
        // RabbitMQ takes the dead-letter queue's order, and every scan (the call above included)
        // hands what it read back with one nack-requeue, after which a 3.10 quorum queue need not
        // keep the order: one of the window's, not necessarily the oldest.
        expect(fromSince).toContain(seen[0]);
      }
      // Everything else: the deleted flow's dead letter stays and is counted.
      expect(await backend.queue.retryDeadLetters({ limit: 100 })).toEqual({ retried: 3, remaining: 1 });
      await waitFor(() => seen.length === 4, 'every retried job');
      expect(new Set(seen)).toEqual(new Set([...a, b]));
      expect((await backend.queue.deadLetters({ limit: 10 })).map((d) => d.requestId)).toEqual([gone]);
      await r.stop({ graceMs: 1000 });
      expect(await backend.queue.stats()).toEqual({ ...zeroStats, dead: 1 });
      if (backend.queue.removeFlow) expect(await backend.queue.removeFlow('flow-bulk-gone')).toBe(true);
    });

    it('retryDeadLetters takes each dead letter once per call, even when it dies again during the call', async () => {
      await backend.flows.put(normalizeFlow({}, 'flow-bulk-again', new Date()));
      for (let i = 0; i < 6; i++) await accept({ flowId: 'flow-bulk-again', maxAttempts: 1 });
      let deliveries = 0;
      // The receiver is still down: every delivery dies at once, while the retry is going on.
      consume(async (d) => {
        deliveries++;
        await d.deadLetter('still down');
      }, 4);
      await waitFor(async () => (await backend.queue.deadLetters({ limit: 10 })).length === 6 && deliveries === 6, 'six dead letters');
      const result = await backend.queue.retryDeadLetters({ flowId: 'flow-bulk-again', limit: 1000 });
      expect(result.retried).toBe(6);
      await waitFor(async () => deliveries === 12 && (await backend.queue.deadLetters({ limit: 10 })).length === 6, 'each retried once, dead again');
      await sleep(300);
      expect(deliveries).toBe(12);
    });

    it('dead letters page newest first from a cursor (deadAt, id) that needs no row', async () => {
      const ids = [];
      for (let i = 0; i < 3; i++) ids.push(await accept({ flowId: 'flow-pages', maxAttempts: 1 }));
      const c = consume(async (d) => {
        await sleep(5); // distinct deadAt
        await d.deadLetter('page me');
      });
      await waitFor(async () => (await backend.queue.deadLetters({ limit: 10 })).length === 3, 'three dead letters');
      await c.stop({ graceMs: 1000 });
      const all = await backend.queue.deadLetters({ limit: 10 });
      expect(all.map((d) => d.requestId)).toEqual([...ids].reverse());
      const first = await backend.queue.deadLetters({ flowId: 'flow-pages', limit: 2 });
      expect(first.map((d) => d.id)).toEqual(all.slice(0, 2).map((d) => d.id));
      const cursor = { deadAt: first[1]!.deadAt, id: first[1]!.id };
      expect((await backend.queue.deadLetters({ limit: 2, before: cursor })).map((d) => d.id)).toEqual([all[2]!.id]);
      // The cursor's own dead letter dismissed meanwhile: the paging goes on.
      expect(await backend.queue.discardDead(cursor.id)).toBe(true);
      expect((await backend.queue.deadLetters({ flowId: 'flow-pages', limit: 2, before: cursor })).map((d) => d.id)).toEqual([all[2]!.id]);
      expect(await backend.queue.deadLetters({ limit: 2, before: { deadAt: all[2]!.deadAt, id: all[2]!.id } })).toEqual([]);
    });

    it('discardDead removes one dead letter for good, and only a dead one', async () => {
      const ids = [await accept({ flowId: 'flow-discard', maxAttempts: 1 }), await accept({ flowId: 'flow-discard', maxAttempts: 1 })];
      const c = consume(async (d) => {
        await sleep(5); // distinct deadAt: newest first is well defined
        await d.deadLetter('obsolete');
      });
      await waitFor(async () => (await backend.queue.deadLetters({ limit: 10 })).length === 2, 'two dead letters');
      await c.stop({ graceMs: 1000 });
      const dead = await backend.queue.deadLetters({ limit: 10 });
      // The newest: behind the other one in a dead-letter queue (RabbitMQ), which is held meanwhile.
      const gone = dead[0]!;
      expect(gone.requestId).toBe(ids[1]);
      expect(await backend.queue.discardDead(gone.id)).toBe(true);
      expect(await backend.queue.discardDead(gone.id)).toBe(false);
      expect(await backend.queue.discardDead(uuidv7())).toBe(false);
      expect((await backend.queue.deadLetters({ limit: 10 })).map((d) => d.requestId)).toEqual([ids[0]]);
      expect(await backend.queue.stats()).toEqual({ ...zeroStats, dead: 1 });
      expect(await backend.queue.retryDead(gone.id)).toBe(false);
      // Not a dead letter: a job waiting for its retry is not discarded by its id.
      await accept({ flowId: 'flow-discard', maxAttempts: 5 });
      let waiting: string | undefined;
      const r = consume(async (d) => {
        waiting = d.job.id;
        await d.nack({ delayMs: 30_000, error: 'later' });
      });
      await waitFor(async () => waiting !== undefined && (await backend.queue.stats()).delayed === 1, 'a job waiting for its retry');
      await r.stop({ graceMs: 1000 });
      expect(await backend.queue.discardDead(waiting!)).toBe(false);
      expect(await backend.queue.discardDead((await backend.queue.deadLetters({ limit: 10 }))[0]!.id)).toBe(true);
      expect(await backend.queue.stats()).toEqual({ ...zeroStats, delayed: 1 });
    });

    it("nack uncounted (a stopped flow's job waits): no attempt spent, never dead; wakeStopped makes it due at once", async () => {
      await accept({ flowId: 'flow-parked', maxAttempts: 1 });
      const seen: Delivery[] = [];
      const outcomes: string[] = [];
      const c = consume(async (d) => {
        seen.push(d);
        // The last attempt, twice over: waiting is not failing.
        if (seen.length <= 2) outcomes.push(await d.nack({ delayMs: seen.length === 1 ? 0 : 30_000, error: stoppedFlowNote('flow-parked'), uncounted: true }));
        else await d.ack();
      });
      await waitFor(() => seen.length === 2 && outcomes.length === 2, 'a second delivery, nacked again');
      expect(outcomes).toEqual(['retry', 'retry']);
      expect(seen.map((d) => d.job.attempts)).toEqual([1, 1]);
      if (!backend.queue.wakeStopped) await c.stop({ graceMs: 1000 });
      else {
        // Parked for 30 s: the flow is started again, the job is due now.
        await waitFor(async () => (await backend.queue.stats()).delayed === 1, 'the parked job');
        const woken = Date.now();
        await backend.queue.wakeStopped('flow-parked');
        await waitFor(() => seen.length === 3, 'the woken job', 5_000);
        expect(Date.now() - woken).toBeLessThan(5_000);
        expect(seen[2]!.job).toMatchObject({ attempts: 1, lastError: stoppedFlowNote('flow-parked') });
        await c.stop({ graceMs: 1000 });
        expect(await backend.queue.stats()).toEqual(zeroStats);
      }
    });

    it('deadLetter() sends a job straight to the dead letters', async () => {
      const id = await accept({ maxAttempts: 10 });
      let done = false;
      consume(async (d) => {
        await d.deadLetter('not retryable: schema mismatch');
        done = true;
      });
      await waitFor(() => done, 'deadLetter');
      const dead = await backend.queue.deadLetters({ limit: 10 });
      expect(dead).toHaveLength(1);
      expect(dead[0]).toMatchObject({ requestId: id, attempts: 1, lastError: 'not retryable: schema mismatch' });
      expect(await backend.queue.stats()).toEqual({ ...zeroStats, dead: 1 });
    });

    it('a handler that throws counts as a nack with a 1 s delay', async () => {
      const id = await accept({ maxAttempts: 3 });
      const at: number[] = [];
      const seen: Delivery[] = [];
      consume(async (d) => {
        seen.push(d);
        at.push(Date.now());
        if (seen.length === 1) throw new Error('handler exploded');
        await d.ack();
      });
      await waitFor(() => seen.length === 2, 'redelivery after throw', 5_000);
      expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(950);
      expect(seen[1]!.job).toMatchObject({ requestId: id, attempts: 2, lastError: 'handler exploded' });
    });

    it('requeue() gives the job back at once without spending an attempt', async () => {
      const id = await accept({ maxAttempts: 1 });
      const deliveries: Delivery[] = [];
      consume(async (d) => {
        deliveries.push(d);
        // An outage lasting longer than the job's attempts: a nack would dead-letter it at once.
        if (deliveries.length <= 3) await d.requeue('store unavailable');
        else await d.ack();
      });
      await waitFor(() => deliveries.length === 4, 'four deliveries', 10_000);
      for (const d of deliveries) expect(d.job).toMatchObject({ requestId: id, attempts: 1, maxAttempts: 1 });
      expect(new Set(deliveries.map((d) => d.job.id)).size).toBe(1);
      await waitFor(async () => JSON.stringify(await backend.queue.stats()) === JSON.stringify(zeroStats), 'the ack');
      expect(await backend.queue.deadLetters({ limit: 10 })).toEqual([]);
    });

    it('a consumer stopped while its handler hangs gives the job back for redelivery', async () => {
      const id = await accept({ maxAttempts: 3 });
      const hang = deferred();
      let firstSeen: Delivery | undefined;
      const c1 = consume(async (d) => {
        firstSeen = d;
        await hang.promise; // never settles by itself: a stuck or crashed worker
      });
      await waitFor(() => firstSeen !== undefined, 'first delivery');
      expect(c1.inFlight).toBe(1);
      const t0 = Date.now();
      await c1.stop({ graceMs: 0 });
      expect(Date.now() - t0).toBeLessThan(2_000);

      const again: Delivery[] = [];
      consume(async (d) => {
        again.push(d);
        await d.ack();
      });
      await waitFor(() => again.length === 1, 'redelivery to another consumer', 10_000);
      expect(again[0]!.job.requestId).toBe(id);
      expect(again[0]!.job.id).toBe(firstSeen!.job.id);
      hang.resolve();
    });

    it('stop() lets the caller abort handlers still running before their jobs are given back; their return acks nothing', async () => {
      await accept({ maxAttempts: 3 });
      const abort = deferred();
      let started = false;
      const c = consume(async () => {
        started = true;
        await abort.promise; // a step that runs past the grace period, until aborted
        // returns: with its job being released, this must not ack it
      });
      await waitFor(() => started, 'delivery');
      let readyWhileAborting = -1;
      await c.stop({
        graceMs: 0,
        beforeRelease: async () => {
          // Not yet given back: no other consumer can start the job while its handler still runs.
          readyWhileAborting = (await backend.queue.stats()).ready;
          abort.resolve();
          await sleep(50); // the handler returns meanwhile
        },
      });
      expect(readyWhileAborting).toBe(0);
      // Given back after the abort, with its attempt unspent (not acked, not nacked).
      await waitFor(async () => (await backend.queue.stats()).ready === 1, 'the job back in the queue', 10_000);
      const again: Delivery[] = [];
      consume(async (d) => {
        again.push(d);
        await d.ack();
      });
      await waitFor(() => again.length === 1, 'redelivery', 10_000);
      expect(again[0]!.job.attempts).toBe(1);
    });

    it('stop() waits for running handlers within the grace period', async () => {
      await accept();
      let finished = false;
      let started = false;
      const c = consume(async (d) => {
        started = true;
        await sleep(150);
        await d.ack();
        finished = true;
      });
      await waitFor(() => started, 'delivery');
      await c.stop({ graceMs: 5_000 });
      expect(finished).toBe(true);
      expect(c.inFlight).toBe(0);
      expect(await backend.queue.stats()).toEqual(zeroStats);
    });

    it('never runs more handlers than its concurrency, and does use it', async () => {
      let running = 0;
      let max = 0;
      let maxInFlight = 0;
      let done = 0;
      const c = consume(async (d) => {
        running++;
        max = Math.max(max, running);
        maxInFlight = Math.max(maxInFlight, c.inFlight);
        await sleep(15);
        running--;
        await d.ack();
        done++;
      }, 3);
      // Jobs arrive while handlers run (hand-off and claim paths both in play).
      const waves = [];
      for (let w = 0; w < 4; w++) {
        waves.push(Promise.all(Array.from({ length: 6 }, () => accept())));
        await sleep(10);
      }
      await Promise.all(waves);
      await waitFor(() => done === 24, '24 jobs done', 10_000);
      expect(max).toBe(3);
      expect(maxInFlight).toBe(3);
    });

    it('shares jobs between consumers, each job once', async () => {
      const byConsumer = [0, 0];
      const seen: string[] = [];
      for (const k of [0, 1]) {
        consume(async (d) => {
          byConsumer[k]!++;
          seen.push(d.job.requestId);
          await sleep(10);
          await d.ack();
        }, 2);
      }
      const ids = await Promise.all(Array.from({ length: 20 }, () => accept()));
      await waitFor(() => seen.length >= 20, '20 deliveries');
      await sleep(200);
      expect([...seen].sort()).toEqual([...ids].sort());
      expect(byConsumer[0]).toBeGreaterThan(0);
      expect(byConsumer[1]).toBeGreaterThan(0);
    });

    for (const prefetch of [0, 8]) {
      it(`holds a flow to its limit of jobs at once (flowLimits), without holding up other flows (prefetch ${prefetch})`, async () => {
        const limits = new Map([['capped', 2]]);
        // A backlog before the consumer starts (claims), and jobs accepted while it runs (hand-offs).
        for (let i = 0; i < 6; i++) await accept({ flowId: 'capped' });
        for (let i = 0; i < 6; i++) await accept({ flowId: 'free' });
        const now = new Map<string, number>();
        const most = new Map<string, number>();
        const done: string[] = [];
        const c = backend.queue.consume(
          async (d) => {
            const f = d.job.flowId;
            now.set(f, (now.get(f) ?? 0) + 1);
            most.set(f, Math.max(most.get(f) ?? 0, now.get(f)!));
            await sleep(60);
            now.set(f, now.get(f)! - 1);
            await d.ack();
            done.push(f);
          },
          { concurrency: 6, prefetch, flowLimits: () => limits },
        );
        consumers.push(c);
        for (let i = 0; i < 6; i++) await accept({ flowId: 'capped' });
        for (let i = 0; i < 6; i++) await accept({ flowId: 'free' });
        await waitFor(() => done.length === 24, '24 jobs done', 20_000);
        expect(most.get('capped')).toBe(2);
        // The other flow used the slots the limited one left.
        expect(most.get('free')).toBeGreaterThanOrEqual(3);
        expect(done.filter((f) => f === 'capped')).toHaveLength(12);
        // A limit raised is followed at the next claims.
        limits.set('capped', 4);
        const t0 = Date.now();
        for (let i = 0; i < 12; i++) await accept({ flowId: 'capped' });
        await waitFor(() => done.length === 36, '36 jobs done', 20_000);
        // Three rounds of four: a job that ends makes room for the next at once, not at a sweep (1 s).
        expect(Date.now() - t0).toBeLessThan(1_500);
        expect(most.get('capped')).toBeGreaterThanOrEqual(3);
        expect(most.get('capped')).toBeLessThanOrEqual(4);
      });
    }

    for (const prefetch of [0, 8]) {
      it(`starts a flow's jobs no faster than its rate (flowRates), while other flows' jobs run at once (prefetch ${prefetch})`, async () => {
        const rates = new FlowRates(() => new Map([['rated', { perSecond: 20, burst: 2 }]]));
        // A backlog before the consumer starts (claims), and jobs accepted while it runs (hand-offs).
        for (let i = 0; i < 10; i++) await accept({ flowId: 'rated' });
        for (let i = 0; i < 10; i++) await accept({ flowId: 'free' });
        const starts = new Map<string, number[]>();
        let done = 0;
        const c = backend.queue.consume(
          async (d) => {
            const list = starts.get(d.job.flowId) ?? [];
            list.push(Date.now());
            starts.set(d.job.flowId, list);
            await sleep(5);
            await d.ack();
            done++;
          },
          { concurrency: 6, prefetch, flowRates: rates },
        );
        consumers.push(c);
        for (let i = 0; i < 10; i++) await accept({ flowId: 'rated' });
        for (let i = 0; i < 10; i++) await accept({ flowId: 'free' });
        await waitFor(() => done === 40, '40 jobs done', 20_000);
        const rated = starts.get('rated')!;
        const free = starts.get('free')!;
        expect(rated).toHaveLength(20);
        // Two at once (the burst), then one every 50 ms: 20 starts take at least 0.9 s.
        for (let i = 2; i < rated.length; i++) expect(rated[i]! - rated[0]!).toBeGreaterThanOrEqual((i - 1) * 50 - 15);
        // …and not much more: each waiting job starts as soon as its rate allows (no 1 s sweep).
        expect(rated[19]! - rated[0]!).toBeLessThan(1_600);
        // The other flow's jobs did not wait behind the rated flow's.
        expect(Math.max(...free)).toBeLessThan(rated[19]! - 300);
      });
    }

    it("a flow at 0 (stopped): the database queues leave its jobs where they are, however many, and claim others' past them", async () => {
      const limits = new Map([['held', 0]]);
      for (let i = 0; i < 300; i++) await accept({ flowId: 'held' });
      for (let i = 0; i < 5; i++) await accept({ flowId: 'other' });
      const seen: string[] = [];
      const c = backend.queue.consume(
        async (d) => {
          seen.push(d.job.flowId);
          await d.ack();
        },
        { concurrency: 4, prefetch: 4, flowLimits: () => limits },
      );
      consumers.push(c);
      await waitFor(() => seen.filter((f) => f === 'other').length === 5, "the other flow's jobs");
      await sleep(300);
      if (backend.queue.wakeStopped) {
        // Not claimed, not put back: still ready, nothing delivered.
        expect(seen.filter((f) => f === 'held')).toHaveLength(0);
        expect(await backend.queue.stats()).toMatchObject({ ready: 300, inFlight: 0, delayed: 0 });
        // Started: its jobs run at once (wakeStopped wakes the consumers even with nothing parked).
        limits.delete('held');
        await backend.queue.wakeStopped('held');
        await waitFor(() => seen.filter((f) => f === 'held').length === 300, "the started flow's jobs", 15_000);
      } else {
        // A queue per flow (RabbitMQ) does not consume a stopped flow's queue (watchFlows): it ignores 0.
        await waitFor(() => seen.filter((f) => f === 'held').length === 300, 'every job', 15_000);
      }
    });

    it('takes the flows with waiting jobs in turn: a backlog of one flow does not hold up the others', async () => {
      // Accepted flow by flow: oldest first, all of a's jobs would run before b's and c's.
      for (const flowId of ['fair-a', 'fair-b', 'fair-c']) {
        for (let i = 0; i < 30; i++) await accept({ flowId });
      }
      const started = consumeFlows(1, 2);
      await waitFor(() => started.length === 90, '90 deliveries', 15_000);
      const first = started.slice(0, 12);
      for (const flowId of ['fair-a', 'fair-b', 'fair-c']) {
        expect(first.filter((f) => f === flowId).length, `${flowId} among the first 12: ${first.join(' ')}`).toBeGreaterThanOrEqual(2);
      }
    });

    it("starts a quiet flow's job within a few jobs while another flow's backlog drains", async () => {
      for (let i = 0; i < 150; i++) await accept({ flowId: 'busy' });
      const started = consumeFlows(2, 5);
      await waitFor(() => started.length >= 20, '20 of the backlog started');
      await accept({ flowId: 'quiet' });
      const before = started.length;
      await waitFor(() => started.includes('quiet'), "the quiet flow's job", 10_000);
      const after = started.indexOf('quiet') - before;
      expect(after, `started ${after} jobs of the backlog first`).toBeLessThanOrEqual(8);
      expect(started.length).toBeLessThan(151); // the backlog is not drained yet
    });

    it('wakes an idle consumer right after accept (median latency < 50 ms)', async () => {
      let waiting: Deferred<number> | undefined;
      consume(async (d) => {
        waiting?.resolve(performance.now());
        await d.ack();
      }, 4);
      await sleep(50);
      const latencies: number[] = [];
      for (let i = 0; i < 50; i++) {
        waiting = deferred<number>();
        const t0 = performance.now();
        await accept();
        const t1 = await waiting.promise;
        latencies.push(t1 - t0);
      }
      expect(median(latencies)).toBeLessThan(50);
    });

    it('enqueue() delivers a job, not before its runAt', async () => {
      const seen: Array<{ d: Delivery; at: number }> = [];
      consume(async (d) => {
        seen.push({ d, at: Date.now() });
        await d.ack();
      }, 2);
      const requestId = uuidv7();
      const runAt = Date.now() + 400;
      await backend.queue.enqueue({ flowId: 'flow-e', requestId, maxAttempts: 2, runAt });
      await backend.queue.enqueue({ flowId: 'flow-e', requestId: 'now-job', maxAttempts: 1 });
      await waitFor(() => seen.length === 1, 'the immediate job');
      expect(seen[0]!.d.job).toMatchObject({ requestId: 'now-job', attempts: 1, maxAttempts: 1 });
      await waitFor(() => seen.length === 2, 'the delayed job', 5_000);
      expect(seen[1]!.at).toBeGreaterThanOrEqual(runAt);
      expect(seen[1]!.d.job).toMatchObject({ requestId, flowId: 'flow-e', attempts: 1, maxAttempts: 2 });
    });

    it('stats count ready, in-flight, delayed and dead jobs', async () => {
      expect(await backend.queue.stats()).toEqual(zeroStats);
      for (let i = 0; i < 3; i++) await accept();
      expect(await backend.queue.stats()).toEqual({ ...zeroStats, ready: 3 });

      const hold = deferred();
      let n = 0;
      const c = consume(async (d) => {
        n++;
        if (n === 1) await d.nack({ delayMs: 60_000, error: 'later' });
        else if (n === 2) await d.deadLetter('never');
        else {
          await hold.promise;
          await d.ack();
        }
      });
      await waitFor(() => n === 3, 'three deliveries');
      await waitFor(() => c.inFlight === 1, 'one in flight');
      expect(await backend.queue.stats()).toEqual({ ready: 0, inFlight: 1, delayed: 1, dead: 1 });
      hold.resolve();
      await waitFor(() => c.inFlight === 0, 'handler done');
      await c.stop({ graceMs: 1_000 });
      expect(await backend.queue.stats()).toEqual({ ...zeroStats, delayed: 1, dead: 1 });
    });
  });
}
