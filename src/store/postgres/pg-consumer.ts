import type { Job } from '../../core/job.js';
import type { FlowRateGate, JobHandler } from '../../queue/contract.js';
import { type ClaimCaps, LeasingConsumer } from '../../queue/leasing-consumer.js';
import type { PgLogger } from './logger.js';
import { PgDelivery, type DeliveryHost } from './pg-delivery.js';
import type { QueueSql } from './queue-sql.js';
import { toJob, type JobRow } from './rows.js';

/** What a consumer needs from its queue. */
export interface ConsumerHost {
  readonly sql: QueueSql;
  readonly logger: PgLogger;
  /** False after a claim found fewer due jobs than it asked for, until something new is queued. */
  hasWork(): boolean;
  /** Bumped by every wake-up: a short claim that started before one must not clear hasWork. */
  generation(): number;
  claimed(count: number, limit: number, generation: number): void;
  requeued(delayMs: number): void;
  /** Wake the consumers of other processes (NOTIFY). */
  poke(): void;
  detach(consumer: PgConsumer): void;
}

/** A consumer of the PostgreSQL queue (claims with FOR UPDATE SKIP LOCKED; see leasing-consumer.ts). */
export class PgConsumer extends LeasingConsumer<PgDelivery> {
  private readonly deliveryHost: DeliveryHost;

  constructor(
    handler: JobHandler,
    concurrency: number,
    prefetch: number,
    private readonly host: ConsumerHost,
    flowLimits?: () => ReadonlyMap<string, number>,
    ownerPrefix?: string,
    flowRates?: FlowRateGate,
  ) {
    super({
      handler,
      concurrency,
      leaseMs: host.sql.leaseMs,
      logger: host.logger,
      label: 'postgres queue',
      prefetch,
      ...(flowLimits ? { flowLimits, sharedLimits: true } : {}),
      ...(ownerPrefix !== undefined ? { ownerPrefix } : {}),
      ...(flowRates ? { flowRates } : {}),
    });
    this.deliveryHost = {
      sql: host.sql,
      logger: host.logger,
      repeated: this.repeated,
      requeued: (delayMs) => host.requeued(delayMs),
      track: this.track,
      // A limit holds across processes (QueueSql.claimCapped): one that waits for room hears of it.
      leaseEnded: (flowId) => {
        if ((flowLimits?.().get(flowId) ?? 0) > 0) host.poke();
      },
    };
  }

  protected hasWork(): boolean {
    return this.host.hasWork();
  }

  protected async claim(limit: number, caps: ClaimCaps | undefined): Promise<Job[]> {
    const generation = this.host.generation();
    const rows: JobRow[] = await this.host.sql.claim(this.owner, limit, caps);
    this.host.claimed(rows.length, limit, generation);
    return rows.map(toJob);
  }

  protected delivery(job: Job): PgDelivery {
    return new PgDelivery(job, this.owner, this.deliveryHost);
  }

  protected extendLeases(held: readonly Job[]): Promise<readonly string[]> {
    return this.host.sql.extendLeases(
      this.owner,
      held.map((j) => j.id),
    );
  }

  protected detach(): void {
    this.host.detach(this);
  }
}
