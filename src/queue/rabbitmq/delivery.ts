import type { Channel } from 'rabbitmq-client';
import type { Job } from '../../core/job.js';
import { THROW_RETRY_DELAY_MS, type Delivery } from '../contract.js';
import { toJob, type JobMessage } from './job-message.js';
import type { QueueLogger } from './logger.js';

/** What a delivery needs from its consumer and queue. */
export interface DeliveryHost {
  readonly logger: QueueLogger;
  /** Confirmed publish of the job's next attempt, due in delayMs. */
  publishRetry(job: JobMessage, delayMs: number): Promise<void>;
  /** Confirmed publish to the dead letters. */
  publishDead(job: JobMessage): Promise<void>;
  /** Settle work in flight; stop() waits for it before closing the channel. */
  track(p: Promise<unknown>): void;
  /** The message was acked (or its channel is gone): no longer unacked on this consumer. */
  settled(d: RabbitDelivery): void;
  /** Ack the delivery (batched per channel); false when its channel is already gone. */
  ack(ch: Channel, deliveryTag: number): boolean;
  /** The delivery was handed back with a nack: acks of its channel must not cover it. */
  nacked(ch: Channel, deliveryTag: number): void;
}


type State = 'open' | 'settling' | 'settled' | 'released';

/**
 * One delivery of a job message, unacked on the consumer's channel until settled. The first of
 * ack / nack / deadLetter / release wins; later calls are no-ops. nack and deadLetter publish the
 * job's next form (retry or dead letter) with a confirm before acking the original, so a crash in
 * between duplicates a job but never loses one. A settle whose publish fails (503) leaves the
 * delivery open for the caller to retry; after the handler, what is still open is settled as the
 * contract says (returned: ack, threw: nack), and an automatic settle that fails hands the message
 * back to the broker at once. When the channel is already gone, the broker has requeued the
 * message: settles are ignored (logged) and the job is delivered again.
 */
export class RabbitDelivery implements Delivery {
  readonly job: Job;
  private state: State = 'open';

  constructor(
    private readonly message: JobMessage,
    private readonly ch: Channel,
    private readonly deliveryTag: number,
    private readonly host: DeliveryHost,
  ) {
    this.job = toJob(message);
  }

  get channel(): Channel {
    return this.ch;
  }

  async ack(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'settled';
    this.basicAck('ack');
  }

  async nack(options: { delayMs: number; error: string }): Promise<'retry' | 'dead'> {
    if (!this.settleable('nack')) return 'retry';
    const dead = this.job.attempts >= this.job.maxAttempts;
    await this.settle(() =>
      dead
        ? this.host.publishDead({ ...this.message, runAt: undefined, lastError: options.error, deadAt: Date.now() })
        : this.host.publishRetry(
            { ...this.message, runAt: undefined, attempts: this.job.attempts + 1, lastError: options.error },
            Math.max(0, options.delayMs),
          ),
    );
    return dead ? 'dead' : 'retry';
  }

  async deadLetter(error: string): Promise<void> {
    if (!this.settleable('deadLetter')) return;
    await this.settle(() =>
      this.host.publishDead({ ...this.message, runAt: undefined, lastError: error, deadAt: Date.now() }),
    );
  }

  /**
   * Back into the work queue with the same attempts (and the error as lastError). If that publish
   * fails, the message is handed back to the broker instead (nack-requeue): either way it is never
   * acked without a copy, and never throws: always given back (true).
   */
  async requeue(error: string): Promise<boolean> {
    if (!this.settleable('requeue')) return true;
    try {
      await this.settle(() => this.host.publishRetry({ ...this.message, runAt: undefined, lastError: error }, 0));
    } catch (err) {
      this.autoFailed(err);
    }
    return true;
  }

  /** Park a job that is not due yet (runAt beyond the largest delay level) until runAt. */
  park(runAt: number): void {
    if (this.state !== 'open') return;
    this.settle(() => this.host.publishRetry({ ...this.message, runAt }, Math.max(0, runAt - Date.now()))).catch(
      (err: unknown) => this.autoFailed(err),
    );
  }

  /**
   * Shutdown: give the job back without spending an attempt. The message itself is requeued by the
   * consumer (nack-requeue / channel close); this only makes later settles no-ops.
   */
  release(): void {
    if (this.state === 'open') this.state = 'released';
  }

  /** The handler returned without settling: done. */
  autoAck(): void {
    if (this.state === 'open') void this.ack();
  }

  /** The handler threw without settling: retry later. */
  autoNack(cause: unknown): void {
    if (this.state !== 'open') return;
    const error = cause instanceof Error ? cause.message : String(cause);
    this.nack({ delayMs: THROW_RETRY_DELAY_MS, error }).catch((err: unknown) => this.autoFailed(err));
  }

  /**
   * Whether a settle can still go ahead: not when one already happened, nor when the channel is
   * gone (the broker has requeued the message; the settle is logged and ignored).
   */
  private settleable(what: string): boolean {
    if (this.state !== 'open') return false;
    if (this.ch.active) return true;
    this.state = 'settled';
    this.lost(what);
    return false;
  }

  private async settle(publish: () => Promise<void>): Promise<void> {
    this.state = 'settling';
    const p = publish();
    this.host.track(p);
    try {
      await p;
    } catch (err) {
      this.state = 'open';
      throw err;
    }
    this.state = 'settled';
    this.basicAck('settle');
  }

  private basicAck(what: string): void {
    if (!this.ch.active) {
      this.lost(what);
      return;
    }
    if (!this.host.ack(this.ch, this.deliveryTag)) {
      this.lost(what);
      return;
    }
    this.host.settled(this);
  }

  private lost(what: string): void {
    this.host.settled(this);
    this.host.logger.warn(
      { jobId: this.job.id, attempts: this.job.attempts },
      `rabbitmq queue: ${what} could not be acked, the channel was lost (the job is or will be delivered again)`,
    );
  }

  /**
   * An automatic settle (handler returned or threw, park) failed and nobody will retry it: hand the
   * message back to the broker now rather than holding a prefetch slot until the channel closes.
   * It comes again with the same attempts; the queue's delivery limit bounds such loops.
   */
  private autoFailed(err: unknown): void {
    this.host.logger.warn({ err, jobId: this.job.id }, 'rabbitmq queue: settling failed; the job is requeued');
    if (this.state !== 'open') return;
    this.state = 'released';
    if (this.ch.active) {
      try {
        this.host.nacked(this.ch, this.deliveryTag);
        this.ch.basicNack({ deliveryTag: this.deliveryTag, requeue: true });
      } catch {
        // channel closing: the broker requeues it anyway
      }
    }
    this.host.settled(this);
  }
}
