import type { Job } from '../../core/job.js';
import { LeaseDelivery } from '../../queue/lease-delivery.js';
import type { PgLogger } from './logger.js';
import type { LeaseToken, NackResult, QueueSql } from './queue-sql.js';
import type { RepeatedLog } from '../../core/repeated-log.js';

/** What a delivery needs from its consumer and queue. */
export interface DeliveryHost {
  readonly sql: QueueSql;
  readonly logger: PgLogger;
  /** Failed settles, summed up per kind (LeaseDeliveryHost.repeated). */
  readonly repeated?: RepeatedLog;
  /** The job is ready again after delayMs (nack, release): wake consumers or arm the timer. */
  requeued(delayMs: number): void;
  /** Settle writes in flight; stop() waits for them. */
  track(p: Promise<unknown>): void;
  /**
   * The job's lease ended (acked, put back for a retry, dead) and the write is committed: a
   * consumer elsewhere may now have room under the flow's limit.
   */
  leaseEnded(flowId: string): void;
}

/** One delivery of a job leased from the PostgreSQL queue: the settles are statements. */
export class PgDelivery extends LeaseDelivery<NackResult> {
  constructor(
    job: Job,
    private readonly owner: string,
    private readonly host: DeliveryHost,
  ) {
    super(job, host, 'postgres queue');
  }

  private get token(): LeaseToken {
    return { jobId: this.job.id, attempts: this.job.attempts, owner: this.owner };
  }

  protected writeAck(): Promise<boolean> {
    return this.ended(this.host.sql.ack(this.token));
  }

  protected writeNack(delayMs: number, error: string, uncounted: boolean): Promise<NackResult> {
    return this.ended(this.host.sql.nack(this.token, delayMs, error, uncounted));
  }

  protected writeDeadLetter(error: string): Promise<boolean> {
    return this.ended(this.host.sql.deadLetter(this.token, error));
  }

  /** (A release needs no call: it makes the job ready, which wakes every consumer anyway.) */
  private async ended<T>(write: Promise<T>): Promise<T> {
    const result = await write;
    this.host.leaseEnded(this.job.flowId);
    return result;
  }

  protected writeRelease(): Promise<boolean> {
    return this.host.sql.release(this.token);
  }

  protected requeued(after: NackResult | 'released'): void {
    if (after === 'released') this.host.requeued(0);
    else if (after.outcome === 'retry') this.host.requeued(after.delayMs);
  }
}
