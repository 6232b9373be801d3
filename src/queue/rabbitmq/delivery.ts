import type { Channel } from 'rabbitmq-client';
import { finishesWithin } from '../../core/finishes-within.js';
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
  /** Requeue the delivery now (it keeps its place near the queue's head); false when its channel is gone. */
  handBack(ch: Channel, deliveryTag: number): boolean;
  /** Returns of one message after which the broker dead-letters it (the queues' x-delivery-limit). */
  readonly deliveryLimit: number;
}


type State = 'open' | 'settling' | 'settled' | 'released';

/**
 * One delivery of a job message, unacked on the consumer's channel until settled. The first of
 * ack / nack / deadLetter / release wins; later calls are no-ops. nack and deadLetter publish the
 * job's next form (retry or dead letter) with a confirm before acking the original, so a crash in
 * between duplicates a job but never loses one. A settle whose publish fails (503) leaves the
 * delivery open for the caller to retry; after the handler, what is still open is settled as the
 * contract says (returned: ack, threw: nack), and an automatic settle that fails is tried again
 * after a pause while the message stays held. When the channel is already gone, the broker has requeued the
 * message: settles are ignored (logged) and the job is delivered again.
 */
export class RabbitDelivery implements Delivery {
  private current: Job;
  /** The last delivery the queue's delivery limit allows (Delivery.exhausted): set by the consumer. */
  exhausted?: string;
  private state: State = 'open';
  /** Shutdown is handing this message back: a settle that fails from now on must not reopen it. */
  private held = false;

  constructor(
    private message: JobMessage,
    private readonly ch: Channel,
    private readonly deliveryTag: number,
    private readonly host: DeliveryHost,
    /** Times the broker took this message back before (x-delivery-count; quorum queues). */
    readonly returns = 0,
  ) {
    this.current = toJob(message);
  }

  get job(): Job {
    return this.current;
  }

  renameRequest(requestId: string): void {
    const carried = this.message.carried;
    this.message = { ...this.message, requestId, ...(carried === undefined ? {} : { carried: { ...carried, id: requestId } }) };
    this.current = toJob(this.message);
  }

  get channel(): Channel {
    return this.ch;
  }

  async ack(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'settled';
    this.basicAck('ack');
  }

  async nack(options: { delayMs: number; error: string; uncounted?: boolean }): Promise<'retry' | 'dead'> {
    if (!this.settleable('nack')) return 'retry';
    const uncounted = options.uncounted === true;
    const dead = !uncounted && this.job.attempts >= this.job.maxAttempts;
    await this.settle(() =>
      dead
        ? this.host.publishDead({ ...this.message, runAt: undefined, lastError: options.error, deadAt: Date.now() })
        : this.host.publishRetry(
            { ...this.message, runAt: undefined, attempts: uncounted ? this.job.attempts : this.job.attempts + 1, lastError: options.error },
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
   * Back into its flow queue with the same attempts (and the error as lastError), by a confirmed
   * copy: never acked without one. Never throws. False when that publish failed: the message is
   * still held, for the caller to try again later (a nack-requeue would bring it straight back,
   * and count towards the queue's delivery limit). True once given back, or when the channel is
   * gone (the broker has requeued it).
   */
  async requeue(error: string): Promise<boolean> {
    if (!this.settleable('requeue')) return true;
    try {
      await this.settle(() => this.host.publishRetry({ ...this.message, runAt: undefined, lastError: error }, 0));
      return true;
    } catch (err) {
      this.host.logger.warn({ err, jobId: this.job.id }, 'rabbitmq queue: giving the job back failed; it stays held');
      return false;
    }
  }

  /** Park a job that is not due yet (runAt beyond the largest delay level) until runAt. */
  park(runAt: number): void {
    if (this.state !== 'open') return;
    const parkIt = (): Promise<void> => this.settle(() => this.host.publishRetry({ ...this.message, runAt }, Math.max(0, runAt - Date.now())));
    parkIt().catch((err: unknown) => this.autoFailed(err, parkIt));
  }

  /**
   * Shutdown: give the job back without spending an attempt. The message itself is requeued by the
   * consumer (nack-requeue / channel close); this only makes later settles no-ops.
   */
  release(): void {
    this.held = true;
    if (this.state === 'open') this.state = 'released';
  }

  /**
   * Not started and no longer to be run here (its flow is no longer consumed by this process):
   * requeued at once, no attempt spent, for the process that consumes the flow now. The broker
   * counts the return towards the queue's delivery limit, like a stop's hand-back: false, with
   * nothing done, for a message taken back half that limit already (requeue() it instead). True
   * when done, settled already, or its channel is gone (the broker requeued it: nothing to send).
   */
  handBack(): boolean {
    if (this.state !== 'open') return true;
    // Taken back half its delivery limit already: a few more returns would dead-letter it.
    if (this.ch.active && this.returns >= Math.floor(this.host.deliveryLimit / 2)) return false;
    this.state = 'released';
    this.held = true;
    // A channel gone: the broker requeued the message already (nothing to send).
    this.host.handBack(this.ch, this.deliveryTag);
    this.host.settled(this);
    return true;
  }

  /**
   * Shutdown, after release(): publish this message again as a new one (confirmed, attempts and
   * runAt unchanged), then ack the old one, so that the broker's count of its returns starts over.
   * False, with nothing acked, when the publish failed or was not confirmed within `waitMs`: the
   * message then goes back with the requeue, as the others do.
   */
  async republish(waitMs: number): Promise<boolean> {
    const now = Date.now();
    const published = this.host.publishRetry(this.message, Math.max(0, (this.message.runAt ?? now) - now)).then(
      () => true,
      () => false,
    );
    if (!(await finishesWithin(published, waitMs)) || !(await published)) return false;
    this.basicAck('republish');
    return true;
  }

  /** The handler returned without settling: done. */
  autoAck(): void {
    if (this.state === 'open') void this.ack();
  }

  /** The handler threw without settling: retry later. */
  autoNack(cause: unknown): void {
    if (this.state !== 'open') return;
    const error = cause instanceof Error ? cause.message : String(cause);
    const nackIt = (): Promise<unknown> => this.nack({ delayMs: THROW_RETRY_DELAY_MS, error });
    nackIt().catch((err: unknown) => this.autoFailed(err, nackIt));
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
      // Open again for the caller to retry, unless shutdown is handing the message back (an open
      // delivery would be acked by the handler's return, with no copy confirmed).
      this.state = this.held ? 'released' : 'open';
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
   * An automatic settle (the handler threw, park) failed: its publish of the retry copy found the
   * broker refusing (a missing wait queue, too many unconfirmed, a confirm timeout). Keep the
   * message and try the same settle again after a pause, longer each time (1, 2, 4, 5 s…). A
   * nack-requeue instead brought it straight back: the handler ran again at once, in a loop, and
   * every lap counted towards the queue's delivery limit (a job dead-lettered within a second as
   * "a worker crashed"). If the channel goes meanwhile, the broker requeues the message; a stopping
   * consumer hands back what it holds.
   */
  private autoFailed(err: unknown, again: () => Promise<unknown>, attempt = 1): void {
    if (this.state !== 'open') return;
    const delayMs = Math.min(AUTO_SETTLE_MAX_PAUSE_MS, 1_000 * 2 ** (attempt - 1));
    this.host.logger.warn({ err, jobId: this.job.id, retryInMs: delayMs }, 'rabbitmq queue: settling failed; the job stays held and is settled again later');
    const timer = setTimeout(() => {
      if (!this.settleable('settle')) return;
      again().catch((e: unknown) => this.autoFailed(e, again, attempt + 1));
    }, delayMs);
    timer.unref();
  }
}

/** The longest pause between tries of a failed automatic settle. */
const AUTO_SETTLE_MAX_PAUSE_MS = 5_000;
