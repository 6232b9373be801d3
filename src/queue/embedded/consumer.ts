import { randomUUID } from 'node:crypto';
import type { Job } from '../../core/job.js';
import type { HandoffSlot } from '../../store/sqlite/handoff.js';
import type { BackendLogger } from '../../store/sqlite/logger.js';
import type { ClaimJobsResult } from '../../store/sqlite/ops/claim-jobs.js';
import { toJob } from '../../store/rows.js';
import type { WriterClient } from '../../store/sqlite/writer/writer-client.js';
import type { Consumer, JobHandler } from '../contract.js';
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

export const DEFAULT_GRACE_MS = 10_000;

/**
 * Runs up to `concurrency` handlers. Slots are taken by running handlers and by reservations: a
 * claim in flight reserves what it asks for, an accept hand-off reserves one slot when its write
 * batch is formed. So concurrency holds even though jobs arrive by two paths.
 */
export class EmbeddedConsumer implements Consumer {
  /** lease_owner of this consumer's jobs; unique per consumer instance. */
  readonly owner = `consumer-${randomUUID()}`;
  private readonly running = new Set<LeasedDelivery>();
  private reserved = 0;
  private claiming = false;
  private state: 'active' | 'stopping' | 'stopped' = 'active';
  private readonly heartbeat: NodeJS.Timeout;
  private readonly settles = new Set<Promise<unknown>>();
  private waiters: Array<() => boolean> = [];
  private stopping: Promise<void> | undefined;
  private readonly deliveryHost: DeliveryHost;

  constructor(
    private readonly handler: JobHandler,
    private readonly concurrency: number,
    private readonly host: ConsumerHost,
  ) {
    this.deliveryHost = {
      writer: host.writer,
      logger: host.logger,
      requeued: (runAt) => host.requeued(runAt),
      track: (p) => {
        this.settles.add(p);
        const forget = (): void => {
          this.settles.delete(p);
          this.changed();
        };
        p.then(forget, forget);
      },
    };
    this.heartbeat = setInterval(() => this.beat(), Math.max(10, Math.floor(host.leaseMs / 3)));
    this.heartbeat.unref();
  }

  get inFlight(): number {
    return this.running.size;
  }

  private get free(): number {
    return this.state === 'active' ? this.concurrency - this.running.size - this.reserved : 0;
  }

  /** Hand-off: reserve one slot for a job about to be committed leased to this consumer. */
  reserve(): HandoffSlot | undefined {
    if (this.free <= 0) return undefined;
    this.reserved++;
    let used = false;
    return {
      owner: this.owner,
      deliver: (job) => {
        if (used) return;
        used = true;
        this.reserved--;
        this.start(job);
        this.changed();
      },
      cancel: () => {
        if (used) return;
        used = true;
        this.reserved--;
        this.changed();
        this.pump();
      },
    };
  }

  /** Claim due jobs for the free slots, if the queue may have some. */
  pump(): void {
    if (this.claiming || this.free <= 0 || !this.host.hasWork()) return;
    const limit = this.free;
    this.claiming = true;
    this.reserved += limit;
    this.host.writer.call('claimJobs', { owner: this.owner, limit }).then(
      (result) => {
        this.claiming = false;
        this.reserved -= limit;
        this.host.claimed(result, limit);
        for (const row of result.jobs) this.start(toJob(row));
        this.changed();
        this.pump();
      },
      (err: unknown) => {
        this.claiming = false;
        this.reserved -= limit;
        this.changed();
        this.host.logger.warn({ err }, 'embedded queue: claim failed; retrying on the next sweep');
      },
    );
  }

  stop(options?: { graceMs?: number }): Promise<void> {
    this.stopping ??= this.shutdown(options?.graceMs ?? DEFAULT_GRACE_MS);
    return this.stopping;
  }

  /** Backend closing: stop at once, keep the leases (they expire: as after a crash). */
  halt(): void {
    this.state = 'stopped';
    clearInterval(this.heartbeat);
    this.changed();
  }

  private start(job: Job): void {
    const d = new LeasedDelivery(job, this.owner, this.deliveryHost);
    if (this.state !== 'active') {
      void d.release();
      return;
    }
    this.running.add(d);
    let done: Promise<void>;
    try {
      done = Promise.resolve(this.handler(d));
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

  private finished(d: LeasedDelivery): void {
    this.running.delete(d);
    this.changed();
  }

  private beat(): void {
    if (this.running.size === 0 || this.state === 'stopped') return;
    this.host.writer.call('extendLeases', { owner: this.owner }).catch((err: unknown) => {
      this.host.logger.warn({ err }, 'embedded queue: lease heartbeat failed');
    });
  }

  private async shutdown(graceMs: number): Promise<void> {
    if (this.state === 'active') this.state = 'stopping';
    this.host.detach(this);
    this.changed();
    // Claims and hand-offs in flight land first (start() releases them at once).
    await this.until(() => this.reserved === 0);
    if (graceMs > 0) await this.until(() => this.running.size === 0, graceMs);
    await Promise.all([...this.running].map((d) => d.release()));
    await this.until(() => this.settles.size === 0);
    clearInterval(this.heartbeat);
    this.state = 'stopped';
  }

  private until(cond: () => boolean, timeoutMs?: number): Promise<void> {
    if (cond()) return Promise.resolve();
    return new Promise<void>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const check = (): boolean => {
        if (!cond()) return false;
        if (timer) clearTimeout(timer);
        resolve();
        return true;
      };
      this.waiters.push(check);
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== check);
          resolve();
        }, timeoutMs);
      }
    });
  }

  private changed(): void {
    if (this.waiters.length > 0) this.waiters = this.waiters.filter((w) => !w());
  }
}
