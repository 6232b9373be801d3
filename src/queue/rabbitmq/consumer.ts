import type { AsyncMessage, Channel, Connection } from 'rabbitmq-client';
import { Conditions } from '../conditions.js';
import { DEFAULT_GRACE_MS, type Consumer, type FlowRateGate, type JobHandler } from '../contract.js';
import { WakeTimer } from '../wake-timer.js';
import { BatchedAcks } from './batched-acks.js';
import { RabbitDelivery, type DeliveryHost } from './delivery.js';
import { decodeJob, type JobMessage } from './job-message.js';
import type { QueueLogger } from './logger.js';
import { isNotFound } from './topology.js';

/** What a consumer needs from its queue. */
export interface ConsumerHost {
  readonly conn: Connection;
  /**
   * The connection is up and not blocked: conn.ready, except while the publisher corks the socket
   * for a turn (ConfirmPublisher.ready), which the library reads as blocked.
   */
  ready(): boolean;
  readonly logger: QueueLogger;
  /** The queues to consume now (every known flow's; the legacy work queue while it exists). */
  queues(): Iterable<string>;
  /**
   * Make sure `queue` exists before consuming it (declare, idempotent), on another channel than
   * the consumer's: consuming a missing queue, or a declare the broker refuses, would close the
   * consumer's channel, and with it every other queue's deliveries.
   */
  prepare(queue: string): Promise<void>;
  publishRetry(job: JobMessage, delayMs: number): Promise<void>;
  publishDead(job: JobMessage): Promise<void>;
  /** Returns of one message after which the broker dead-letters it (the queues' x-delivery-limit). */
  readonly deliveryLimit: number;
  /** The consumer has stopped (its messages are back in the queue). */
  detach(consumer: RabbitConsumer): void;
  /** A queue is gone (cancelled by the broker, or not found): declare the topology again. */
  topologyLost(): void;
  /** The flow was deleted (RabbitMqQueue.retireFlows): its jobs are not parked. */
  retired(flowId: string): boolean;
  /**
   * A queue that may be deleted any moment (a deleted flow's): looked up before every consume,
   * including the one that takes it back to base prefetch; never grown or shrunk to a share.
   */
  vanishing(queue: string): boolean;
  /** The broker cancelled the consumer of a vanishing queue: look whether it is gone (not a topology loss). */
  vanished(queue: string): void;
  /** The flow whose jobs a queue holds; undefined for another queue (the legacy work queue). */
  flowOf(queue: string): string | undefined;
}

/** Pause before trying again to open a consumer channel that failed (the broker may be restarting). */
const REATTACH_MS = 250;
/** Longest pause before declaring again a queue whose declare failed (startLane). */
const LANE_RETRY_MAX_MS = 30_000;
/** How often, at most, the queues' prefetches are looked at again (rebalance). */
const REBALANCE_MS = 50;
/** stop(): how long to wait for the confirms of messages published again (republishWorn). */
const REPUBLISH_WAIT_MS = 5_000;
/** stop(): how long to wait for consumers being started before handing messages back. */
const STARTING_WAIT_MS = 2_000;
/** A flow with an execution rate: its prefetch stays within the starts its rate allows in this long (clamp). */
const RATE_HORIZON_MS = 60_000;
/** A queue that held nothing for this long goes back to the base prefetch (rebalance). */
const IDLE_MS = 1_000;

/** One queue this consumer takes jobs from: its AMQP consumer on the channel, when consuming. */
interface Lane {
  /** Its consumer's tag, on `ch`; a tag of another channel than the consumer's current one is stale. */
  tag: string | undefined;
  ch: Channel | undefined;
  /** basic.consume under way. */
  starting: boolean;
  /** When its consumer started (restart() leaves a newer one alone). */
  attachedAt: number;
  /** basic.qos of its consumer: deliveries the broker lets it hold unacked (see rebalance()). */
  prefetch: number;
  /** When it last received a delivery. */
  busyAt: number;
  /** Failed declares in a row (startLane), and when to try again. */
  failures: number;
  retryAt: number;
  /**
   * Cancelled by the broker (its queue deleted): consumed again only by the repair's restart(),
   * after its pause, not by the next attach() (topologyLost explains the pause).
   */
  cancelled: boolean;
}

/**
 * One channel with an AMQP consumer per queue (every flow's queue: topology.ts), with manual acks.
 * Handlers are started only while fewer than `concurrency` run; deliveries beyond that wait here,
 * in order of arrival, so a flow flooded with jobs delays a quiet flow's by at most its prefetch,
 * never by its backlog. After a reconnect, handlers of the old channel may still be running while
 * the new channel already delivers: those deliveries wait too.
 *
 * Each queue's consumer has a prefetch of its own (quorum queues have no channel-wide one), kept
 * so that what this process holds stays near 2 × concurrency however many flows are busy
 * (rebalance()): a busy queue alone grows to the full concurrency, many busy queues share it. A
 * fixed prefetch of `concurrency` per queue would hold concurrency × busy flows; with slow steps,
 * the last of those could wait past RabbitMQ's consumer_timeout (30 min), which closes the channel
 * and hands every running job to another consumer while it still runs.
 *
 * stop(): cancel the consumers, wait up to graceMs for running handlers, then hand every unsettled
 * message back at once (basic.nack requeue on the channel, then close it).
 */
export class RabbitConsumer implements Consumer {
  private state: 'active' | 'stopping' | 'stopped' = 'active';
  private ch: Channel | undefined;
  private readonly lanes = new Map<string, Lane>();
  private attaching = false;
  private reattachTimer: NodeJS.Timeout | undefined;
  private readonly running = new Set<RabbitDelivery>();
  /** Received but not started (all slots busy, or stopping). */
  private waiting: RabbitDelivery[] = [];
  /**
   * Deliveries of the current channel not yet acked (what stats() reports as in flight), each with
   * the tag of the consumer it came from.
   */
  private readonly unackedSet = new Map<RabbitDelivery, string>();
  private rebalanceTimer: NodeJS.Timeout | undefined;
  /** A rebalance once queues busy lately have been idle for IDLE_MS. */
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly settles = new Set<Promise<unknown>>();
  private readonly conditions = new Conditions();
  /** Acks are batched per channel (tags are per channel). */
  private readonly acks = new WeakMap<Channel, BatchedAcks>();
  private stopping: Promise<void> | undefined;
  private readonly deliveryHost: DeliveryHost;

  constructor(
    private readonly handler: JobHandler,
    private readonly concurrency: number,
    private readonly host: ConsumerHost,
    /**
     * Flows this consumer runs only so many jobs of at once (Flow.concurrency, per process): their
     * queues' prefetch stays within it, and their deliveries beyond it wait without holding a slot.
     */
    private readonly flowLimits?: () => ReadonlyMap<string, number>,
    /** Flows whose executions start only so many per second: their deliveries wait here for a start. */
    private readonly flowRates?: FlowRateGate,
  ) {
    this.deliveryHost = {
      logger: host.logger,
      publishRetry: (job, delayMs) => host.publishRetry(job, delayMs),
      publishDead: (job) => host.publishDead(job),
      track: (p) => {
        this.settles.add(p);
        const forget = (): void => {
          this.settles.delete(p);
          this.changed();
        };
        p.then(forget, forget);
      },
      settled: (d) => {
        this.drop(d);
        this.scheduleRebalance();
      },
      ack: (ch, tag) => this.acksOf(ch).ack(tag),
      handBack: (ch, tag) => this.acksOf(ch).handBack(tag),
      deliveryLimit: host.deliveryLimit,
    };
  }

  get inFlight(): number {
    return this.running.size;
  }

  /** Messages this consumer holds unacked (running, waiting for a slot, being settled). */
  get unacked(): number {
    return this.unackedSet.size;
  }

  /**
   * Whether a job of the flow is held here unsettled: received (waiting, running, being settled),
   * or still running from an earlier channel (its delivery went back with that channel).
   */
  holdsJobsOf(flowId: string): boolean {
    for (const d of this.unackedSet.keys()) if (d.job.flowId === flowId) return true;
    for (const d of this.running) if (d.job.flowId === flowId) return true;
    return false;
  }

  /** Queues this consumer is consuming right now (tests, diagnostics). */
  get consuming(): string[] {
    return [...this.lanes].filter(([, lane]) => lane.tag !== undefined && lane.ch === this.ch).map(([queue]) => queue);
  }

  /**
   * Open the channel and consume every queue of the host that is not consumed yet, unless under
   * way. Safe to call any time: a new flow's queue is picked up this way. `declared`: queues the
   * caller has just declared, consumed without declaring them again (host.prepare) first.
   */
  attach(declared?: ReadonlySet<string>): void {
    if (this.state !== 'active') return;
    const added: Lane[] = [];
    for (const queue of this.host.queues()) {
      if (this.lanes.has(queue)) continue;
      const lane: Lane = {
        tag: undefined,
        ch: undefined,
        starting: false,
        attachedAt: 0,
        cancelled: false,
        prefetch: 1,
        busyAt: 0,
        failures: 0,
        retryAt: 0,
      };
      this.lanes.set(queue, lane);
      added.push(lane);
    }
    // The base share to start with; rebalance() grows the queues that turn out busy.
    const fresh = new Set(added);
    for (const [queue, lane] of this.lanes) if (fresh.has(lane)) lane.prefetch = this.clamp(queue, this.basePrefetch());
    const ch = this.ch;
    if (ch?.active) {
      const now = Date.now();
      for (const [queue, lane] of this.lanes) {
        // A tag of an earlier channel (closed without its close event yet) consumes nothing.
        if (lane.ch !== ch) lane.tag = undefined;
        if (lane.tag === undefined && !lane.starting && !lane.cancelled && lane.retryAt <= now) this.startLane(ch, queue, lane, !declared?.has(queue));
      }
      return;
    }
    if (this.attaching) return;
    if (this.reattachTimer) clearTimeout(this.reattachTimer);
    this.reattachTimer = undefined;
    this.attaching = true;
    this.open().then(
      () => {
        this.attaching = false;
        this.changed();
        this.attach(declared);
      },
      (err: unknown) => {
        this.attaching = false;
        this.changed();
        if (this.state !== 'active') return;
        this.host.logger.warn({ err }, 'rabbitmq queue: consumer could not start; trying again');
        this.scheduleAttach();
      },
    );
  }

  /**
   * Stop consuming a queue (a stopped flow's, the legacy work queue once gone). What it delivered
   * is settled as usual; with `handBack`, its deliveries still waiting for a slot are requeued.
   */
  forget(queue: string, handBack = false): Promise<void> {
    const lane = this.lanes.get(queue);
    if (lane === undefined) return Promise.resolve();
    this.lanes.delete(queue);
    const cancelled = this.cancelLane(lane);
    if (handBack) this.handBackWaiting(this.host.flowOf(queue));
    return cancelled;
  }

  /**
   * Deliveries of a flow no longer consumed here (stopped, held by another instance, a limit set
   * since they came) that wait for a slot are requeued at once instead of run: the instance that
   * consumes the flow now gets them, in about their order (a quorum queue delivers returned
   * messages first), and the flow's limit holds for the cluster without waiting for them. Running
   * ones end as usual. Those the broker took back half its delivery limit already stay and run: a
   * few more returns would dead-letter them.
   */
  private handBackWaiting(flowId: string | undefined): void {
    if (flowId === undefined || this.state !== 'active') return;
    const worn = Math.floor(this.host.deliveryLimit / 2);
    const kept: RabbitDelivery[] = [];
    for (const d of this.waiting) {
      if (d.job.flowId === flowId && d.channel.active && d.returns < worn) d.handBack();
      else kept.push(d);
    }
    if (kept.length !== this.waiting.length) {
      this.waiting = kept;
      this.changed();
    }
  }

  /** Consume this queue again after the broker cancelled its consumer (the queue is still there). */
  reattach(queue: string): void {
    const lane = this.lanes.get(queue);
    if (lane === undefined || this.state !== 'active') return;
    lane.cancelled = false;
    this.attach();
  }

  /**
   * Consume these queues again (each was deleted and declared again: its old consumer may be
   * attached to nothing), unless a queue's consumer started at or after `attachedBefore`; with
   * `cancelled` (the repair, after its pause), also the queues whose consumers the broker
   * cancelled. Deliveries of the old consumer stay on the channel: their handlers finish and
   * settle them.
   */
  restart(queues: Iterable<string>, attachedBefore: number, cancelled: boolean): void {
    if (this.state !== 'active') return;
    if (cancelled) for (const lane of this.lanes.values()) lane.cancelled = false;
    for (const queue of queues) {
      const lane = this.lanes.get(queue);
      if (lane === undefined || lane.starting) continue;
      // Attached since the queue was found missing: on the queue declared again (by another
      // instance), healthy; starting over would only shuffle its prefetch.
      if (lane.tag !== undefined && lane.attachedAt >= attachedBefore) continue;
      this.cancelLane(lane);
    }
    this.attach();
  }

  stop(options?: { graceMs?: number; beforeRelease?: () => Promise<void> }): Promise<void> {
    this.stopping ??= this.shutdown(options?.graceMs ?? DEFAULT_GRACE_MS, options?.beforeRelease);
    return this.stopping;
  }

  /** Queue closing: stop at once; the broker requeues what this consumer held when the channel closes. */
  halt(): void {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    if (this.reattachTimer) clearTimeout(this.reattachTimer);
    for (const d of this.running) d.release();
    for (const d of this.waiting) d.release();
    this.waiting = [];
    const ch = this.ch;
    this.ch = undefined;
    if (ch) this.acksOf(ch).flush();
    void ch?.close().catch(() => {});
    this.changed();
  }

  /** Open the channel; the queues' consumers start afterwards (attach), one by one. */
  private async open(): Promise<void> {
    const ch = await this.host.conn.acquire();
    try {
      ch.once('close', () => this.channelLost(ch));
      ch.on('basic.cancel', (consumerTag: string) => this.cancelled(ch, consumerTag));
      if (this.state !== 'active') throw new Error('consumer stopped');
      this.ch = ch;
    } catch (err) {
      await ch.close().catch(() => {});
      throw err;
    }
  }

  /**
   * Start the lane's consumer. `prepare`: declare its queue first, on a channel of its own
   * (host.prepare): a declare the broker refuses closes its channel, and this one carries every
   * flow's deliveries. A resize skips it (the queue was consuming a moment ago), unless the queue
   * may vanish (a deleted flow's: then only looked up, never declared).
   */
  private startLane(ch: Channel, queue: string, lane: Lane, prepare = true): void {
    lane.starting = true;
    let prepared = false;
    const consume = async (): Promise<void> => {
      if (prepare) await this.host.prepare(queue);
      prepared = true;
      if (this.state !== 'active' || this.lanes.get(queue) !== lane || this.ch !== ch) return;
      // basic.qos applies to the consumers started after it on the channel: the two are queued
      // together (rabbitmq-client sends a channel's RPCs in call order), nothing in between.
      // Deliveries are dispatched on setImmediate, after this await resumes (rabbitmq-client).
      const [, { consumerTag }] = await Promise.all([
        ch.basicQos({ prefetchCount: lane.prefetch }),
        ch.basicConsume({ queue }, (msg) => this.onMessage(ch, msg, lane)),
      ]);
      if (this.state !== 'active' || this.lanes.get(queue) !== lane || this.ch !== ch) {
        // Stopped or forgotten meanwhile: what it was sent stays unacked until the hand-back.
        await ch.basicCancel(consumerTag).catch(() => {});
        return;
      }
      lane.tag = consumerTag;
      lane.ch = ch;
      lane.attachedAt = Date.now();
      lane.failures = 0;
    };
    consume().then(
      () => {
        lane.starting = false;
        this.changed();
      },
      (err: unknown) => {
        lane.starting = false;
        this.changed();
        // Stopped, or the queue was forgotten meanwhile (a deleted flow's queue found gone).
        if (this.state !== 'active' || this.lanes.get(queue) !== lane) return;
        if (isNotFound(err)) this.host.topologyLost();
        if (prepared) {
          // The consume itself was refused: that closed the channel, and channelLost() opens
          // another one and starts every queue again.
          this.host.logger.warn({ err, queue }, 'rabbitmq queue: consuming a queue failed; trying again');
          return;
        }
        // The queue could not be declared (refused, or the broker is going away): this queue is
        // tried again later, with backoff; the others go on.
        lane.failures++;
        const delayMs = Math.min(LANE_RETRY_MAX_MS, REATTACH_MS * 2 ** Math.min(lane.failures, 8));
        lane.retryAt = Date.now() + delayMs;
        if (lane.failures === 1 || lane.failures % 10 === 0) {
          this.host.logger.warn({ err, queue, failures: lane.failures }, 'rabbitmq queue: declaring a queue to consume failed; trying again later');
        }
        setTimeout(() => this.attach(), delayMs).unref();
      },
    );
  }

  /** Cancelled by the broker (queue deleted, node down): declared again by the repair, then consumed. */
  private cancelled(ch: Channel, consumerTag: string): void {
    if (this.ch !== ch) return;
    let lost = false;
    for (const [queue, lane] of this.lanes) {
      if (lane.tag !== consumerTag) continue;
      lane.tag = undefined;
      lane.cancelled = true;
      // A deleted flow's queue removed (here or by another instance) is expected to go.
      if (this.host.vanishing(queue)) {
        this.host.vanished(queue);
        continue;
      }
      lost = true;
      this.host.logger.warn({ queue }, 'rabbitmq queue: consumer cancelled by the broker');
    }
    // A consumer this one had already let go of (a queue forgotten, a lane resized): nothing lost.
    if (lost) this.host.topologyLost();
  }

  private scheduleAttach(): void {
    if (this.state !== 'active' || this.reattachTimer) return;
    this.reattachTimer = setTimeout(() => {
      this.reattachTimer = undefined;
      // Down or blocked: look again later, quietly (reconnected() attaches at once when it is back).
      if (!this.host.ready()) return this.scheduleAttach();
      this.attach();
    }, REATTACH_MS);
    this.reattachTimer.unref();
  }

  private channelLost(ch: Channel): void {
    if (this.ch !== ch) return;
    this.ch = undefined;
    for (const lane of this.lanes.values()) {
      lane.tag = undefined;
      lane.cancelled = false; // a new channel starts every queue (the repair declared them, or will)
    }
    // The broker requeued everything unacked on that channel; running handlers finish, their settles
    // are ignored (RabbitDelivery sees the closed channel).
    this.waiting = this.waiting.filter((d) => d.channel !== ch);
    for (const d of [...this.unackedSet.keys()]) if (d.channel === ch) this.drop(d);
    this.changed();
    // Channel-only loss: attach again here. Connection lost: the queue also calls attach() after
    // reconnecting. (Not ready also while the connection is blocked by an alarm, when no reconnect
    // will come: so always schedule.)
    this.scheduleAttach();
  }

  private onMessage(ch: Channel, msg: AsyncMessage, lane: Lane): void {
    if (this.ch !== ch || !ch.active) return; // a late delivery of a channel being replaced
    // Stopping: a delivery sent before the cancel took effect stays unacked; the hand-back (nack of
    // everything, or the channel's close) returns it. Parked or run now, it could be settled after
    // the broker already took it back (a duplicate, or an unknown-tag channel error).
    if (this.state !== 'active') return;
    let job: JobMessage;
    try {
      job = decodeJob(msg.body);
    } catch (err) {
      // Not a hookd job (someone else published to the exchange): straight to the dead letters, by
      // the broker (the flow queue's dead-letter exchange), as it cannot be decoded into a Job.
      this.host.logger.warn(
        { err, messageId: msg.messageId, routingKey: msg.routingKey },
        'rabbitmq queue: undecodable message dead-lettered',
      );
      ch.basicNack({ deliveryTag: msg.deliveryTag, requeue: false });
      return;
    }
    const returns = Number(msg.headers?.['x-delivery-count'] ?? 0);
    const d = new RabbitDelivery(job, ch, msg.deliveryTag, this.deliveryHost, Number.isFinite(returns) ? returns : 0);
    // Returned once more, the broker would dead-letter it without a word (x-delivery-limit).
    if (d.returns >= this.host.deliveryLimit) d.exhausted = `delivered ${d.returns + 1} times without being settled (its worker crashed or lost its channel each time)`;
    this.acksOf(ch).opened(msg.deliveryTag);
    this.unackedSet.set(d, msg.consumerTag);
    lane.busyAt = Date.now();
    this.scheduleRebalance();
    // A deleted flow's job is not parked again: the runner dead-letters it now, and its queue can go.
    if (job.runAt !== undefined && job.runAt > Date.now() && !this.host.retired(job.flowId)) {
      d.park(job.runAt); // parked beyond the largest delay level and not due yet
      return;
    }
    this.waiting.push(d);
    this.pump();
  }

  private pump(): void {
    const limits = this.limits();
    const rates = this.flowRates?.any() === true ? this.flowRates : undefined;
    if (limits === undefined && rates === undefined) {
      while (this.state === 'active' && this.running.size < this.concurrency && this.waiting.length > 0) {
        const d = this.waiting.shift()!;
        if (d.channel.active) this.start(d);
      }
      return;
    }
    // A flow at its limit: its deliveries wait (in order) while those behind them start.
    const running = new Map<string, number>();
    for (const d of this.running) running.set(d.job.flowId, (running.get(d.job.flowId) ?? 0) + 1);
    let i = 0;
    let heldBack: Set<string> | undefined;
    while (this.state === 'active' && this.running.size < this.concurrency && i < this.waiting.length) {
      const d = this.waiting[i]!;
      const flowId = d.job.flowId;
      const limit = limits?.get(flowId);
      if (d.channel.active && limit !== undefined && limit > 0 && (running.get(flowId) ?? 0) >= limit) {
        i++;
        continue;
      }
      // A flow whose rate allows no start now: its deliveries wait, in order, until it does (none
      // of its later ones may take a start that came meanwhile).
      if (d.channel.active && rates !== undefined && (heldBack?.has(flowId) === true || !rates.take(flowId))) {
        (heldBack ??= new Set()).add(flowId);
        this.wakeForRate(rates.nextAt(flowId));
        i++;
        continue;
      }
      this.waiting.splice(i, 1);
      if (!d.channel.active) continue;
      running.set(flowId, (running.get(flowId) ?? 0) + 1);
      this.start(d);
    }
  }

  /** pump() again at `at`, when a flow's rate allows a start. */
  private wakeForRate(at: number): void {
    if (this.state === 'active') this.rateTimer.armAt(at);
  }
  private readonly rateTimer = new WakeTimer(() => this.pump(), true);

  /**
   * The flows' limits, without the 0 of stopped flows: their queues are not consumed at all here
   * (watchFlows), and a delivery left from before the stop goes to the runner, which parks it.
   */
  private limits(): ReadonlyMap<string, number> | undefined {
    const all = this.flowLimits?.();
    if (all === undefined || all.size === 0) return undefined;
    // The registry hands out the same map until a flow changes: looked through once per map.
    if (all !== this.limitsSeen) {
      this.limitsSeen = all;
      this.anyLimit = [...all.values()].some((limit) => limit > 0);
    }
    return this.anyLimit ? all : undefined;
  }
  private limitsSeen: ReadonlyMap<string, number> | undefined;
  private anyLimit = false;

  /**
   * A prefetch for the queue within its flow's limit, if it has one, and within what its rate
   * starts in RATE_HORIZON_MS: a delivery waiting here for its start longer than RabbitMQ's
   * consumer_timeout (30 min) would have the broker close the channel.
   */
  private clamp(queue: string, prefetch: number): number {
    const flowId = this.host.flowOf(queue);
    if (flowId === undefined) return prefetch;
    const limit = this.flowLimits?.().get(flowId);
    let p = limit === undefined || limit === 0 ? prefetch : Math.min(prefetch, limit);
    const byRate = this.flowRates?.within(flowId, RATE_HORIZON_MS);
    if (byRate !== undefined) p = Math.min(p, byRate);
    return Math.max(1, p);
  }

  private start(d: RabbitDelivery): void {
    this.running.add(d);
    let done: Promise<void>;
    try {
      done = Promise.resolve(this.handler(d));
    } catch (err) {
      done = Promise.reject(err);
    }
    done.then(
      () => {
        this.running.delete(d);
        d.autoAck();
        this.changed();
        this.pump();
      },
      (err: unknown) => {
        this.running.delete(d);
        d.autoNack(err);
        this.changed();
        this.pump();
      },
    );
  }

  private async shutdown(graceMs: number, beforeRelease?: () => Promise<void>): Promise<void> {
    if (this.state === 'active') this.state = 'stopping';
    if (this.reattachTimer) clearTimeout(this.reattachTimer);
    const ch = this.ch;
    if (ch?.active) {
      const tags = [...this.lanes.values()].flatMap((lane) => (lane.tag === undefined ? [] : [lane.tag]));
      await Promise.all(tags.map((tag) => ch.basicCancel(tag).catch(() => {})));
    }
    if (graceMs > 0) await this.conditions.until(() => this.running.size === 0, graceMs);
    // Settles of handlers still running become no-ops; the caller aborts them before the messages
    // are handed back below.
    const left = [...this.running];
    for (const d of left) d.release();
    for (const d of this.waiting) d.release();
    this.waiting = [];
    if (left.length > 0) await beforeRelease?.().catch(() => {});
    // Retry / dead-letter publishes under way finish and ack their message before the channel goes.
    await this.conditions.until(() => this.settles.size === 0);
    // A consumer being started (a resize) cancels itself once started; let it, so that nothing is
    // delivered to it after the hand-back below.
    await this.conditions.until(() => ![...this.lanes.values()].some((lane) => lane.starting), STARTING_WAIT_MS);
    if (ch?.active) {
      // Acks of finished jobs go out first: the nack below hands back everything still unacked.
      this.acksOf(ch).flush();
      // Requeue everything still unacked now, and wait for the broker to have done it (a
      // synchronous method on the same channel is answered after the nack was processed), so
      // another consumer gets the jobs at once and stats() counts them as ready when stop() resolves.
      if (this.unackedSet.size > 0) {
        // Including deliveries whose failed settle waits to be tried again: they are handed back here.
        for (const d of this.unackedSet.keys()) d.release();
        await this.republishWorn(ch);
        try {
          ch.basicNack({ deliveryTag: 0, multiple: true, requeue: true });
          await ch.basicQos({ prefetchCount: this.concurrency });
        } catch {
          // channel lost meanwhile: the broker requeues on close
        }
      }
      await ch.close().catch(() => {});
    }
    this.ch = undefined;
    this.unackedSet.clear();
    clearTimeout(this.rebalanceTimer);
    clearTimeout(this.idleTimer);
    this.rateTimer.clear();
    this.state = 'stopped';
    this.host.detach(this);
    this.changed();
  }

  /**
   * stop(): the broker counts every message handed back toward the queues' delivery limit, which
   * is there for jobs that kill their worker, not for graceful stops: a job held through enough
   * rolling restarts would end in the dead letters. Those already taken back half the limit are
   * published again instead (a new message, counted from 0; confirmed, attempts unchanged), then
   * acked; the others, and any whose publish fails, go back with the requeue as before (which keeps
   * their place in the queue).
   */
  private async republishWorn(ch: Channel): Promise<void> {
    const worn = [...this.unackedSet.keys()].filter((d) => d.channel === ch && d.returns >= Math.floor(this.host.deliveryLimit / 2));
    if (worn.length === 0) return;
    await Promise.all(worn.map((d) => d.republish(REPUBLISH_WAIT_MS)));
    this.acksOf(ch).flush();
  }

  /** No longer unacked here (acked, or its channel gone). */
  private drop(d: RabbitDelivery): void {
    this.unackedSet.delete(d);
  }

  private scheduleRebalance(): void {
    if (this.rebalanceTimer || this.state !== 'active') return;
    this.rebalanceTimer = setTimeout(() => {
      this.rebalanceTimer = undefined;
      this.rebalance();
    }, REBALANCE_MS);
    this.rebalanceTimer.unref();
  }

  /** Every queue's prefetch when none is busy: together at most max(concurrency, queues). */
  private basePrefetch(): number {
    return Math.max(1, Math.floor(this.concurrency / Math.max(1, this.lanes.size)));
  }

  /**
   * Keep the queues' prefetches, summed, within every queue's base prefetch plus the concurrency
   * (at most 2 × concurrency, or one per queue plus the concurrency when there are more queues):
   * that sum bounds what the broker may have sent this process at any moment, a burst on every
   * flow at once included.
   * A queue idle for IDLE_MS goes back to the base prefetch; over the budget, busy queues go down to
   * their share of the concurrency; while fewer than `concurrency` are held, the busy queue
   * (holding as many as its prefetch) with the smallest prefetch doubles it, within the budget, one
   * per round, so that a queue busy on its own ends at the whole concurrency. A new prefetch needs
   * a new consumer: the old one is cancelled (what it holds is settled as usual) and another
   * started.
   */
  private rebalance(): void {
    const ch = this.ch;
    if (this.state !== 'active' || !ch?.active) return;
    const now = Date.now();
    // Deliveries held per consumer tag (at most about 2 × concurrency to count).
    const heldByTag = new Map<string, number>();
    for (const tag of this.unackedSet.values()) heldByTag.set(tag, (heldByTag.get(tag) ?? 0) + 1);
    const held = (lane: Lane): number => heldByTag.get(lane.tag!) ?? 0;
    const live: Array<[string, Lane]> = [];
    let sum = 0;
    let starting = false;
    for (const [queue, lane] of this.lanes) {
      if (lane.starting) {
        // Counted at the prefetch it is being started with.
        starting = true;
        sum += lane.prefetch;
        continue;
      }
      if (lane.tag === undefined || lane.ch !== ch) continue;
      if (held(lane) > 0) lane.busyAt = now;
      sum += lane.prefetch;
      live.push([queue, lane]);
    }
    // A flow's limit lowered (or set) since its consumer started: its prefetch follows at once,
    // busy or not, so that the broker stops sending what could only wait here.
    for (let i = live.length - 1; i >= 0; i--) {
      const [queue, lane] = live[i]!;
      const capped = this.clamp(queue, lane.prefetch);
      if (capped >= lane.prefetch) continue;
      sum -= lane.prefetch - capped;
      this.resize(ch, queue, lane, capped);
      live.splice(i, 1); // being started again: not resized twice in this round
    }
    const base = this.basePrefetch();
    // The base prefetch of every queue, plus the concurrency for the busy ones to grow into.
    const budget = this.lanes.size * base + this.concurrency;
    let lookAgain = false;
    for (const [queue, lane] of live) {
      if (lane.prefetch <= base) continue;
      if (now - lane.busyAt < IDLE_MS) {
        lookAgain = true; // busy lately: back to base once idle long enough
        continue;
      }
      sum -= lane.prefetch - base;
      // A deleted flow's too, once drained: long before its removal (DELETED_FLOW_GRACE).
      this.resize(ch, queue, lane, base);
    }
    // A deleted flow's queue is drained at what it has: never grown nor shrunk to a share.
    const busy = live.filter(([queue, lane]) => now - lane.busyAt < IDLE_MS && !this.host.vanishing(queue));
    if (sum > budget) {
      const share = Math.max(base, Math.floor(this.concurrency / Math.max(1, busy.length)));
      for (const [queue, lane] of busy) {
        if (lane.prefetch <= share) continue;
        sum -= lane.prefetch - share;
        this.resize(ch, queue, lane, share);
      }
    } else if (this.unackedSet.size < this.concurrency && !starting) {
      let grow: [string, Lane] | undefined;
      for (const entry of busy) {
        const lane = entry[1];
        if (lane.prefetch >= this.clamp(entry[0], this.concurrency) || held(lane) < lane.prefetch) continue;
        if (grow === undefined || lane.prefetch < grow[1].prefetch) grow = entry;
      }
      if (grow) {
        const [queue, lane] = grow;
        const next = Math.min(this.clamp(queue, this.concurrency), lane.prefetch * 2, lane.prefetch + budget - sum);
        if (next > lane.prefetch) this.resize(ch, queue, lane, next);
      }
    }
    if (lookAgain && this.idleTimer === undefined) {
      this.idleTimer = setTimeout(() => {
        this.idleTimer = undefined;
        this.rebalance();
      }, IDLE_MS);
      this.idleTimer.unref();
    }
  }

  /** A vanishing queue is looked up first: consuming one that is gone would close the shared channel. */
  private resize(ch: Channel, queue: string, lane: Lane, prefetch: number): void {
    this.cancelLane(lane);
    lane.prefetch = this.clamp(queue, prefetch);
    this.startLane(ch, queue, lane, this.host.vanishing(queue));
  }

  /**
   * Cancel the lane's consumer, if it has one; what it delivered is settled as usual. Resolves once
   * the broker confirmed the cancel (or it failed): a queue deleted before that would have the
   * broker cancel the consumer too, and the late cancel-ok of ours then fails the client's channel.
   */
  private cancelLane(lane: Lane): Promise<void> {
    const { tag, ch } = lane;
    lane.tag = undefined;
    if (tag === undefined || !ch?.active) return Promise.resolve();
    return ch.basicCancel(tag).then(
      () => {},
      () => {},
    );
  }

  private acksOf(ch: Channel): BatchedAcks {
    let acks = this.acks.get(ch);
    if (acks === undefined) this.acks.set(ch, (acks = new BatchedAcks(ch)));
    return acks;
  }

  private changed(): void {
    this.conditions.changed();
  }
}
