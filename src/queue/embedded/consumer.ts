import type { Job } from '../../core/job.js';
import type { HandoffSlot } from '../../store/sqlite/handoff.js';
import type { BackendLogger } from '../../store/sqlite/logger.js';
import type { ClaimJobsResult } from '../../store/sqlite/ops/claim-jobs.js';
import { toJob } from '../../store/rows.js';
import type { WriterClient } from '../../store/sqlite/writer/writer-client.js';
import type { FlowRateGate, JobHandler } from '../contract.js';
import { type ClaimCaps, LeasingConsumer } from '../leasing-consumer.js';
import { LeasedDelivery, type DeliveryHost } from './delivery.js';

/** What a consumer needs from its queue. */
export interface ConsumerHost {
  readonly writer: WriterClient;
  readonly logger: BackendLogger;
  readonly leaseMs: number;
  /** False after a claim found fewer due jobs than it asked for, until something new is queued. */
  hasWork(): boolean;
  claimed(result: ClaimJobsResult, limit: number): void;
  requeued(runAt: number): void;
  detach(consumer: EmbeddedConsumer): void;
}

/**
 * A consumer of the embedded queue. Besides claims, jobs arrive by hand-off: accept() reserves a
 * slot when its write batch is formed and the job is inserted already leased to this consumer, so
 * it starts right after the commit without a claim round trip (reserve()).
 */
export class EmbeddedConsumer extends LeasingConsumer<LeasedDelivery> {
  private readonly deliveryHost: DeliveryHost;

  constructor(
    handler: JobHandler,
    concurrency: number,
    prefetch: number,
    private readonly host: ConsumerHost,
    flowLimits?: () => ReadonlyMap<string, number>,
    flowRates?: FlowRateGate,
  ) {
    super({ handler, concurrency, leaseMs: host.leaseMs, logger: host.logger, label: 'embedded queue', prefetch, ...(flowLimits ? { flowLimits } : {}), ...(flowRates ? { flowRates } : {}) });
    this.deliveryHost = {
      writer: host.writer,
      logger: host.logger,
      repeated: this.repeated,
      requeued: (runAt) => host.requeued(runAt),
      track: this.track,
    };
  }

  /**
   * Hand-off: reserve one slot for a job of the flow about to be committed leased to this consumer
   * (not when the flow is at its limit here: the job then waits in the queue).
   */
  reserve(flowId: string): HandoffSlot | undefined {
    if (this.free <= 0 || !this.withinLimit(flowId) || !this.takeStart(flowId)) return undefined;
    this.reserved++;
    this.countHandoff(flowId, 1);
    let used = false;
    return {
      owner: this.owner,
      deliver: (job) => {
        if (used) return;
        used = true;
        this.reserved--;
        this.countHandoff(flowId, -1);
        this.start(job);
        this.changed();
      },
      cancel: () => {
        if (used) return;
        used = true;
        this.reserved--;
        this.countHandoff(flowId, -1);
        this.refundStart(flowId);
        this.handoffCancelled(flowId);
        this.changed();
        this.pump();
      },
    };
  }

  protected hasWork(): boolean {
    return this.host.hasWork();
  }

  protected async claim(limit: number, caps: ClaimCaps | undefined): Promise<Job[]> {
    const result = await this.host.writer.call('claimJobs', { owner: this.owner, limit, ...(caps ? { caps: Object.fromEntries(caps) } : {}) });
    this.host.claimed(result, limit);
    return result.jobs.map(toJob);
  }

  protected delivery(job: Job): LeasedDelivery {
    return new LeasedDelivery(job, this.owner, this.deliveryHost);
  }

  /** The leases of the jobs this consumer holds (running and prefetched), by id. */
  protected extendLeases(held: readonly Job[]): Promise<readonly string[]> {
    return this.host.writer.call('extendLeases', { owner: this.owner, jobIds: held.map((j) => j.id) });
  }

  protected detach(): void {
    this.host.detach(this);
  }
}
