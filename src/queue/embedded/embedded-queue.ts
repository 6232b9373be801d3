import { E, HookdError } from '../../core/errors.js';
import { revivedOrThrow, type BulkRetryResult, type DeadLetter, type DeadLetterQuery, type DeadLetterSelection, type NewJob } from '../../core/job.js';
import { storeClosed } from '../../store/sqlite/errors.js';
import type { HandoffSlot, JobHandoff } from '../../store/sqlite/handoff.js';
import type { BackendLogger } from '../../store/sqlite/logger.js';
import type { ClaimJobsResult } from '../../store/sqlite/ops/claim-jobs.js';
import type { Reader } from '../../store/sqlite/reader.js';
import { toDeadLetter, type JobRow } from '../../store/rows.js';
import type { WriterClient } from '../../store/sqlite/writer/writer-client.js';
import type { ConsumeOptions, Consumer, JobHandler, FlowBacklog, Queue, QueueStats } from '../contract.js';
import { WakeTimer } from '../wake-timer.js';
import { EmbeddedConsumer, type ConsumerHost } from './consumer.js';

export interface EmbeddedQueueOptions {
  writer: WriterClient;
  reader: Reader;
  leaseMs: number;
  logger: BackendLogger;
}

/**
 * Safety sweep: even with nothing known to be due, look this often for jobs that became claimable
 * without this process hearing of it (leases of a crashed process, jobs queued by another process).
 */
export const SWEEP_MS = 1_000;

/**
 * The queue in the SQLite file, next to the requests. Consumers are woken in-process: right after an
 * accept commits (or the job is handed straight to a free consumer), after a nack/release/enqueue,
 * and by one timer armed at the earliest future run_at or lease expiry (at most SWEEP_MS away).
 * The timer only reads; claims (writes) happen when something is due.
 */
export class EmbeddedQueue implements Queue, JobHandoff {
  private readonly consumers: EmbeddedConsumer[] = [];
  private next = 0;
  /** Claimable jobs may exist: true until a claim gets fewer jobs than it asked for. */
  private work = true;
  private readonly timer = new WakeTimer(() => void this.tick());
  private closed = false;
  private readonly host: ConsumerHost;

  constructor(private readonly opts: EmbeddedQueueOptions) {
    this.host = {
      writer: opts.writer,
      logger: opts.logger,
      leaseMs: opts.leaseMs,
      hasWork: () => this.work,
      claimed: (result, limit) => this.claimed(result, limit),
      requeued: (runAt) => this.requeued(runAt),
      detach: (c) => this.detach(c),
    };
  }

  async enqueue(job: NewJob): Promise<void> {
    const { runAt } = await this.opts.writer.call('enqueueJob', {
      flowId: job.flowId,
      requestId: job.requestId,
      maxAttempts: job.maxAttempts,
      runAt: job.runAt ?? null,
    });
    this.requeued(runAt);
  }

  consume(handler: JobHandler, options: ConsumeOptions): Consumer {
    if (this.closed) throw storeClosed();
    if (!Number.isInteger(options.concurrency) || options.concurrency < 1) {
      throw new HookdError(E.VALIDATION_FAILED, 'consumer concurrency must be a positive integer');
    }
    const consumer = new EmbeddedConsumer(handler, options.concurrency, options.prefetch ?? 0, this.host, options.flowLimits, options.flowRates);
    this.consumers.push(consumer);
    this.work = true; // a backlog may be waiting
    consumer.pump();
    this.arm(Date.now() + SWEEP_MS);
    return consumer;
  }

  async deadLetters(query: DeadLetterQuery): Promise<DeadLetter[]> {
    const cols = 'id, flow_id, request_id, attempts, max_attempts, enqueued_at, last_error, dead_at';
    const where = [`state = 'dead'`];
    const params: unknown[] = [];
    if (query.flowId !== undefined) {
      where.push('flow_id = ?');
      params.push(query.flowId);
    }
    if (query.before !== undefined) {
      where.push('(dead_at < ? OR (dead_at = ? AND id < ?))');
      params.push(query.before.deadAt, query.before.deadAt, query.before.id);
    }
    const rows = this.opts.reader.read(
      `SELECT ${cols} FROM jobs WHERE ${where.join(' AND ')} ORDER BY dead_at DESC, id DESC LIMIT ?`,
      (s) => s.all(...params, query.limit) as JobRow[],
    );
    return rows.map(toDeadLetter);
  }

  async retryDead(jobId: string): Promise<boolean> {
    const outcome = await this.opts.writer.call('retryDeadJob', { jobId });
    if (outcome === 'revived') this.wake();
    return revivedOrThrow(outcome, jobId);
  }

  async retryDeadLetters(selection: DeadLetterSelection): Promise<BulkRetryResult> {
    const result = await this.opts.writer.call('retryDeadJobs', { flowId: selection.flowId ?? null, since: selection.since ?? null, limit: selection.limit });
    if (result.retried > 0) this.wake();
    return result;
  }

  async wakeStopped(flowId: string): Promise<void> {
    await this.opts.writer.call('wakeStoppedJobs', { flowId });
    // Always: the flow's jobs the consumers left alone while it was stopped (flowLimits 0) are due.
    this.wake();
  }

  discardDead(jobId: string): Promise<boolean> {
    return this.opts.writer.call('discardDeadJob', { jobId });
  }

  async stats(): Promise<QueueStats> {
    const now = Date.now();
    return this.opts.reader.read(
      `SELECT (SELECT count(*) FROM jobs WHERE state = 'ready' AND run_at <= ?) AS ready,
              (SELECT count(*) FROM jobs WHERE state = 'leased') AS inFlight,
              (SELECT count(*) FROM jobs WHERE state = 'ready' AND run_at > ?) AS delayed,
              (SELECT count(*) FROM jobs WHERE state = 'dead') AS dead`,
      (s) => s.get(now, now) as QueueStats,
    );
  }

  async flowBacklog(): Promise<FlowBacklog[]> {
    const now = Date.now();
    // The partial index jobs_ready_flow (flow_id, run_at) WHERE state = 'ready' answers this.
    const rows = await this.opts.reader.read(
      `SELECT flow_id AS flowId, count(*) AS ready, min(run_at) AS oldest FROM jobs WHERE state = 'ready' AND run_at <= ? GROUP BY flow_id`,
      (s) => s.all(now) as Array<{ flowId: string; ready: number; oldest: number }>,
    );
    return rows.map((r) => ({ flowId: r.flowId, ready: r.ready, oldestReadyMs: Math.max(0, now - r.oldest) }));
  }

  /** JobHandoff: a free slot of a local consumer, round-robin over consumers. */
  reserve(flowId: string): HandoffSlot | undefined {
    const n = this.consumers.length;
    for (let i = 0; i < n; i++) {
      const slot = this.consumers[(this.next + i) % n]!.reserve(flowId);
      if (slot !== undefined) {
        this.next = (this.next + i + 1) % n;
        return slot;
      }
    }
    return undefined;
  }

  /** JobHandoff: something became claimable now. */
  wake(): void {
    this.work = true;
    for (const c of this.consumers) c.pump();
  }

  /** Backend closing: halt consumers without releasing their leases, stop the timer. */
  close(): void {
    this.closed = true;
    this.timer.clear();
    for (const c of this.consumers.splice(0)) c.halt();
  }

  private requeued(runAt: number): void {
    if (runAt <= Date.now()) this.wake();
    else this.arm(runAt);
  }

  private claimed(result: ClaimJobsResult, limit: number): void {
    if (result.jobs.length >= limit) return;
    this.work = false;
    if (result.nextDueAt !== null) this.arm(result.nextDueAt);
  }

  private detach(consumer: EmbeddedConsumer): void {
    const i = this.consumers.indexOf(consumer);
    if (i >= 0) this.consumers.splice(i, 1);
    if (this.consumers.length === 0) this.timer.clear();
  }

  /** Arm the one timer for `at` (capped at one sweep from now) unless it already fires earlier. */
  private arm(at: number): void {
    if (this.closed || this.consumers.length === 0) return;
    this.timer.armAt(Math.min(at, Date.now() + SWEEP_MS));
  }

  private tick(): void {
    if (this.closed || this.consumers.length === 0) return;
    let due: number | null = null;
    try {
      due = this.opts.reader.read(
        `SELECT min(coalesce((SELECT min(run_at) FROM jobs WHERE state = 'ready'), 1e300),
                    coalesce((SELECT min(lease_until) FROM jobs WHERE state = 'leased'), 1e300))`,
        (s) => s.pluck().get() as number,
      );
      if (due >= 1e300) due = null;
    } catch (err) {
      this.opts.logger.warn({ err }, 'embedded queue: sweep failed');
    }
    const now = Date.now();
    if (due !== null && due <= now) this.wake();
    this.arm(due !== null && due > now ? due : now + SWEEP_MS);
  }
}
