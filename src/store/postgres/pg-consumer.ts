import { randomUUID } from 'node:crypto';
import type { Job } from '../../core/job.js';
import type { Consumer, JobHandler } from '../../queue/contract.js';
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
  detach(consumer: PgConsumer): void;
}

export const DEFAULT_GRACE_MS = 10_000;

/**
 * Runs up to `concurrency` handlers; a claim in flight reserves the slots it asks for, so the
 * concurrency holds. A heartbeat extends the leases of running jobs every leaseMs / 3.
 */
export class PgConsumer implements Consumer {
  /** lease_owner of this consumer's jobs; unique per consumer instance. */
  readonly owner = `consumer-${randomUUID()}`;
  private readonly running = new Set<PgDelivery>();
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
      sql: host.sql,
      logger: host.logger,
      requeued: (delayMs) => host.requeued(delayMs),
      track: (p) => {
        this.settles.add(p);
        const forget = (): void => {
          this.settles.delete(p);
          this.changed();
        };
        p.then(forget, forget);
      },
    };
    this.heartbeat = setInterval(() => this.beat(), Math.max(10, Math.floor(host.sql.leaseMs / 3)));
    this.heartbeat.unref();
  }

  get inFlight(): number {
    return this.running.size;
  }

  private get free(): number {
    return this.state === 'active' ? this.concurrency - this.running.size - this.reserved : 0;
  }

  /** Claim due jobs for the free slots, if the queue may have some. */
  pump(): void {
    if (this.claiming || this.free <= 0 || !this.host.hasWork()) return;
    const limit = this.free;
    const generation = this.host.generation();
    this.claiming = true;
    this.reserved += limit;
    this.host.sql.claim(this.owner, limit).then(
      (rows: JobRow[]) => {
        this.claiming = false;
        this.reserved -= limit;
        this.host.claimed(rows.length, limit, generation);
        for (const row of rows) this.start(toJob(row));
        this.changed();
        this.pump();
      },
      (err: unknown) => {
        this.claiming = false;
        this.reserved -= limit;
        this.changed();
        this.host.logger.warn({ err }, 'postgres queue: claim failed; retrying on the next sweep');
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
    const d = new PgDelivery(job, this.owner, this.deliveryHost);
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

  private finished(d: PgDelivery): void {
    this.running.delete(d);
    this.changed();
  }

  private beat(): void {
    if (this.running.size === 0 || this.state === 'stopped') return;
    const ids = [...this.running].map((d) => d.job.id);
    this.host.sql.extendLeases(this.owner, ids).catch((err: unknown) => {
      this.host.logger.warn({ err }, 'postgres queue: lease heartbeat failed');
    });
  }

  private async shutdown(graceMs: number): Promise<void> {
    if (this.state === 'active') this.state = 'stopping';
    this.host.detach(this);
    this.changed();
    // A claim in flight lands first (start() releases its jobs at once).
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
