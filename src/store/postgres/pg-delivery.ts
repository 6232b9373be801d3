import type { Job } from '../../core/job.js';
import type { Delivery } from '../../queue/contract.js';
import type { PgLogger } from './logger.js';
import type { LeaseToken, QueueSql } from './queue-sql.js';

/** What a delivery needs from its consumer and queue. */
export interface DeliveryHost {
  readonly sql: QueueSql;
  readonly logger: PgLogger;
  /** The job is ready again after delayMs (nack, release): wake consumers or arm the timer. */
  requeued(delayMs: number): void;
  /** Settle writes in flight; stop() waits for them. */
  track(p: Promise<unknown>): void;
}

/** A handler that throws is retried after this delay (Queue contract). */
export const THROW_RETRY_DELAY_MS = 1_000;

type State = 'open' | 'settling' | 'settled' | 'released';

/**
 * One delivery of a leased job. The first of ack / nack / deadLetter / release wins; later calls are
 * no-ops. A settle whose write fails (503) leaves the delivery open: the caller may retry, and if
 * nobody does, the lease expires and the job is delivered again.
 */
export class PgDelivery implements Delivery {
  private state: State = 'open';

  constructor(
    readonly job: Job,
    private readonly owner: string,
    private readonly host: DeliveryHost,
  ) {}

  private get token(): LeaseToken {
    return { jobId: this.job.id, attempts: this.job.attempts, owner: this.owner };
  }

  async ack(): Promise<void> {
    const acked = await this.settle(() => this.host.sql.ack(this.token), true);
    if (!acked) this.lost('ack');
  }

  async nack(options: { delayMs: number; error: string }): Promise<'retry' | 'dead'> {
    const r = await this.settle(() => this.host.sql.nack(this.token, options.delayMs, options.error), undefined);
    if (r === undefined) return 'retry'; // already settled
    if (r.outcome === 'dead') return 'dead';
    if (r.outcome === 'lost') this.lost('nack');
    else this.host.requeued(r.delayMs);
    return 'retry';
  }

  async deadLetter(error: string): Promise<void> {
    const buried = await this.settle(() => this.host.sql.deadLetter(this.token, error), true);
    if (!buried) this.lost('deadLetter');
  }

  /** Shutdown: give the job back without spending an attempt. Never throws. */
  async release(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'released';
    const p = this.host.sql.release(this.token);
    this.host.track(p);
    try {
      if (await p) this.host.requeued(0);
    } catch (err) {
      this.host.logger.warn({ err, jobId: this.job.id }, 'postgres queue: release failed; the lease will expire');
    }
  }

  /** The handler returned without settling: done. */
  autoAck(): void {
    if (this.state === 'open') this.ack().catch((err: unknown) => this.autoFailed(err));
  }

  /** The handler threw without settling: retry later. */
  autoNack(cause: unknown): void {
    if (this.state !== 'open') return;
    const error = cause instanceof Error ? cause.message : String(cause);
    this.nack({ delayMs: THROW_RETRY_DELAY_MS, error }).catch((err: unknown) => this.autoFailed(err));
  }

  private async settle<T>(write: () => Promise<T>, ifSettled: T): Promise<T> {
    if (this.state !== 'open') return ifSettled;
    this.state = 'settling';
    const p = write();
    this.host.track(p);
    try {
      const v = await p;
      this.state = 'settled';
      return v;
    } catch (err) {
      this.state = 'open';
      throw err;
    }
  }

  private lost(what: string): void {
    this.host.logger.warn(
      { jobId: this.job.id, attempts: this.job.attempts },
      `postgres queue: ${what} ignored, the lease was lost (the job is or will be delivered again)`,
    );
  }

  private autoFailed(err: unknown): void {
    this.host.logger.warn({ err, jobId: this.job.id }, 'postgres queue: settling failed; the lease will expire');
  }
}
