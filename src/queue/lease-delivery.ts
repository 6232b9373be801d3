import type { Job } from '../core/job.js';
import type { RepeatedLog } from '../core/repeated-log.js';
import { THROW_RETRY_DELAY_MS, type Delivery } from './contract.js';

/** What a leased delivery needs from its consumer. */
export interface LeaseDeliveryHost {
  readonly logger: { warn(obj: object, msg: string): void };
  /**
   * Where failed settles are logged when given: while the database is down they fail for every
   * job at every try, and are summed up per kind instead of one line each.
   */
  readonly repeated?: RepeatedLog;
  /** Settle writes in flight; stop() waits for them. */
  track(p: Promise<unknown>): void;
}

/** The result of a nack write: retried (the backend says when), dead-lettered, or the lease was lost. */
export type NackWrite = { outcome: 'retry' } | { outcome: 'dead' } | { outcome: 'lost' };

type State = 'open' | 'settling' | 'settled' | 'releasing' | 'released';

/**
 * One delivery of a job leased from a database queue (embedded SQLite, PostgreSQL). The first of
 * ack / nack / deadLetter / release wins; later calls are no-ops. A settle whose write fails (503)
 * leaves the delivery open: the caller may retry, and if nobody does, the lease expires and the job
 * is delivered again. Subclasses supply the writes (each is false / 'lost' when the lease was lost)
 * and what to wake once a job is ready again.
 */
export abstract class LeaseDelivery<N extends NackWrite> implements Delivery {
  private state: State = 'open';
  /** Shutdown is giving this job back: a settle that fails from now on must not reopen it. */
  private held = false;

  constructor(
    readonly job: Job,
    private readonly consumer: LeaseDeliveryHost,
    /** Log prefix: 'embedded queue', 'postgres queue'. */
    private readonly label: string,
  ) {}

  protected abstract writeAck(): Promise<boolean>;
  /** `uncounted`: the delivery gives its attempt back, and the job is never dead-lettered by it. */
  protected abstract writeNack(delayMs: number, error: string, uncounted: boolean): Promise<N>;
  protected abstract writeDeadLetter(error: string): Promise<boolean>;
  protected abstract writeRelease(): Promise<boolean>;
  /** The job is ready again: after a nack that retries it (with the write's result), or a release. */
  protected abstract requeued(after: N | 'released'): void;

  async ack(): Promise<void> {
    const acked = await this.settle(() => this.writeAck(), true);
    if (!acked) this.lost('ack');
  }

  async nack(options: { delayMs: number; error: string; uncounted?: boolean }): Promise<'retry' | 'dead'> {
    const r = await this.settle(() => this.writeNack(options.delayMs, options.error, options.uncounted === true), undefined);
    if (r === undefined) return 'retry'; // already settled
    if (r.outcome === 'dead') return 'dead';
    if (r.outcome === 'lost') this.lost('nack');
    else this.requeued(r);
    return 'retry';
  }

  async deadLetter(error: string): Promise<void> {
    const buried = await this.settle(() => this.writeDeadLetter(error), true);
    if (!buried) this.lost('deadLetter');
  }

  /**
   * Ready again now, the delivery not counted as an attempt (a release). A failed write leaves the
   * delivery open (false): the heartbeat keeps extending its lease while the caller holds it, so a
   * short outage of the database does not cost the job an attempt by lease expiry. Never throws.
   */
  async requeue(_error: string): Promise<boolean> {
    if (this.state !== 'open') return true;
    this.state = 'settling';
    const p = this.writeRelease();
    this.consumer.track(p);
    let released: boolean;
    try {
      released = await p;
    } catch (err) {
      this.state = this.reopened();
      this.warn('give-back', { err, jobId: this.job.id }, `${this.label}: giving the job back failed; it stays held`);
      return false;
    }
    this.state = 'released';
    if (released) this.requeued('released');
    else this.lost('requeue');
    return true;
  }

  /** Shutdown, before release(): settles are no-ops from now on (the handler is being aborted). */
  holdForRelease(): void {
    this.held = true;
    if (this.state === 'open') this.state = 'releasing';
  }

  /** Shutdown: give the job back without spending an attempt. Never throws. */
  async release(): Promise<void> {
    if (this.state !== 'open' && this.state !== 'releasing') return;
    this.state = 'released';
    const p = this.writeRelease();
    this.consumer.track(p);
    try {
      if (await p) this.requeued('released');
    } catch (err) {
      this.warn('release', { err, jobId: this.job.id }, `${this.label}: release failed; the lease will expire`);
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
    this.consumer.track(p);
    try {
      const v = await p;
      this.state = 'settled';
      return v;
    } catch (err) {
      this.state = this.reopened();
      throw err;
    }
  }

  /**
   * The state after a failed settle write: open again, for the caller to retry — unless shutdown
   * holds the job for its release, when an open delivery would be acked by the handler's return.
   */
  private reopened(): State {
    return this.held ? 'releasing' : 'open';
  }

  private lost(what: string): void {
    this.consumer.logger.warn(
      { jobId: this.job.id, attempts: this.job.attempts },
      `${this.label}: ${what} ignored, the lease was lost (the job is or will be delivered again)`,
    );
  }

  private autoFailed(err: unknown): void {
    this.warn('settle', { err, jobId: this.job.id }, `${this.label}: settling failed; the lease will expire`);
  }

  private warn(kind: string, obj: object, msg: string): void {
    const repeated = this.consumer.repeated;
    if (repeated !== undefined) repeated.warn(`${this.label}\0${kind}`, obj, msg);
    else this.consumer.logger.warn(obj, msg);
  }
}
