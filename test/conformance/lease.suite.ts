import { describe, expect, it } from 'vitest';
import { normalizeFlow } from '../../src/core/flow.js';
import type { Delivery } from '../../src/queue/contract.js';
import type { Backend } from '../../src/store/backend.js';
import { makeMessage, sleep, waitFor } from './helpers.js';

/**
 * Leases: the queues whose jobs are leased from a database (embedded SQLite, PostgreSQL) run these
 * unchanged. A "process" is a Backend opened on the same storage; close() without stop() is a crash
 * (the leases stay until they expire). RabbitMQ has no leases (the broker requeues on channel loss).
 *
 * `open({ leaseMs })`: the same storage on every call within a test; the caller closes what it opened.
 */
export function describeLeaseConformance(
  name: string,
  open: (options?: { leaseMs?: number }) => Promise<Backend>,
  /**
   * endsLeasesAtClaim: a claim first turns leases that ran out back into ready jobs (SQLite's
   * claim does; PostgreSQL's sweep does it, up to a second later, so a claim in between takes
   * the jobs behind a crashed one first).
   */
  capabilities: { endsLeasesAtClaim: boolean },
): void {
  describe(`${name}: leases and crashes`, () => {
    it('flowBacklog(): per flow, the jobs due and how long the oldest of them has waited (delayed and running ones not counted)', async () => {
      const b = await open();
      try {
        expect(await b.queue.flowBacklog!()).toEqual([]);
        const now = Date.now();
        await b.queue.enqueue({ flowId: 'backed-up', requestId: 'old', maxAttempts: 1, runAt: now - 5_000 });
        await b.queue.enqueue({ flowId: 'backed-up', requestId: 'new', maxAttempts: 1 });
        await b.queue.enqueue({ flowId: 'quiet', requestId: 'due', maxAttempts: 1 });
        await b.queue.enqueue({ flowId: 'waiting', requestId: 'later', maxAttempts: 1, runAt: now + 60_000 });
        const backlog = (await b.queue.flowBacklog!()).sort((x, y) => x.flowId.localeCompare(y.flowId));
        expect(backlog.map((f) => [f.flowId, f.ready])).toEqual([
          ['backed-up', 2],
          ['quiet', 1],
        ]);
        expect(backlog[0]!.oldestReadyMs).toBeGreaterThanOrEqual(4_500);
        expect(backlog[0]!.oldestReadyMs).toBeLessThan(15_000);
        expect(backlog[1]!.oldestReadyMs).toBeGreaterThanOrEqual(0);
        expect(backlog[1]!.oldestReadyMs).toBeLessThan(5_000);
      } finally {
        await b.close();
      }
    });

    it('takes turns past flows that have only delayed jobs, more of them than a claim looks at', async () => {
      const b = await open();
      try {
        // 300 flows with a retry waiting (not due), between a busy flow and a quiet one in id order:
        // a claim looks at 256 flows at most, and must go on past them at the next one.
        const later = Date.now() + 60_000;
        for (let i = 0; i < 300; i++) {
          await b.queue.enqueue({ flowId: `m-${String(i).padStart(3, '0')}`, requestId: `waiting-${i}`, maxAttempts: 1, runAt: later });
        }
        for (let i = 0; i < 40; i++) await b.requests.accept(makeMessage({ flowId: 'a-busy' }), { maxAttempts: 1 });
        await b.requests.accept(makeMessage({ flowId: 'z-quiet' }), { maxAttempts: 1 });
        const started: string[] = [];
        const c = b.queue.consume(async (d) => {
          started.push(d.job.flowId);
          await sleep(2);
          await d.ack();
        }, { concurrency: 1 });
        await waitFor(() => started.includes('z-quiet'), "the quiet flow's job", 10_000);
        // Oldest first, or a ring stuck before the waiting flows: after all 40 of a-busy.
        expect(started.indexOf('z-quiet'), started.join(' ')).toBeLessThanOrEqual(10);
        await c.stop({ graceMs: 1_000 });
      } finally {
        await b.close();
      }
    });

    it('redelivers the job of a process that died (closed without stop) once its lease expires', async () => {
      const b1 = await open({ leaseMs: 300 });
      const m = makeMessage();
      let firstAt = 0;
      b1.queue.consume(async () => {
        firstAt = Date.now();
        await new Promise(() => {}); // hangs forever
      }, { concurrency: 1 });
      await b1.requests.accept(m, { maxAttempts: 3 });
      await waitFor(() => firstAt > 0, 'first delivery');
      await b1.close(); // no stop(): the lease stays, as after a crash

      const b2 = await open({ leaseMs: 300 });
      const seen: Delivery[] = [];
      let at = 0;
      b2.queue.consume(async (d) => {
        seen.push(d);
        at = Date.now();
        await d.ack();
      }, { concurrency: 1 });
      await waitFor(() => seen.length === 1, 'redelivery after lease expiry', 5_000);
      // The lease runs from the commit that inserted the job; a hand-off follows that commit (and, on
      // SQLite, its fsync), so the handler may start a few ms into it (up to ~10 ms on a loaded disk).
      expect(at - firstAt).toBeGreaterThanOrEqual(300 - 50);
      expect(seen[0]!.job).toMatchObject({ requestId: m.id, attempts: 2 });
    });

    it(`a job handed back (stop)${capabilities.endsLeasesAtClaim ? ' or whose lease ran out (crash)' : ''} keeps its turn: it runs before the jobs that came after it`, async () => {
      const b1 = await open({ leaseMs: 300 });
      const ms = [makeMessage(), makeMessage(), makeMessage(), makeMessage()];
      for (const m of ms) await b1.requests.accept(m, { maxAttempts: 3 });
      // The first job: taken, then handed back by a stop.
      let taken = '';
      const c1 = b1.queue.consume(async (d) => {
        taken = d.job.requestId;
        await sleep(60_000);
      }, { concurrency: 1 });
      await waitFor(() => taken !== '', 'first delivery');
      await c1.stop({ graceMs: 0 });
      /** Run all four, one at a time, and close `b`: the order they ran in. */
      const runAll = async (b: Backend): Promise<string[]> => {
        const order: string[] = [];
        const c = b.queue.consume(async (d) => {
          order.push(d.job.requestId);
          await d.ack();
        }, { concurrency: 1 });
        await waitFor(() => order.length === 4, 'all four', 5_000);
        await c.stop({ graceMs: 1_000 });
        await b.close();
        return order;
      };
      if (!capabilities.endsLeasesAtClaim) {
        expect(await runAll(b1)).toEqual(ms.map((m) => m.id));
        return;
      }
      // Taken again (the oldest), then lost in a crash: the lease stays until it runs out.
      let again = '';
      b1.queue.consume(async (d) => {
        again = d.job.requestId;
        await new Promise(() => {});
      }, { concurrency: 1 });
      await waitFor(() => again !== '', 'second delivery');
      expect([taken, again]).toEqual([ms[0]!.id, ms[0]!.id]);
      await b1.close();
      await sleep(400);

      expect(await runAll(await open({ leaseMs: 300 }))).toEqual(ms.map((m) => m.id));
    });

    it('dead-letters an expired lease that was the last attempt', async () => {
      const b1 = await open({ leaseMs: 200 });
      let delivered = false;
      b1.queue.consume(async (d) => {
        // Begun (its execution started with this attempt): the lost delivery counts.
        await b1.executions.begin({ requestId: d.job.requestId, flowId: d.job.flowId, attempt: d.job.attempts, now: Date.now() });
        delivered = true;
        await new Promise(() => {});
      }, { concurrency: 1 });
      const m = makeMessage();
      await b1.requests.accept(m, { maxAttempts: 1 });
      await waitFor(() => delivered, 'delivery');
      await b1.close();

      const b2 = await open({ leaseMs: 200 });
      let redelivered = 0;
      b2.queue.consume(async () => {
        redelivered++;
      }, { concurrency: 1 });
      await sleep(1_500);
      expect(redelivered).toBe(0);
      const dead = await b2.queue.deadLetters({ limit: 5 });
      expect(dead).toHaveLength(1);
      expect(dead[0]).toMatchObject({ requestId: m.id, attempts: 1 });
      expect(dead[0]!.lastError).toMatch(/lease expired/);
      // Its execution says so too, instead of running for ever.
      const exec = await b2.executions.getByRequest(m.id);
      expect(exec).toMatchObject({ status: 'dead' });
      expect(exec!.error).toMatch(/lease expired/);
      expect(exec!.finishedAt).toBeGreaterThan(0);
    });

    it('a delivery lost before its job began spends no attempt (a last attempt still runs), up to 5 times', async () => {
      const m = makeMessage();
      let deliveries = 0;
      let last: Delivery | undefined;
      // Each "process" takes the job and dies before beginning its execution (prefetched, say).
      for (let crash = 0; crash < 10; crash++) {
        const b = await open({ leaseMs: 100 });
        if (crash === 0) await b.requests.accept(m, { maxAttempts: 1 });
        let got = false;
        b.queue.consume(async (d) => {
          deliveries++;
          last = d;
          got = true;
          await new Promise(() => {});
        }, { concurrency: 1 });
        const dead = async () => (await b.queue.deadLetters({ limit: 5 })).length > 0;
        await waitFor(async () => got || (await dead()), `delivery ${crash + 1} or the dead letter`, 5_000);
        const isDead = await dead();
        await b.close();
        if (isDead) break;
      }
      // 1 + 5 uncounted deliveries, then the 6th loss counts: a job that keeps killing its
      // consumer before it begins still stops.
      expect(deliveries).toBe(6);
      expect(last!.job).toMatchObject({ attempts: 6, maxAttempts: 6 });
      const b = await open({ leaseMs: 100 });
      const [dead] = await b.queue.deadLetters({ limit: 5 });
      expect(dead).toMatchObject({ requestId: m.id });
      expect(dead!.lastError).toMatch(/lease expired/);
      // Retried (its flow exists), it starts afresh with the attempts it was given.
      await b.flows.put(normalizeFlow({}, m.flowId, new Date()));
      expect(await b.queue.retryDead(dead!.id)).toBe(true);
      const again: Delivery[] = [];
      b.queue.consume(async (d) => {
        again.push(d);
      }, { concurrency: 1 });
      await waitFor(() => again.length === 1, 'the retried dead letter');
      expect(again[0]!.job).toMatchObject({ requestId: m.id, attempts: 1, maxAttempts: 1 });
      await b.close();
    });

    it('a heartbeat keeps the lease of a long-running handler', async () => {
      const b1 = await open({ leaseMs: 300 });
      const b2 = await open({ leaseMs: 300 }); // a second process on the same storage
      const m = makeMessage();
      let started = false;
      let finished = false;
      b1.queue.consume(async (d) => {
        started = true;
        await sleep(1_200); // four leases long
        await d.ack();
        finished = true;
      }, { concurrency: 1 });
      await b1.requests.accept(m, { maxAttempts: 3 });
      await waitFor(() => started, 'delivery to the first process');
      let stolen = 0;
      b2.queue.consume(async () => {
        stolen++;
      }, { concurrency: 1 });
      await waitFor(() => finished, 'the long handler', 5_000);
      await sleep(400);
      expect(stolen).toBe(0);
      expect(await b1.queue.stats()).toEqual({ ready: 0, inFlight: 0, delayed: 0, dead: 0 });
    });

    it('stop() hands running jobs back without spending an attempt', async () => {
      const b = await open();
      const m = makeMessage();
      let first: Delivery | undefined;
      const c1 = b.queue.consume(async (d) => {
        first = d;
        await new Promise(() => {});
      }, { concurrency: 1 });
      await b.requests.accept(m, { maxAttempts: 2 });
      await waitFor(() => first !== undefined, 'delivery');
      await c1.stop({ graceMs: 0 });
      expect(await b.queue.stats()).toMatchObject({ ready: 1, inFlight: 0 });
      // The stopped handler settling late changes nothing.
      await first!.ack();
      expect(await b.queue.stats()).toMatchObject({ ready: 1 });

      const seen: Delivery[] = [];
      b.queue.consume(async (d) => {
        seen.push(d);
        await d.ack();
      }, { concurrency: 1 });
      await waitFor(() => seen.length === 1, 'redelivery');
      expect(seen[0]!.job.attempts).toBe(1);
    });
  });

  describe(`${name}: prefetch`, () => {
    /** A backlog of n jobs committed while no consumer runs (so none is handed off). */
    async function backlog(b: Backend, n: number): Promise<string[]> {
      const ids: string[] = [];
      for (let i = 0; i < n; i++) {
        const m = makeMessage();
        await b.requests.accept(m, { maxAttempts: 3 });
        ids.push(m.id);
      }
      return ids;
    }

    it('leases a second round of jobs ahead of the free slots and runs each once, oldest first', async () => {
      const b = await open();
      const ids = await backlog(b, 12);
      const gates: Array<() => void> = [];
      const started: Delivery[] = [];
      b.queue.consume(async (d) => {
        started.push(d);
        await new Promise<void>((r) => gates.push(r));
        await d.ack();
      }, { concurrency: 2, prefetch: 2 });
      // (The commit of a claim can be seen before the claim's answer reaches the consumer.)
      await waitFor(async () => started.length === 2 && (await b.queue.stats()).inFlight === 4, 'two running, two prefetched');
      // Slots that free start the prefetched jobs; the consumer keeps at most 2 + 2 leased.
      while (started.length < 12 || gates.length > 0) {
        await waitFor(() => gates.length > 0, 'a running handler');
        gates.shift()!();
        expect((await b.queue.stats()).inFlight).toBeLessThanOrEqual(4);
      }
      await waitFor(async () => (await b.queue.stats()).inFlight === 0, 'all acked');
      expect(started.map((d) => d.job.requestId)).toEqual(ids);
      expect(started.every((d) => d.job.attempts === 1)).toBe(true);
      expect(await b.queue.stats()).toEqual({ ready: 0, inFlight: 0, delayed: 0, dead: 0 });
    });

    it('refuses a prefetch that is not a non-negative integer', async () => {
      const b = await open();
      expect(() => b.queue.consume(async () => {}, { concurrency: 1, prefetch: -1 })).toThrow(/prefetch/);
      expect(() => b.queue.consume(async () => {}, { concurrency: 1, prefetch: 1.5 })).toThrow(/prefetch/);
    });

    it('stop() hands the prefetched jobs back without spending an attempt', async () => {
      const b = await open();
      await backlog(b, 6);
      const c1 = b.queue.consume(async () => {
        await new Promise(() => {});
      }, { concurrency: 2, prefetch: 2 });
      await waitFor(async () => (await b.queue.stats()).inFlight === 4, 'two running, two prefetched');
      await c1.stop({ graceMs: 0 });
      expect(await b.queue.stats()).toMatchObject({ ready: 6, inFlight: 0 });

      const seen: Delivery[] = [];
      b.queue.consume(async (d) => {
        seen.push(d);
        await d.ack();
      }, { concurrency: 2 });
      await waitFor(() => seen.length === 6, 'all six again');
      expect(seen.every((d) => d.job.attempts === 1)).toBe(true);
    });

    it('the heartbeat keeps the leases of prefetched jobs that wait longer than a lease', async () => {
      const b1 = await open({ leaseMs: 300 });
      const b2 = await open({ leaseMs: 300 }); // a second process on the same storage
      await backlog(b1, 2);
      const seen: Delivery[] = [];
      b1.queue.consume(async (d) => {
        seen.push(d);
        await sleep(1_000); // the prefetched second job waits three leases long
        await d.ack();
      }, { concurrency: 1, prefetch: 1 });
      await waitFor(async () => (await b1.queue.stats()).inFlight === 2, 'one running, one prefetched');
      let stolen = 0;
      b2.queue.consume(async () => {
        stolen++;
      }, { concurrency: 1 });
      await waitFor(() => seen.length === 2, 'the prefetched job', 5_000);
      await waitFor(async () => (await b1.queue.stats()).inFlight === 0, 'both acked', 5_000);
      expect(stolen).toBe(0);
      expect(seen.map((d) => d.job.attempts)).toEqual([1, 1]);
    });
  });
}
