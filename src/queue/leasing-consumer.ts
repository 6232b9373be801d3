import { randomUUID } from 'node:crypto';
import { E, HookdError } from '../core/errors.js';
import type { Job } from '../core/job.js';
import { Conditions } from './conditions.js';
import { WakeTimer } from './wake-timer.js';
import { DEFAULT_GRACE_MS, type Consumer, type FlowRateGate, type JobHandler } from './contract.js';
import type { LeaseDelivery, NackWrite } from './lease-delivery.js';
import { type LevelLogger, RecurringFailure, RepeatedLog } from '../core/repeated-log.js';

export interface LeasingConsumerOptions {
  handler: JobHandler;
  /** Handlers at once. */
  concurrency: number;
  /** The heartbeat extends the leases of running jobs every leaseMs / 3. */
  leaseMs: number;
  logger: LevelLogger;
  /** Log prefix: 'embedded queue', 'postgres queue'. */
  label: string;
  /**
   * Jobs claimed ahead of the free slots, leased and waiting here, so that a slot that frees starts
   * its next job at once instead of after a claim round trip (a write and its commit), and claims
   * come in fewer, larger batches. 0 (default): claim only for free slots. The heartbeat extends
   * their leases with those of the running jobs.
   */
  prefetch?: number;
  /** Flows whose jobs this consumer holds only so many of at once (ConsumeOptions.flowLimits). */
  flowLimits?: () => ReadonlyMap<string, number>;
  /**
   * The limits hold for every consumer of the queue together (PostgreSQL: claims count the others'
   * leases), so a claim may leave a flow short of its room here while others hold it: any end of
   * one of its jobs here may then make room, not only when this consumer was at the limit.
   */
  sharedLimits?: boolean;
  /** Put before this consumer's lease owner id (PostgreSQL: the instance, `<instance id>/`). */
  ownerPrefix?: string;
  /** Flows whose executions start only so many per second (ConsumeOptions.flowRates). */
  flowRates?: FlowRateGate;
}

/**
 * Jobs a claim may lease of each flow that limits its executions at once (Flow.concurrency): its
 * limit less what this consumer holds of it (running, prefetched, handed off). Flows at their
 * limit are there with 0. A flow with an execution rate is there with the starts its rate allows
 * within RATE_CLAIM_AHEAD_MS less its jobs waiting here (the lower of both with a limit too).
 * Absent: no flow limits and no rates.
 */
export interface ClaimCaps extends ReadonlyMap<string, number> {
  /**
   * Flows capped by their rate alone: their caps are this process's (its own bucket), not a
   * limit all consumers share (a PostgreSQL claim does not lower them by the others' leases).
   */
  readonly rateOnly?: ReadonlySet<string>;
}

/** A flow with an execution rate: a claim takes of its jobs what its rate starts within this long. */
const RATE_CLAIM_AHEAD_MS = 250;

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
  readonly owner: string;
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
  private readonly claimFailure: RecurringFailure;
  /** The deliveries' failed settles (LeaseDeliveryHost.repeated). */
  protected readonly repeated: RepeatedLog;
  private readonly beatFailure: RecurringFailure;
  private readonly settles = new Set<Promise<unknown>>();
  private readonly conditions = new Conditions();
  private stopping: Promise<void> | undefined;
  /** Hand-offs reserved and not yet delivered, by flow (a flow's limit counts them). */
  private readonly handoffs = new Map<string, number>();
  /**
   * Flows found at their limit by the last claim: when one of their jobs ends, a claim may find
   * their waiting jobs due (the queue may have said it had no more work for us meanwhile).
   */
  private readonly atLimit = new Set<string>();
  private capacityFreed = false;
  /** The caps of the claim in flight: what it may still lease of each limited flow (a hand-off must not take that room too). */
  private claimCaps: ClaimCaps | undefined;
  /** Fires when a flow's rate allows a start again while its jobs wait here or in the queue. */
  private readonly rateTimer = new WakeTimer(() => {
    if (this.rateClaim) {
      this.rateClaim = false;
      this.capacityFreed = true;
    }
    this.pump();
  }, true);
  /** The next rateTimer fire claims too (not only starts what waits here). */
  private rateClaim = false;

  constructor(private readonly o: LeasingConsumerOptions) {
    this.owner = `${o.ownerPrefix ?? ''}consumer-${randomUUID()}`;
    this.repeated = new RepeatedLog(o.logger);
    // Each fails at every turn while the database is down: one line, summed up, then 'works again'.
    this.claimFailure = new RecurringFailure(o.logger, `${o.label}: claim failed; retrying on the next sweep`, `${o.label}: claims work again`);
    this.beatFailure = new RecurringFailure(o.logger, `${o.label}: lease heartbeat failed (leases not renewed run out, and their jobs are delivered again)`, `${o.label}: lease heartbeats work again`);
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
  /**
   * Lease up to `limit` due jobs to this.owner (and record what the claim found); of a flow in
   * `caps`, at most its cap.
   */
  protected abstract claim(limit: number, caps: ClaimCaps | undefined): Promise<Job[]>;
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
    if (this.claimReserved > 0 || this.state !== 'active' || !(this.capacityFreed || this.hasWork())) return;
    const limit = this.free + this.prefetch;
    if (limit <= 0) return;
    if (this.prefetched.length > 0 && limit < Math.ceil(this.prefetch / 2)) return;
    this.claimReserved = limit;
    this.reserved += limit;
    this.capacityFreed = false;
    const claimedAt = Date.now();
    const caps = this.caps();
    this.claimCaps = caps;
    this.claim(limit, caps).then(
      (jobs) => {
        this.claimDone(limit);
        this.claimFailure.succeeded();
        for (const job of jobs) this.prefetched.push({ job, leasedUntil: claimedAt + this.o.leaseMs });
        if (caps !== undefined) this.noteLimits();
        this.changed();
        this.pump();
      },
      (err: unknown) => {
        this.claimDone(limit);
        this.changed();
        this.claimFailure.failed({ err });
      },
    );
  }

  /** How many jobs of each flow this consumer holds: running, prefetched, handed off. */
  private heldByFlow(): Map<string, number> {
    const held = new Map(this.handoffs);
    const add = (flowId: string) => held.set(flowId, (held.get(flowId) ?? 0) + 1);
    for (const d of this.running) add(d.job.flowId);
    for (const { job } of this.prefetched) add(job.flowId);
    return held;
  }

  /** What a claim may take of each limited flow (ClaimCaps); undefined when no flow has a limit. */
  private caps(): ClaimCaps | undefined {
    const limits = this.o.flowLimits?.();
    const rates = this.o.flowRates;
    const rated = rates === undefined || !rates.any() ? [] : [...rates.flows()];
    if ((limits === undefined || limits.size === 0) && rated.length === 0) return undefined;
    const held = this.heldByFlow();
    const caps: Map<string, number> & { rateOnly?: Set<string> } = new Map<string, number>();
    if (limits !== undefined) for (const [flowId, limit] of limits) caps.set(flowId, Math.max(0, limit - (held.get(flowId) ?? 0)));
    if (rates !== undefined && rated.length > 0) {
      const waiting = new Map<string, number>();
      for (const { job } of this.prefetched) waiting.set(job.flowId, (waiting.get(job.flowId) ?? 0) + 1);
      const rateOnly = new Set<string>();
      for (const flowId of rated) {
        // The starts its rate allows soon, less the jobs of it already waiting here for theirs.
        const waitingHere = waiting.get(flowId) ?? 0;
        const room = Math.max(0, rates.availableWithin(flowId, RATE_CLAIM_AHEAD_MS) - waitingHere);
        const cap = caps.get(flowId);
        if (cap === undefined) rateOnly.add(flowId);
        else if (cap === 0) continue; // stopped, or at its limit: the limit decides
        caps.set(flowId, cap === undefined ? room : Math.min(cap, room));
        // None soon and none waiting here: claim again once its rate allows a start (its jobs may
        // be waiting in the queue). Those waiting here start on their own wake-ups (firstStartable).
        if (room === 0 && waitingHere === 0) this.wakeForRate(rates.nextAt(flowId), true);
      }
      caps.rateOnly = rateOnly;
    }
    return caps;
  }

  /**
   * Start what waits here (and with `claim`, claim again) at `at`, when a flow's rate allows a
   * start. One timer, at the earliest time asked for; a claim asked for stays asked until it fires.
   */
  private wakeForRate(at: number, claim = false): void {
    if (this.state !== 'active') return;
    if (claim) this.rateClaim = true;
    this.rateTimer.armAt(at);
  }

  /** After a claim: which limited flows are now at their limit (atLimit). */
  private noteLimits(): void {
    this.atLimit.clear();
    const limits = this.o.flowLimits?.();
    if (limits === undefined) return;
    const held = this.heldByFlow();
    for (const [flowId, limit] of limits) if ((held.get(flowId) ?? 0) >= limit) this.atLimit.add(flowId);
  }

  /**
   * Whether one more job of the flow (a hand-off) stays within its limit, counting what the claim
   * in flight may still lease of it.
   */
  protected withinLimit(flowId: string): boolean {
    const limit = this.o.flowLimits?.().get(flowId);
    if (limit === undefined) return true;
    return (this.heldByFlow().get(flowId) ?? 0) + (this.claimCaps?.get(flowId) ?? 0) < limit;
  }

  /**
   * Take a start of the flow's rate for a hand-off (false: none left now; the job then waits in
   * the queue). A hand-off that does not happen gives it back (refundStart).
   */
  protected takeStart(flowId: string): boolean {
    return this.o.flowRates?.take(flowId) ?? true;
  }

  protected refundStart(flowId: string): void {
    this.o.flowRates?.refund(flowId);
  }

  /** A hand-off of a limited flow's job that did not happen: its room may be claimed. */
  protected handoffCancelled(flowId: string): void {
    if (this.o.flowLimits?.().has(flowId)) this.capacityFreed = true;
  }

  /** A hand-off of the flow's job reserved (+1) or settled (-1): counted against its limit. */
  protected countHandoff(flowId: string, delta: 1 | -1): void {
    const n = (this.handoffs.get(flowId) ?? 0) + delta;
    if (n > 0) this.handoffs.set(flowId, n);
    else this.handoffs.delete(flowId);
  }

  private claimDone(limit: number): void {
    this.claimReserved = 0;
    this.claimCaps = undefined;
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
    const limits = this.o.flowLimits?.();
    const rates = this.o.flowRates?.any() === true ? this.o.flowRates : undefined;
    if (limits !== undefined && limits.size > 0) this.releaseOverLimit(limits);
    while (this.prefetched.length > 0 && this.o.concurrency - this.running.size - (this.reserved - this.claimReserved) > 0) {
      // A flow whose limit was lowered after its jobs were leased: those beyond it wait here; so
      // do those of a flow whose rate allows no start now.
      const at = (limits === undefined || limits.size === 0) && rates === undefined ? 0 : this.firstStartable(limits, rates);
      if (at < 0) break;
      const { job, leasedUntil } = this.prefetched.splice(at, 1)[0]!;
      // A stopped flow's job (limit 0) goes to the runner, which parks it: no start of its rate.
      if (rates !== undefined && limits?.get(job.flowId) !== 0 && rates.has(job.flowId)) {
        rates.take(job.flowId);
        // Its last job waiting here: claim more of the flow now (the caps say how many its rate allows soon).
        if (!this.prefetched.some((w) => w.job.flowId === job.flowId)) this.capacityFreed = true;
      }
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

  /**
   * Jobs leased ahead beyond their flow's limit — lowered, or set, since the claim — are given
   * back (the latest first; no attempt spent): waiting here they would run beyond the limit in
   * every process that holds some (each counts only its own), and hold room the queue's claims
   * count for the others. The claims then decide again who runs them. (A stopped flow's, limit 0,
   * stay: the runner parks them.)
   */
  private releaseOverLimit(limits: ReadonlyMap<string, number>): void {
    let held: Map<string, number> | undefined;
    for (let i = this.prefetched.length - 1; i >= 0; i--) {
      const flowId = this.prefetched[i]!.job.flowId;
      const limit = limits.get(flowId);
      if (limit === undefined || limit === 0) continue;
      held ??= this.heldByFlow();
      const n = held.get(flowId) ?? 0;
      if (n <= limit) continue;
      held.set(flowId, n - 1);
      const { job } = this.prefetched.splice(i, 1)[0]!;
      void this.delivery(job).release();
    }
  }

  /**
   * The first prefetched job whose flow may start one more — within its limit (limit 0, a stopped
   * flow: the runner parks it) and with a start its rate allows; -1: none (a flow held back by its
   * rate has a wake-up set for when it allows one).
   */
  private firstStartable(limits: ReadonlyMap<string, number> | undefined, rates: FlowRateGate | undefined): number {
    let running: Map<string, number> | undefined;
    let heldBack: Set<string> | undefined;
    for (let i = 0; i < this.prefetched.length; i++) {
      const flowId = this.prefetched[i]!.job.flowId;
      const limit = limits?.get(flowId);
      if (limit === 0) return i;
      if (limit !== undefined) {
        if (running === undefined) {
          running = new Map();
          for (const d of this.running) running.set(d.job.flowId, (running.get(d.job.flowId) ?? 0) + 1);
        }
        if ((running.get(flowId) ?? 0) >= limit) continue;
      }
      if (rates !== undefined && (heldBack?.has(flowId) === true || rates.available(flowId) < 1)) {
        // Its later jobs wait too (a start that comes during this scan goes to the first of them).
        (heldBack ??= new Set()).add(flowId);
        this.wakeForRate(rates.nextAt(flowId));
        continue;
      }
      return i;
    }
    return -1;
  }

  stop(options?: { graceMs?: number; beforeRelease?: () => Promise<void> }): Promise<void> {
    this.stopping ??= this.shutdown(options?.graceMs ?? DEFAULT_GRACE_MS, options?.beforeRelease);
    return this.stopping;
  }

  /** Backend closing: stop at once, keep the leases (they expire: as after a crash). */
  halt(): void {
    this.state = 'stopped';
    this.rateTimer.clear();
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
    // A flow the last claim left at its limit has room again: its waiting jobs may be claimed.
    // (Kept in atLimit until the next claim says otherwise: two of its jobs may end during one claim.)
    if (this.atLimit.has(d.job.flowId) || (this.o.sharedLimits === true && (this.o.flowLimits?.().get(d.job.flowId) ?? 0) > 0)) {
      this.capacityFreed = true;
    }
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
      this.beatFailure.succeeded();
    }, (err: unknown) => {
      this.beatFailure.failed({ err });
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
    this.rateTimer.clear();
    this.state = 'stopped';
  }
}
