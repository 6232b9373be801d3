import type { Job } from '../../core/job.js';
import type { BackendLogger } from '../../store/sqlite/logger.js';
import type { LeaseToken } from '../../store/sqlite/ops/lease-token.js';
import type { NackJobResult } from '../../store/sqlite/ops/nack-job.js';
import type { WriterClient } from '../../store/sqlite/writer/writer-client.js';
import { LeaseDelivery } from '../lease-delivery.js';
import type { RepeatedLog } from '../../core/repeated-log.js';

/** What a delivery needs from its consumer and queue. */
export interface DeliveryHost {
  readonly writer: WriterClient;
  readonly logger: BackendLogger;
  /** Failed settles, summed up per kind (LeaseDeliveryHost.repeated). */
  readonly repeated?: RepeatedLog;
  /** The job is ready again at runAt (nack, release): wake consumers or arm the timer. */
  requeued(runAt: number): void;
  /** Settle writes in flight; stop() waits for them. */
  track(p: Promise<unknown>): void;
}

/** One delivery of a job leased from the embedded queue: the settles are writer-thread ops. */
export class LeasedDelivery extends LeaseDelivery<NackJobResult> {
  constructor(
    job: Job,
    private readonly owner: string,
    private readonly host: DeliveryHost,
  ) {
    super(job, host, 'embedded queue');
  }

  private get token(): LeaseToken {
    return { jobId: this.job.id, attempts: this.job.attempts, owner: this.owner };
  }

  protected writeAck(): Promise<boolean> {
    return this.host.writer.call('ackJob', this.token);
  }

  protected writeNack(delayMs: number, error: string, uncounted: boolean): Promise<NackJobResult> {
    return this.host.writer.call('nackJob', { ...this.token, delayMs, error, ...(uncounted ? { uncounted } : {}) });
  }

  protected writeDeadLetter(error: string): Promise<boolean> {
    return this.host.writer.call('deadLetterJob', { ...this.token, error });
  }

  protected writeRelease(): Promise<boolean> {
    return this.host.writer.call('releaseJob', this.token);
  }

  protected requeued(after: NackJobResult | 'released'): void {
    if (after === 'released') this.host.requeued(Date.now());
    else if (after.outcome === 'retry') this.host.requeued(after.runAt);
  }
}
