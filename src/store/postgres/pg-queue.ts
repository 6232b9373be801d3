import { E, HookdError } from '../../core/errors.js';
import { revivedOrThrow, type BulkRetryResult, type DeadLetter, type DeadLetterQuery, type DeadLetterSelection, type NewJob } from '../../core/job.js';
import type { ConsumeOptions, Consumer, JobHandler, FlowBacklog, Queue, QueueStats } from '../../queue/contract.js';
import type { PgDatabase } from './database.js';
import { storeClosed } from './errors.js';
import { WakeTimer } from '../../queue/wake-timer.js';
import { PgConsumer, type ConsumerHost } from './pg-consumer.js';
import { type InstanceJudgement, QueueSql } from './queue-sql.js';
import { WakeChannel } from './wake-channel.js';
import { RecurringFailure } from '../../core/repeated-log.js';

export interface PgQueueOptions {
  /** Lease of a claimed job before another consumer may take it (crash recovery). Default 30 s. */
  leaseMs?: number;
  /**
   * The instance registry this process beats in (membership.ts), after how long without a beat an
   * instance counts as gone, and whether this process may judge that now (InstanceJudgement): the
   * leases of a gone instance's consumers no longer hold a share of a flow's limit
   * (QueueSql.claimCapped), and the sweep ends them (QueueSql.expireLeases): their jobs are
   * delivered again. Absent: every lease holds until it runs out.
   */
  instance?: { id: string } & InstanceJudgement;
}

export const DEFAULT_LEASE_MS = 30_000;

/**
 * Safety sweep: even with nothing known to be due, look this often for jobs that became claimable
 * without this process hearing of it (expired leases, a missed notification).
 */
export const SWEEP_MS = 1_000;

/**
 * The queue in PostgreSQL, next to the requests (dispatch 'pg-queue': accept() inserts the job in
 * the request's transaction). For deployments with PostgreSQL and no RabbitMQ; any number of hookd
 * processes share it.
 *
 * - Claims: UPDATE … WHERE id IN (SELECT … ORDER BY run_at LIMIT n FOR UPDATE SKIP LOCKED), leasing
 *   jobs to a consumer until lease_until; a heartbeat extends the leases of running jobs; a lease
 *   that runs out (crashed process) makes the job ready again, or dead after its last attempt.
 * - Settling (ack, nack with delay, dead letter, release on stop) only applies while the lease is
 *   still the consumer's (job id + attempts + owner).
 * - Wake-up: consumers of this process are pumped right after an accept batch commits, after a
 *   nack/release/enqueue; other processes hear a NOTIFY (wake-channel.ts); one timer per process is
 *   armed at the earliest future run_at or lease end (at most SWEEP_MS away) as a fallback.
 */
export class PgQueue implements Queue {
  readonly sql: QueueSql;
  private readonly consumers: PgConsumer[] = [];
  /** Claimable jobs may exist: true until a claim gets fewer jobs than it asked for. */
  private work = true;
  private gen = 0;
  private readonly timer = new WakeTimer(() => void this.tick());
  private ticking = false;
  private closed = false;
  private readonly sweepFailure: RecurringFailure;
  private readonly channel: WakeChannel;
  private readonly host: ConsumerHost;
  /** Before each consumer's lease owner id: this instance's id (QueueSql.claimCapped). */
  private readonly ownerPrefix: string | undefined;

  constructor(
    private readonly db: PgDatabase,
    opts: PgQueueOptions = {},
  ) {
    this.sql = new QueueSql(db, opts.leaseMs ?? DEFAULT_LEASE_MS, opts.instance);
    this.sweepFailure = new RecurringFailure(db.logger, 'postgres queue: sweep failed (due jobs and lost leases are looked for again at the next sweep)', 'postgres queue: sweeps work again');
    this.ownerPrefix = opts.instance === undefined ? undefined : `${opts.instance.id}/`;
    this.channel = new WakeChannel(db, () => this.wake());
    this.host = {
      sql: this.sql,
      logger: db.logger,
      hasWork: () => this.work,
      generation: () => this.gen,
      claimed: (count, limit, generation) => this.claimed(count, limit, generation),
      requeued: (delayMs) => this.requeued(delayMs),
      poke: () => this.channel.poke(),
      detach: (c) => this.detach(c),
    };
  }

  /** accept() committed jobs (wired to PgRequestStore.onCommitted): wake local and remote consumers. */
  jobsCommitted(): void {
    this.wake();
    this.channel.poke();
  }

  async enqueue(job: NewJob): Promise<void> {
    if (this.closed) throw storeClosed();
    const { delayMs } = await this.sql.enqueue(job);
    this.requeued(delayMs);
  }

  consume(handler: JobHandler, options: ConsumeOptions): Consumer {
    if (this.closed) throw storeClosed();
    if (!Number.isInteger(options.concurrency) || options.concurrency < 1) {
      throw new HookdError(E.VALIDATION_FAILED, 'consumer concurrency must be a positive integer');
    }
    const consumer = new PgConsumer(handler, options.concurrency, options.prefetch ?? 0, this.host, options.flowLimits, this.ownerPrefix, options.flowRates);
    this.consumers.push(consumer);
    this.channel.listen();
    this.work = true; // a backlog may be waiting
    this.gen++;
    consumer.pump();
    this.arm(SWEEP_MS);
    return consumer;
  }

  deadLetters(query: DeadLetterQuery): Promise<DeadLetter[]> {
    return this.sql.deadLetters(query);
  }

  async retryDead(jobId: string): Promise<boolean> {
    const outcome = await this.sql.retryDead(jobId);
    if (outcome === 'revived') this.requeued(0);
    return revivedOrThrow(outcome, jobId);
  }

  async retryDeadLetters(selection: DeadLetterSelection): Promise<BulkRetryResult> {
    const result = await this.sql.retryDeadLetters(selection);
    if (result.retried > 0) this.requeued(0);
    return result;
  }

  async wakeStopped(flowId: string): Promise<void> {
    await this.sql.wakeStopped(flowId);
    // Always: the flow's jobs the consumers left alone while it was stopped (flowLimits 0) are due.
    this.requeued(0);
  }

  discardDead(jobId: string): Promise<boolean> {
    return this.sql.discardDead(jobId);
  }

  stats(): Promise<QueueStats> {
    return this.sql.stats();
  }

  flowBacklog(): Promise<FlowBacklog[]> {
    return this.sql.flowBacklog();
  }

  /** Something became claimable now: pump this process's consumers. */
  wake(): void {
    this.work = true;
    this.gen++;
    for (const c of this.consumers) c.pump();
  }

  /** Backend closing: halt consumers without releasing their leases, stop timer and LISTEN. */
  async close(): Promise<void> {
    this.closed = true;
    this.timer.clear();
    for (const c of this.consumers.splice(0)) c.halt();
    await Promise.all([this.channel.close(), this.sql.drain()]);
  }

  private requeued(delayMs: number): void {
    if (delayMs <= 0) {
      this.wake();
      this.channel.poke();
    } else {
      this.arm(delayMs);
    }
  }

  private claimed(count: number, limit: number, generation: number): void {
    // Delayed jobs of this process armed the timer when they were requeued; the sweep finds the rest.
    if (count < limit && generation === this.gen) this.work = false;
  }

  private detach(consumer: PgConsumer): void {
    const i = this.consumers.indexOf(consumer);
    if (i >= 0) this.consumers.splice(i, 1);
    if (this.consumers.length === 0) this.timer.clear();
  }

  /** Arm the one timer delayMs from now (capped at one sweep) unless it already fires earlier. */
  private arm(delayMs: number): void {
    if (this.closed || this.consumers.length === 0) return;
    this.timer.armAt(Date.now() + Math.min(Math.max(0, delayMs), SWEEP_MS));
  }

  /** Timer: expire lost leases, wake consumers if a job is due, re-arm for the next one. */
  private async tick(): Promise<void> {
    if (this.closed || this.consumers.length === 0 || this.ticking) return;
    this.ticking = true;
    let next = SWEEP_MS;
    try {
      let due = await this.sql.due();
      if ((due.nextLeaseEnd !== null && due.nextLeaseEnd <= due.now) || due.goneLeases) {
        await this.sql.expireLeases();
        due = await this.sql.due();
      }
      if (due.nextRunAt !== null && due.nextRunAt <= due.now) this.wake();
      for (const at of [due.nextRunAt, due.nextLeaseEnd]) {
        if (at !== null && at > due.now) next = Math.min(next, at - due.now);
      }
      this.sweepFailure.succeeded();
    } catch (err) {
      if (!this.closed) this.sweepFailure.failed({ err });
    } finally {
      this.ticking = false;
    }
    this.arm(next);
  }
}
