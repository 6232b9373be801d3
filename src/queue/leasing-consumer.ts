import { randomUUID } from 'node:crypto';
import { E, HookdError } from '../core/errors.js';
import type { Job } from '../core/job.js';
import { Conditions } from './conditions.js';
import { DEFAULT_GRACE_MS, type Consumer, type JobHandler } from './contract.js';
import type { LeaseDelivery, NackWrite } from './lease-delivery.js';

export interface LeasingConsumerOptions {
  handler: JobHandler;
  /** Handlers at once. */
  concurrency: number;
  /** The heartbeat extends the leases of running jobs every leaseMs / 3. */
  leaseMs: number;
  logger: { warn(obj: object, msg: string): void };
  /** Log prefix: 'embedded queue', 'postgres queue'. */
  label: string;
  /**
   * Jobs claimed ahead of the free slots, leased and waiting here, so that a slot that frees starts
   * its next job at once instead of after a claim round trip (a write and its commit), and claims
   * come in fewer, larger batches. 0 (default): claim only for free slots. The heartbeat extends
   * their leases with those of the running jobs.
   */
  prefetch?: number;
}

/**
 * A consumer of a database queue with leases (embedded SQLite, PostgreSQL): runs up to
 * `concurrency` handlers. Slots are taken by running handlers and by reservations — a claim in
 * flight reserves what it asks for (subclasses may reserve more, e.g. for a hand-off) — so the
 * concurrency holds however jobs arrive. With a prefetch, claims also lease up to `prefetch` jobs
 * beyond the slots; they wait here, in the order the claim gave them, and take slots as they free. A heartbeat keeps
 * the leases of running and waiting jobs.
 *
 * stop(): no new claims; claims in flight land and waiting jobs are released at once; running handlers
 * get graceMs, then their jobs are released (another consumer gets them without an attempt spent);
 * resolves once every settle write has finished. halt(): stop at once and keep the leases (they
 * expire, as after a crash) — for a backend that is closing.
 *
 * Subclasses supply the claim, the deliveries, the lease extension and the wake-up bookkeeping.
 */
export abstract class LeasingConsumer<D extends LeaseDelivery<NackWrite>> implements Consumer {
  /** lease_owner of this consumer's jobs; unique per consumer instance. */
  readonly owner = `consumer-${randomUUID()}`;
  protected readonly running = new Set<D>();
  protected reserved = 0;
  protected state: 'active' | 'stopping' | 'stopped' = 'active';
  /** What the claim in flight reserved (part of `reserved`); 0: no claim in flight. */
  private claimReserved = 0;
  /**
   * Claimed (leased) jobs waiting for a slot, in claim order, each with until when its lease is known
   * to hold (local clock: the claim's or the last extension's send time + leaseMs; 0 once a
   * heartbeat found it lost). One past it is not started: another consumer may have it by now (a
   * heartbeat that failed for most of a lease).
   */
  private readonly prefetched: Array<{ job: Job; leasedUntil: number }> = [];
  private readonly prefetch: number;
  private readonly heartbeat: NodeJS.Timeout;
  private readonly settles = new Set<Promise<unknown>>();
  private readonly conditions = new Conditions();
  private stopping: Promise<void> | undefined;

  constructor(private readonly o: LeasingConsumerOptions) {
    const prefetch = o.prefetch ?? 0;
    if (!Number.isInteger(prefetch) || prefetch < 0) {
      throw new HookdError(E.VALIDATION_FAILED, 'consumer prefetch must be a non-negative integer');
    }
    this.prefetch = prefetch;
    this.heartbeat = setInterval(() => this.beat(), Math.max(10, Math.floor(o.leaseMs / 3)));
    this.heartbeat.unref();
  }

  /** False when the last claim found fewer due jobs than it asked for and nothing new came since. */
  protected abstract hasWork(): boolean;
  /** Lease up to `limit` due jobs to this.owner (and record what the claim found). */
  protected abstract claim(limit: number): Promise<Job[]>;
  protected abstract delivery(job: Job): D;
  /**
   * Extend the leases of the jobs held here (running, and prefetched ones waiting for a slot);
   * resolves with the ids extended (any other lease was lost).
   */
  protected abstract extendLeases(held: readonly Job[]): Promise<readonly string[]>;
  /** The consumer is stopping: its queue stops waking it. */
  protected abstract detach(): void;

  /** Deliveries report their settle writes here: stop() waits for them. */
  protected readonly track = (p: Promise<unknown>): void => {
    this.settles.add(p);
    const forget = (): void => {
      this.settles.delete(p);
      this.changed();
    };
    p.then(forget, forget);
  };

  get inFlight(): number {
    return this.running.size;
  }

  /** Slots not taken by running handlers, reservations or prefetched jobs waiting for a slot. */
  protected get free(): number {
    return this.state === 'active' ? this.o.concurrency - this.running.size - this.reserved - this.prefetched.length : 0;
  }

  /**
   * Start prefetched jobs in the free slots, then claim due jobs for the slots still free and the
   * prefetch, if the queue may have some. With a prefetch, a claim waits until half of it is gone
   * (unless nothing is waiting here at all): fewer, larger claims.
   */
  pump(): void {
    this.startPrefetched();
    if (this.claimReserved > 0 || this.state !== 'active' || !this.hasWork()) return;
    const limit = this.free + this.prefetch;
    if (limit <= 0) return;
    if (this.prefetched.length > 0 && limit < Math.ceil(this.prefetch / 2)) return;
    this.claimReserved = limit;
    this.reserved += limit;
    const claimedAt = Date.now();
    this.claim(limit).then(
      (jobs) => {
        this.claimDone(limit);
        for (const job of jobs) this.prefetched.push({ job, leasedUntil: claimedAt + this.o.leaseMs });
        this.changed();
        this.pump();
      },
      (err: unknown) => {
        this.claimDone(limit);
        this.changed();
        this.o.logger.warn({ err }, `${this.o.label}: claim failed; retrying on the next sweep`);
      },
    );
  }

  private claimDone(limit: number): void {
    this.claimReserved = 0;
    this.reserved -= limit;
  }

  /**
   * Prefetched jobs take the slots that running handlers and hand-offs leave (a claim in flight
   * reserves nothing they could use: its jobs queue behind them). Stopping: all are released.
   */
  private startPrefetched(): void {
    if (this.prefetched.length === 0) return;
    if (this.state !== 'active') {
      for (const { job } of this.prefetched.splice(0)) this.start(job);
      return;
    }
    const now = Date.now();
    while (this.prefetched.length > 0 && this.o.concurrency - this.running.size - (this.reserved - this.claimReserved) > 0) {
      const { job, leasedUntil } = this.prefetched.shift()!;
      if (leasedUntil <= now) {
        // Given back rather than left to expire: the release only applies while this consumer
        // still holds the lease (then no attempt is spent); otherwise another consumer has the job.
        this.o.logger.warn({ jobId: job.id }, `${this.o.label}: a prefetched job's lease may have run out (no heartbeat got through); not started, given back`);
        void this.delivery(job).release();
        continue;
      }
      this.start(job);
    }
  }

  stop(options?: { graceMs?: number; beforeRelease?: () => Promise<void> }): Promise<void> {
    this.stopping ??= this.shutdown(options?.graceMs ?? DEFAULT_GRACE_MS, options?.beforeRelease);
    return this.stopping;
  }

  /** Backend closing: stop at once, keep the leases (they expire: as after a crash). */
  halt(): void {
    this.state = 'stopped';
    this.prefetched.length = 0; // their leases expire, as after a crash
    clearInterval(this.heartbeat);
    this.changed();
  }

  /** Run a leased job's handler (or release the job at once when stopping). */
  protected start(job: Job): void {
    const d = this.delivery(job);
    if (this.state !== 'active') {
      void d.release();
      return;
    }
    this.running.add(d);
    let done: Promise<void>;
    try {
      done = Promise.resolve(this.o.handler(d));
    } catch (err) {
      done = Promise.reject(err);
    }
    // The slot frees when the handler returns; the settle write and the next claim then share a batch.
    done.then(
      () => {
        this.finished(d);
        d.autoAck();
        this.pump();
      },
      (err: unknown) => {
        this.finished(d);
        d.autoNack(err);
        this.pump();
      },
    );
  }

  /** Slots or reservations changed: re-check what stop() waits for. */
  protected changed(): void {
    this.conditions.changed();
  }

  private finished(d: D): void {
    this.running.delete(d);
    this.changed();
  }

  private beat(): void {
    if ((this.running.size === 0 && this.prefetched.length === 0) || this.state === 'stopped') return;
    const sentAt = Date.now();
    const waiting = [...this.prefetched];
    this.extendLeases([...[...this.running].map((d) => d.job), ...waiting.map((w) => w.job)]).then((extended) => {
      // Entries started meanwhile are no longer read; a lost one is not started when its turn comes.
      const kept = new Set(extended);
      for (const w of waiting) w.leasedUntil = kept.has(w.job.id) ? sentAt + this.o.leaseMs : 0;
    }, (err: unknown) => {
      this.o.logger.warn({ err }, `${this.o.label}: lease heartbeat failed`);
    });
  }

  private async shutdown(graceMs: number, beforeRelease?: () => Promise<void>): Promise<void> {
    if (this.state === 'active') this.state = 'stopping';
    this.detach();
    this.changed();
    // Prefetched jobs never got a slot: released now. Claims and hand-offs in flight land first
    // (start() releases their jobs at once; a claim's go through pump(), which releases them too).
    this.startPrefetched();
    await this.conditions.until(() => this.reserved === 0);
    if (graceMs > 0) await this.conditions.until(() => this.running.size === 0, graceMs);
    // Handlers still running: their settles become no-ops, the caller aborts them, and only then
    // are their jobs given back (another consumer must not start one while its old handler runs).
    const left = [...this.running];
    for (const d of left) d.holdForRelease();
    if (left.length > 0) await beforeRelease?.().catch(() => {});
    await Promise.all(left.map((d) => d.release()));
    await this.conditions.until(() => this.settles.size === 0);
    clearInterval(this.heartbeat);
    this.state = 'stopped';
  }
}
