import { Connection, type Channel } from 'rabbitmq-client';
import { E, HookdError, unavailable } from '../../core/errors.js';
import { finishesWithin } from '../../core/finishes-within.js';
import { uuidv7 } from '../../core/ids.js';
import type { BulkRetryResult, DeadLetter, DeadLetterQuery, DeadLetterSelection, Job, NewJob } from '../../core/job.js';
import type { ConsumeOptions, Consumer, JobHandler, Queue, QueueStats } from '../contract.js';
import { ConfirmPublisher } from './confirm-publisher.js';
import { RabbitConsumer, type ConsumerHost } from './consumer.js';
import { DeadLetterScanner } from './dead-letters.js';
import { encodeJob, type JobMessage } from './job-message.js';
import type { ReceivedMessage } from '../../core/message.js';
import { stderrLogger, type QueueLogger } from './logger.js';
import {
  DEAD_KEY,
  DEFAULT_DELAY_LEVELS_MS,
  DELAY_HEADER,
  isNotFound,
  jobRoutingKey,
  retryRoutingKey,
  Topology,
} from './topology.js';

export interface RabbitMqQueueOptions {
  /** amqp://user:pass@host:port/vhost (amqps:// for TLS). */
  url: string;
  /** Exchange and queue names start with this (topology.ts). Default `hookd`. */
  prefix?: string;
  /** How often the topology is declared again anyway, quietly (ms). Default 30 s. */
  topologyRefreshMs?: number;
  /** Flow queues looked at per refresh at most, in turn (refreshTopology). Default 200. */
  topologyRefreshFlows?: number;
  /** Delay levels of retries (ms). Default 1s 2s 5s 10s 30s 1m 2m 5m 10m 30m 1h. */
  delayLevelsMs?: readonly number[];
  /** Broker redeliveries of one message (crashes, releases) before it is dead-lettered. Default 20. */
  deliveryLimit?: number;
  /** Publishes awaiting a confirm at most; more fail at once with 503. Default 10 000. */
  maxUnconfirmed?: number;
  /** A publish without a confirm after this fails with 503. Default 10 s. */
  confirmTimeoutMs?: number;
  /** openRabbitMqQueue() fails (503) when the broker cannot be reached within this. Default 10 s. */
  connectTimeoutMs?: number;
  /** Reconnect backoff: random delays growing from min to max. Default 250 ms … 2 s. */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** AMQP heartbeat: a silent peer is dropped after about twice this. Default 10 s. */
  heartbeatSeconds?: number;
  /**
   * A flow one instance at a time consumes (watchFlows' `exclusive`), newly consumed here: how
   * often the broker is asked again whether its queue still has a consumer elsewhere (its
   * previous holder's). Default 1 s.
   */
  takeoverCheckMs?: number;
  /** Dead letters looked at per deadLetters() / retryDead() scan at most. Default 10 000. */
  deadLetterScanLimit?: number;
  /** Shown in the broker's connection list. Default `hookd`. */
  connectionName?: string;
  logger?: QueueLogger;
  /** Called with the ms from each publish to its confirm (metrics); not for refused publishes. */
  onConfirmed?: (ms: number) => void;
  /**
   * A dead letter is put back (retryDead, retryDeadLetters): `before` right before its job is
   * published again, `failed` when that publish failed (the job stays dead). The composition root
   * moves the request's execution from `dead` to `retrying` and back: the dead letters are here,
   * the executions in the store.
   */
  onRevive?: { before(requestId: string): Promise<void>; failed(requestId: string): Promise<void> };
  /**
   * A dead letter that carries its request (Job.carried) is about to be discarded: the composition
   * root stores the request, which may have no other record (a job dead-lettered by the broker's
   * delivery limit before a worker recorded it). Rejecting keeps the dead letter.
   */
  beforeDiscard?(request: ReceivedMessage): Promise<void>;
  /**
   * Whether a flow exists now (the flow store): asked before the first publish of a flow's job in
   * this process, and before retrying a dead letter, since what this process knows of deleted
   * flows may be behind another instance's create. Without it, the jobs of retired flows go to
   * the dead letters and those of any other flow to its queue.
   */
  flowExists?: (flowId: string) => Promise<boolean>;
}

/**
 * publish() of a job that carries its request (Job.carried), for a flow that no longer exists: not
 * sent. A job of a deleted flow goes to the dead letters, where its request would have no other
 * record; the caller stores the request and publishes the job without it.
 */
export class CarriedToDeletedFlow extends Error {
  constructor(readonly flowId: string) {
    super(`flow ${flowId} does not exist (deleted): a job carrying its request is not published to the dead letters`);
  }
}

/**
 * A job to publish: its id (the message id, UUIDv7), flow, request, maxAttempts and enqueuedAt;
 * attempts defaults to 1 (a first delivery); optionally not before runAt (epoch ms). Other fields
 * (e.g. an outbox row's `claims`) are ignored. PostgreSQL's OutboxJob fits as it is.
 */
export type PublishableJob = Omit<Job, 'attempts'> & {
  attempts?: number;
  runAt?: number;
  /** JSON text of the request (its API view) for consumers outside hookd: the body's `message`. */
  payload?: string;
};

const CLOSE_TIMEOUT_MS = 5_000;
/** removeFlow: how long to wait for this instance's consumers of the queue to be cancelled before deleting it. */
const CANCEL_WAIT_MS = 2_000;
/** From a sign that a queue is missing to declaring the topology again (repairTopology). */
const REPAIR_DELAY_MS = 1_000;
/** Longest pause between repairs that keep failing. */
const REPAIR_MAX_DELAY_MS = 30_000;
/** A consumer younger than this is not taken for orphaned when its queue reports no consumer. */
const ORPHAN_GRACE_MS = 5_000;
/** How often the topology is declared again anyway (refreshTopology). */
const TOPOLOGY_REFRESH_MS = 30_000;
/** checkTakeovers(): a flow held here and still not consumed for this long is logged (again each time). */
const TAKEOVER_WARN_MS = 30_000;
/**
 * Flow queues a refresh looks at, at most: with more flows, each in turn (1,000 flows: every
 * flow queue every 2.5 min). All of them each time cost the broker 3× the CPU at 500 flows
 * (npm run bench:many-flows), growing with the flows.
 */
const TOPOLOGY_REFRESH_FLOWS = 200;

/**
 * The Queue contract on RabbitMQ (distributed mode). Topology, routing and message format:
 * topology.ts, job-message.ts, docs/external-consumers.md.
 *
 * Jobs are not enqueued atomically with their request here (that is the embedded queue's trick):
 * the PostgreSQL backend writes an outbox row with the request and hands the job to publish(), which
 * resolves once the broker confirmed it. While the broker is unreachable everything that needs it
 * rejects at once with a 503 HookdError (QUEUE_UNAVAILABLE); the connection comes back by itself
 * (rabbitmq-client reconnects with backoff), then the topology is declared again and consumers
 * resume.
 */
export class RabbitMqQueue implements Queue {
  readonly topology: Topology;
  private readonly conn: Connection;
  private readonly publisher: ConfirmPublisher;
  private readonly scanner: DeadLetterScanner;
  private readonly consumers = new Set<RabbitConsumer>();
  private readonly consumerHost: ConsumerHost;
  private readonly logger: QueueLogger;
  private readonly connectTimeoutMs: number;
  private readonly onConfirmed: ((ms: number) => void) | undefined;
  private readonly flowExists: ((flowId: string) => Promise<boolean>) | undefined;
  private admin: Promise<Channel> | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;
  /** A repair of the topology is scheduled or running (repairTopology). */
  private repairTimer: NodeJS.Timeout | undefined;
  /** A loss was reported while a repair was scheduled or running: another one follows it. */
  private repairAgain = false;
  /** Repairs that failed in a row: the next one waits longer (up to REPAIR_MAX_DELAY_MS). */
  private repairFailures = 0;
  /** Queues found without consumer but with messages by the previous refresh (orphan check). */
  private orphanSuspects = new Set<string>();
  /** deleteTopology() ran: a missing queue is then no reason to declare it again. */
  private topologyDeleted = false;
  private topologyTimer: NodeJS.Timeout | undefined;
  private readonly topologyRefreshMs: number;
  private readonly topologyRefreshFlows: number;
  /** A topology refresh is running (refreshTopology). */
  private refreshing = false;
  /** The last flow of the previous refresh's turn: the next turn starts after it (by id). */
  private refreshAfter: string | undefined;
  /** Flows whose queue this process declared (or is declaring): flow id → the declare. */
  private readonly flowQueues = new Map<string, Promise<void>>();
  /** Flows whose queue is known to be declared: publishes to them go out without waiting. */
  private readonly declaredFlows = new Set<string>();
  /** Stopped flows (watchFlows): their queues keep their jobs, unconsumed, until the flow starts. */
  private readonly pausedFlows = new Set<string>();
  /**
   * Flows one instance at a time consumes (watchFlows' `exclusive`): their queue is consumed here
   * only once it was seen with no consumer at all (`clearedFlows`), so that a previous holder
   * still attached (stalled: its unacked deliveries stay with it until its connection is dropped
   * or it cancels) has given every job of its back to the queue, in order, first.
   */
  private readonly exclusiveFlows = new Set<string>();
  /** Exclusive flows started here whose queue was seen with no consumer since: consumed. */
  private readonly clearedFlows = new Set<string>();
  /** Exclusive flows started here still waiting for their queue's other consumer to go: since when. */
  private readonly takeovers = new Map<string, { since: number; warnedAt: number }>();
  private takeoverTimer: NodeJS.Timeout | undefined;
  private checkingTakeovers = false;
  private readonly takeoverCheckMs: number;
  /** The flows of the last watchFlows(): existing flows, never retired. */
  private listedFlows = new Set<string>();
  /**
   * Deleted flows (retireFlows): their queues are consumed while `draining`, never declared (so
   * that a queue removeFlow() deleted does not come back), and their new jobs go to the dead
   * letters; `gone`: the queue is known to be gone, not consumed.
   */
  private readonly retiredFlows = new Map<string, 'draining' | 'gone'>();
  /** routeOf() under way, by flow. */
  private readonly routing = new Map<string, Promise<'queue' | 'dead'>>();
  /** The legacy work queue exists and is drained alongside the flow queues (topology.ts). */
  private legacyWorkQueue = false;

  private readonly onRevive: RabbitMqQueueOptions['onRevive'];
  private readonly beforeDiscard: RabbitMqQueueOptions['beforeDiscard'];

  constructor(options: RabbitMqQueueOptions) {
    this.logger = options.logger ?? stderrLogger;
    const deliveryLimit = options.deliveryLimit ?? 20;
    this.topology = new Topology({
      prefix: options.prefix ?? 'hookd',
      delayLevelsMs: options.delayLevelsMs ?? DEFAULT_DELAY_LEVELS_MS,
      deliveryLimit,
    });
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.topologyRefreshMs = options.topologyRefreshMs ?? TOPOLOGY_REFRESH_MS;
    this.topologyRefreshFlows = options.topologyRefreshFlows ?? TOPOLOGY_REFRESH_FLOWS;
    this.takeoverCheckMs = options.takeoverCheckMs ?? 1_000;
    if (!Number.isInteger(this.topologyRefreshFlows) || this.topologyRefreshFlows < 1) {
      throw new Error('topologyRefreshFlows must be a positive integer');
    }
    this.onConfirmed = options.onConfirmed;
    this.onRevive = options.onRevive;
    this.beforeDiscard = options.beforeDiscard;
    this.flowExists = options.flowExists;
    this.conn = new Connection({
      url: options.url,
      connectionName: options.connectionName ?? 'hookd',
      retryLow: options.reconnectMinMs ?? 250,
      retryHigh: options.reconnectMaxMs ?? 2_000,
      heartbeat: options.heartbeatSeconds ?? 10,
      connectionTimeout: this.connectTimeoutMs,
      acquireTimeout: this.connectTimeoutMs,
      noDelay: true,
    });
    // rabbitmq-client reports the first error of an outage (then reconnects quietly) and channel
    // errors nobody awaited; without a listener an 'error' event would crash the process.
    this.conn.on('error', (err: unknown) => this.logger.warn({ err }, 'rabbitmq queue: connection error'));
    this.publisher = new ConfirmPublisher(this.conn, {
      maxUnconfirmed: options.maxUnconfirmed ?? 10_000,
      confirmTimeoutMs: options.confirmTimeoutMs ?? 10_000,
      logger: this.logger,
      onTopologyMissing: () => this.repairTopology(),
    });
    this.scanner = new DeadLetterScanner({
      conn: this.conn,
      ready: () => this.publisher.ready,
      deadQueue: this.topology.deadQueue,
      scanLimit: options.deadLetterScanLimit ?? 10_000,
      deliveryLimit,
      logger: this.logger,
    });
    this.consumerHost = {
      conn: this.conn,
      ready: () => this.publisher.ready,
      logger: this.logger,
      queues: () => this.consumedQueues(),
      flowOf: (queue) => this.topology.flowOf(queue),
      prepare: (queue) => this.prepareQueue(queue),
      publishRetry: (job, delayMs) => this.publishRetry(job, delayMs),
      publishDead: (job) => this.sendDead(job),
      deliveryLimit,
      detach: (c) => this.consumers.delete(c),
      topologyLost: () => this.repairTopology(),
      retired: (flowId) => this.retiredFlows.has(flowId),
      vanishing: (queue) => {
        const flowId = this.topology.flowOf(queue);
        return flowId !== undefined && this.retiredFlows.has(flowId);
      },
      vanished: (queue) => {
        const flowId = this.topology.flowOf(queue);
        if (flowId !== undefined) this.retiredQueueCancelled(queue, flowId);
      },
    };
  }

  /** Connect and declare the topology; rejects with 503 when the broker cannot be reached in time. */
  async start(): Promise<void> {
    try {
      await this.conn.onConnect(this.connectTimeoutMs, true);
      await this.declareTopology();
    } catch (err) {
      // "failed to connect in time" alone hides why (a refused login, a wrong vhost): its cause says.
      const cause = (err as { cause?: unknown }).cause;
      const why = cause instanceof Error ? new Error(`${(err as Error).message}: ${cause.message.replace(/^undefined: /, '')}`) : err;
      throw unavailable('queue', why);
    }
    this.conn.on('connection', () => this.reconnected());
    this.topologyTimer = setInterval(() => void this.refreshTopology(), this.topologyRefreshMs);
    this.topologyTimer.unref();
  }

  /** True while connected and not blocked by a broker resource alarm. */
  get connected(): boolean {
    return this.publisher.ready;
  }

  /**
   * Publish jobs (their first delivery: routing key `flow-<flowKey>.job`, or a wait queue when
   * runAt is ahead; a flow's queue is declared before its first publish). Resolves once the
   * broker confirmed every one of them; all are on the wire at
   * once, and concurrent calls do not wait for each other. Rejects with a 503 HookdError when any
   * failed (some may have been published: publishing again is safe, consumers are idempotent).
   */
  publish(jobs: readonly PublishableJob[]): Promise<void> {
    if (jobs.length === 1) return this.publishJob(jobs[0]!);
    return Promise.allSettled(jobs.map((j) => this.publishJob(j))).then((results) => {
      for (const r of results) if (r.status === 'rejected') throw r.reason;
    });
  }

  /** publish(), one result per job (an outbox relay deletes exactly the confirmed rows). */
  publishSettled(jobs: readonly PublishableJob[]): Promise<Array<PromiseSettledResult<void>>> {
    return Promise.allSettled(jobs.map((j) => this.publishJob(j)));
  }

  async enqueue(job: NewJob): Promise<void> {
    const now = Date.now();
    const full: PublishableJob = {
      id: uuidv7(now),
      flowId: job.flowId,
      requestId: job.requestId,
      attempts: 1,
      maxAttempts: job.maxAttempts,
      enqueuedAt: now,
    };
    if (job.runAt !== undefined) full.runAt = job.runAt;
    await this.publishJob(full);
  }

  /**
   * The flows that exist (hookd's flow registry, after every load and change): their queues are
   * declared and consumed, so that jobs another instance publishes are taken here too. A stopped
   * flow's queue is not consumed: its jobs wait there, counted as ready, until the flow is started
   * (without this, every one of them would go round through the wait queues each minute). Flows
   * that left the list stay consumed until the process ends (the runner dead-letters their jobs).
   */
  watchFlows(flows: Iterable<{ id: string; started: boolean; exclusive?: boolean }>): void {
    let changed = false;
    const listed = new Set<string>();
    for (const { id, started, exclusive } of flows) {
      listed.add(id);
      if (exclusive === true) this.exclusiveFlows.add(id);
      else if (this.exclusiveFlows.delete(id)) changed = true;
      // Not consumed here now (or no longer exclusive): its next takeover looks again.
      if (!started || exclusive !== true) {
        this.clearedFlows.delete(id);
        this.takeovers.delete(id);
      }
      // Created again after a delete: declared and consumed as any flow.
      this.retiredFlows.delete(id);
      if (started === this.pausedFlows.has(id)) {
        changed = true;
        if (started) this.pausedFlows.delete(id);
        else this.pausedFlows.add(id);
        const queue = this.topology.flowQueue(id);
        // Its deliveries waiting here for a slot go back to the queue (RabbitConsumer.handBackWaiting).
        if (!started) for (const c of this.consumers) c.forget(queue, true);
      }
      if (!this.flowQueues.has(id)) {
        this.declareFlow(id).catch((err: unknown) => this.logger.warn({ err, flowId: id }, 'rabbitmq queue: declaring a flow queue failed'));
      }
    }
    // Deleted while stopped: consumed again, so the runner dead-letters what is left of its jobs.
    for (const id of this.pausedFlows) {
      if (listed.has(id)) continue;
      this.pausedFlows.delete(id);
      changed = true;
    }
    for (const id of this.exclusiveFlows) {
      if (listed.has(id)) continue;
      this.exclusiveFlows.delete(id);
      this.clearedFlows.delete(id);
      this.takeovers.delete(id);
    }
    this.listedFlows = listed;
    if (changed) for (const c of this.consumers) c.attach();
    this.checkTakeoversSoon(0);
  }

  /** An exclusive flow started here whose queue was not yet seen without another consumer. */
  private awaitingTakeover(flowId: string): boolean {
    return this.exclusiveFlows.has(flowId) && !this.clearedFlows.has(flowId) && !this.pausedFlows.has(flowId);
  }

  private checkTakeoversSoon(delayMs: number): void {
    if (this.closed || this.takeoverTimer !== undefined) return;
    if (![...this.declaredFlows].some((id) => this.awaitingTakeover(id))) return;
    this.takeoverTimer = setTimeout(() => {
      this.takeoverTimer = undefined;
      void this.checkTakeovers();
    }, delayMs);
    this.takeoverTimer.unref();
  }

  /**
   * Exclusive flows newly consumed here (their holds just taken: flow-ownership.ts): each queue
   * is consumed once the broker reports no consumer on it (a passive declare's consumerCount).
   * Another one is the previous holder's: it gave the flow up and cancels in a moment, or it
   * died (gone at once), or it is stalled — then it keeps the jobs delivered to it, unacked,
   * until its connection is dropped for missed heartbeats or it resumes and hands them back
   * (runner's mayRun); consuming meanwhile would run the jobs behind them first. Looked at again
   * every takeoverCheckMs; a long wait is logged.
   */
  private async checkTakeovers(): Promise<void> {
    if (this.closed || this.checkingTakeovers) return;
    const flowIds = [...this.declaredFlows].filter((id) => this.awaitingTakeover(id));
    if (flowIds.length === 0) return;
    this.checkingTakeovers = true;
    const now = Date.now();
    const waits = flowIds.map((id) => {
      let w = this.takeovers.get(id);
      if (w === undefined) this.takeovers.set(id, (w = { since: now, warnedAt: now }));
      return w;
    });
    try {
      const oks = await this.passiveDeclares(flowIds.map((id) => this.topology.flowQueue(id)));
      let cleared = false;
      flowIds.forEach((id, i) => {
        // Paused, or given up and taken again, meanwhile: the answer is about an earlier takeover.
        if (this.takeovers.get(id) !== waits[i] || !this.awaitingTakeover(id)) return;
        const consumers = oks[i]?.consumerCount;
        if (consumers === 0) {
          this.takeovers.delete(id);
          this.clearedFlows.add(id);
          cleared = true;
          return;
        }
        const w = waits[i]!;
        if (Date.now() - w.warnedAt >= TAKEOVER_WARN_MS) {
          w.warnedAt = Date.now();
          this.logger.warn(
            { flowId: id, queue: this.topology.flowQueue(id), consumers, waitingMs: Date.now() - w.since },
            'rabbitmq queue: a flow held here is not consumed yet: its queue still has a consumer (its previous holder, stalled or still letting go?)',
          );
        }
      });
      if (cleared) for (const c of this.consumers) c.attach();
    } catch {
      // Down or being repaired: looked at again below (and after the reconnect).
    } finally {
      this.checkingTakeovers = false;
      this.checkTakeoversSoon(this.takeoverCheckMs);
    }
  }

  holdsJobsOf(flowId: string): boolean {
    for (const c of this.consumers) if (c.holdsJobsOf(flowId)) return true;
    return false;
  }

  /**
   * The deleted flows (the store's deletion records): from now on their queues are consumed but
   * never declared, and a job published for one goes to the dead letters unless the store says
   * the flow exists (routeOf). A flow that is listed (watchFlows) is not retired: it was created
   * again. A flow no longer in the list is no longer retired: its record was forgotten once its
   * queue was removed, or it was created again (its jobs found the queue through routeOf, or
   * will once watchFlows lists it).
   */
  retireFlows(flowIds: Iterable<string>): void {
    const next = new Set<string>();
    for (const id of flowIds) if (!this.listedFlows.has(id)) next.add(id);
    for (const id of this.retiredFlows.keys()) {
      if (next.has(id)) continue;
      this.retiredFlows.delete(id);
      if (!this.declaredFlows.has(id)) for (const c of this.consumers) c.forget(this.topology.flowQueue(id));
    }
    let added = false;
    for (const id of next) {
      if (this.retiredFlows.has(id)) continue;
      this.retiredFlows.set(id, 'draining');
      this.orphanSuspects.delete(this.topology.flowQueue(id));
      this.flowQueues.delete(id);
      this.declaredFlows.delete(id);
      this.pausedFlows.delete(id);
      added = true;
    }
    if (added) for (const c of this.consumers) c.attach();
  }

  /**
   * Delete a retired flow's queue when no job is ready in it (the passive declare's count; jobs
   * its consumers hold are settled as usual: the runner dead-letters them before its ack). Every
   * consumer of it, on every instance, is cancelled by the broker; theirs are not declared again
   * (the flow is retired there too). True when the queue is gone; false while jobs are ready in it
   * or when the flow is not retired (it exists again). Rejects with 503 while the broker is away.
   */
  async removeFlow(flowId: string, beforeDelete?: () => Promise<void>): Promise<boolean> {
    if (!this.retiredFlows.has(flowId)) return false;
    if (this.closed) throw unavailable('queue', 'the RabbitMQ queue is closed');
    if (!this.publisher.ready) throw unavailable('queue', 'RabbitMQ is unreachable or blocked (reconnecting)');
    const queue = this.topology.flowQueue(flowId);
    let ch: Channel | undefined;
    try {
      ch = await this.conn.acquire();
      try {
        const { messageCount } = await ch.queueDeclare({ queue, passive: true });
        if (messageCount > 0) return false;
      } catch (err) {
        if (!isNotFound(err)) throw err;
        void this.flowQueueGone(flowId);
        return true;
      }
      await beforeDelete?.();
      // This instance's consumers first: a cancel of its own, confirmed, not the broker's (a
      // cancel-ok that came after the broker's own cancel failed the client's channel, now and then).
      await finishesWithin(this.flowQueueGone(flowId), CANCEL_WAIT_MS);
      try {
        await ch.queueDelete({ queue });
      } catch (err) {
        // Still there: drained here again until the next try.
        this.retiredFlows.set(flowId, 'draining');
        for (const c of this.consumers) c.attach();
        throw err;
      }
      this.logger.info({ flowId, queue }, 'rabbitmq queue: the queue of a deleted flow was removed');
      return true;
    } catch (err) {
      // The store's own error (its hold on the record lost) stays the store's.
      throw err instanceof HookdError ? err : unavailable('queue', err);
    } finally {
      await ch?.close().catch(() => {});
    }
  }

  consume(handler: JobHandler, options: ConsumeOptions): Consumer {
    if (this.closed) throw unavailable('queue', 'the RabbitMQ queue is closed');
    if (!Number.isInteger(options.concurrency) || options.concurrency < 1) {
      throw new HookdError(E.VALIDATION_FAILED, 'consumer concurrency must be a positive integer');
    }
    if (options.concurrency > 65_535) {
      throw new HookdError(E.VALIDATION_FAILED, 'consumer concurrency must be at most 65535 (AMQP prefetch)');
    }
    const consumer = new RabbitConsumer(handler, options.concurrency, this.consumerHost, options.flowLimits, options.flowRates);
    this.consumers.add(consumer);
    // The flow queues declared so far are consumed without being declared again (a queue deleted
    // by hand meanwhile: its consume closes the channel, and the consumer starts over, declaring).
    consumer.attach(new Set(this.flowQueueNames));
    return consumer;
  }

  deadLetters(query: DeadLetterQuery): Promise<DeadLetter[]> {
    return this.scanner.list(query);
  }

  retryDead(jobId: string): Promise<boolean> {
    return this.scanner.take(jobId, async (dead) => {
      // A deleted flow's queue is removed, never declared again: it would stay behind for good
      // (and the runner would only dead-letter the job again).
      if ((await this.routeOf(dead.flowId)) === 'dead') {
        throw new HookdError(E.CONFLICT, `Flow ${dead.flowId} does not exist (deleted): create it again to retry its dead letters`);
      }
      await this.republish(dead);
    });
  }

  /** A dead letter's job published again, its execution told (onRevive). */
  private async republish(dead: JobMessage): Promise<void> {
    const hook = this.onRevive;
    await hook?.before(dead.requestId);
    try {
      await this.send(revived(dead), this.topology.exchange, retryRoutingKey(dead.flowId));
    } catch (err) {
      await hook?.failed(dead.requestId).catch(() => {});
      throw err;
    }
  }

  /** One scan of the dead-letter queue (at most its scan limit): oldest first, deleted flows' left. */
  async retryDeadLetters(selection: DeadLetterSelection): Promise<BulkRetryResult> {
    const { taken, left } = await this.scanner.takeAll(
      (d) => (selection.flowId === undefined || d.flowId === selection.flowId) && (selection.since === undefined || d.deadAt >= selection.since),
      selection.limit,
      async (dead) => {
        if ((await this.routeOf(dead.flowId)) === 'dead') return false;
        await this.republish(dead);
        return true;
      },
    );
    return { retried: taken, remaining: left };
  }

  /** Taken from the dead-letter queue and acked: gone. */
  discardDead(jobId: string): Promise<boolean> {
    return this.scanner.take(jobId, async (dead) => {
      if (dead.carried !== undefined) await this.beforeDiscard?.(dead.carried);
    });
  }

  /**
   * ready, delayed and dead are the broker's counts (every process sees the same); inFlight counts
   * the unacked messages of this process's consumers only: AMQP does not report unacked counts
   * (the management plugin does, and is not required). Callers at the same time (a metrics
   * scrape, the API, the portal) share one round: with many flows a round asks the broker about
   * every flow queue.
   */
  stats(): Promise<QueueStats> {
    this.statsRound ??= this.countAll().finally(() => {
      this.statsRound = undefined;
    });
    return this.statsRound;
  }
  private statsRound: Promise<QueueStats> | undefined;

  private async countAll(): Promise<QueueStats> {
    const { delayLevels } = this.topology;
    const work = this.flowQueueNames;
    if (this.legacyWorkQueue) work.push(this.topology.legacyWorkQueue);
    // sharedQueues: the dead queue, then the wait queues.
    const counts = await this.passiveCounts([...this.topology.sharedQueues, ...work]);
    let inFlight = 0;
    for (const c of this.consumers) inFlight += c.unacked;
    const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
    const dead = counts[0] ?? 0;
    const delayed = sum(counts.slice(1, 1 + delayLevels.length));
    const ready = sum(counts.slice(1 + delayLevels.length));
    return { ready, inFlight, delayed, dead: dead + this.scanner.held };
  }

  /** Resolves when the broker is reachable and the dead-letter queue exists (readiness); rejects with 503. */
  async checkWritable(): Promise<void> {
    await this.passiveCounts([this.topology.deadQueue]);
  }

  /** Queue names of the flows this process knows (tests, cleanup). */
  get flowQueueNames(): string[] {
    return [...this.declaredFlows].map((flowId) => this.topology.flowQueue(flowId));
  }

  /** Delete the queues and the exchange of this prefix, messages included (tests, uninstall). */
  async deleteTopology(): Promise<void> {
    this.topologyDeleted = true;
    const ch = await this.conn.acquire();
    try {
      await this.topology.delete(ch, [...this.flowQueues.keys(), ...this.retiredFlows.keys()]);
    } finally {
      await ch.close().catch(() => {});
    }
  }

  /**
   * Halt consumers (the broker requeues what they held: stop them first for a graceful hand-back),
   * wait for publishes in flight, close the connection.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      if (this.repairTimer) clearTimeout(this.repairTimer);
      clearInterval(this.topologyTimer);
      clearTimeout(this.takeoverTimer);
      for (const c of this.consumers) c.halt();
      this.consumers.clear();
      await this.publisher.close();
      const admin = await this.admin?.catch(() => undefined);
      await admin?.close().catch(() => {});
      if (!(await finishesWithin(this.conn.close(), CLOSE_TIMEOUT_MS))) this.conn.unsafeDestroy();
    })();
    return this.closing;
  }

  private publishJob(job: PublishableJob): Promise<void> {
    const msg: JobMessage = { ...job, attempts: job.attempts ?? 1, runAt: undefined };
    if (!(Number.isInteger(msg.attempts) && msg.attempts >= 1 && Number.isInteger(msg.maxAttempts) && msg.maxAttempts >= 1)) {
      return Promise.reject(new HookdError(E.VALIDATION_FAILED, 'job attempts and maxAttempts must be integers ≥ 1'));
    }
    const go = (): Promise<void> => {
      const delayMs = job.runAt === undefined ? 0 : job.runAt - Date.now();
      if (delayMs > 0) return this.sendDelayed(msg, delayMs);
      return this.send(msg, this.topology.exchange, jobRoutingKey(msg.flowId));
    };
    // The hot path: the flow's queue is known to exist.
    if (this.declaredFlows.has(msg.flowId)) return go();
    // Queues of deleted flows are removed, never declared: their jobs go to the dead letters.
    return this.routeOf(msg.flowId).then((route) => {
      if (route === 'queue') return go();
      // Its request would be in the dead letters alone, where no worker records it (dismissed, it
      // is gone): the caller stores it first (RABBITMQ_ACCEPT=broker: the outbox way).
      if (msg.carried !== undefined) throw new CarriedToDeletedFlow(msg.flowId);
      return this.sendDeadOfDeletedFlow(msg);
    });
  }

  /**
   * Where a job of a flow whose queue this process has not declared goes: to its queue, declared
   * first, when the flow exists; else to the dead letters. The store is asked (flowExists) when
   * given: a retired flow may have been created again elsewhere since the last look at the
   * deletion records (it is then no longer retired here).
   */
  private routeOf(flowId: string): Promise<'queue' | 'dead'> {
    // A burst of first publishes of one flow asks the store once; a 'dead' answer is not shared
    // (the store may have been asked before the flow was created again): ask again then.
    const shared = this.routing.get(flowId);
    if (shared !== undefined) return shared.then((route) => (route === 'queue' ? route : this.routeOfNow(flowId)));
    return this.routeOfNow(flowId);
  }

  private routeOfNow(flowId: string): Promise<'queue' | 'dead'> {
    let routing = this.routing.get(flowId);
    if (routing === undefined) {
      routing = (async () => {
        const exists = this.flowExists ? await this.flowExists(flowId) : !this.retiredFlows.has(flowId);
        if (!exists) return 'dead' as const;
        this.retiredFlows.delete(flowId);
        await this.declareFlow(flowId);
        return 'queue' as const;
      })();
      this.routing.set(flowId, routing);
      const done = (): void => {
        if (this.routing.get(flowId) === routing) this.routing.delete(flowId);
      };
      routing.then(done, done);
    }
    return routing;
  }

  /**
   * A job back into its flow's queue: retries (through a wait queue when delayed), parks, jobs
   * given back. A deleted flow's go to the dead letters instead (unless it exists again): a retry
   * still waiting once its queue is removed would come back to no queue.
   */
  private publishRetry(job: JobMessage, delayMs: number): Promise<void> {
    const go = (): Promise<void> => {
      if (delayMs <= 0) return this.send({ ...job, runAt: undefined }, this.topology.exchange, retryRoutingKey(job.flowId));
      return this.sendDelayed(job, delayMs);
    };
    if (!this.retiredFlows.has(job.flowId)) return go();
    return this.routeOf(job.flowId).then((route) => (route === 'queue' ? go() : this.sendDeadOfDeletedFlow(job)));
  }

  private sendDead(job: JobMessage): Promise<void> {
    return this.send({ ...job, runAt: undefined }, this.topology.exchange, DEAD_KEY);
  }

  /** What the runner does with a job of a flow that does not exist: to the dead letters. */
  private sendDeadOfDeletedFlow(job: JobMessage): Promise<void> {
    const reason = `flow ${job.flowId} does not exist (deleted); job dead-lettered`;
    const lastError = job.lastError === undefined ? reason : `${reason} (last error: ${job.lastError})`;
    return this.sendDead({ ...job, deadAt: Date.now(), lastError });
  }

  /**
   * Into the wait queue of the smallest level ≥ delayMs (through the delay exchange, by header),
   * with the flow's retry key: the TTL dead-letters the job back to the flow's queue. Longer than
   * the largest level: runAt goes along and the consumer parks the job again until it is due.
   */
  private sendDelayed(job: JobMessage, delayMs: number): Promise<void> {
    const level = this.topology.delayQueueFor(delayMs);
    const runAt = delayMs > level.ms ? Date.now() + delayMs : undefined;
    return this.send({ ...job, runAt }, this.topology.delayExchange, retryRoutingKey(job.flowId), level.label);
  }

  private send(job: JobMessage, exchange: string, routingKey: string, delayLabel?: string): Promise<void> {
    const { envelope, body } = encodeJob(job);
    if (delayLabel !== undefined) envelope.headers[DELAY_HEADER] = delayLabel;
    const sent = this.publisher.send({ ...envelope, exchange, routingKey }, body);
    const onConfirmed = this.onConfirmed;
    if (onConfirmed === undefined) return sent;
    const at = performance.now();
    return sent.then(() => onConfirmed(performance.now() - at));
  }

  private async passiveCounts(queues: string[]): Promise<number[]> {
    return (await this.passiveDeclares(queues)).map((ok) => ok.messageCount);
  }

  /** Each queue's message and consumer count; a missing queue schedules the repair (503). */
  private async passiveDeclares(queues: string[]): Promise<Array<{ messageCount: number; consumerCount: number }>> {
    if (this.closed) throw unavailable('queue', 'the RabbitMQ queue is closed');
    if (!this.publisher.ready) throw unavailable('queue', 'RabbitMQ is unreachable or blocked (reconnecting)');
    try {
      const ch = await this.adminChannel();
      return await Promise.all(queues.map((queue) => ch.queueDeclare({ queue, passive: true })));
    } catch (err) {
      if (isNotFound(err)) this.repairTopology();
      throw unavailable('queue', err);
    }
  }

  /** A channel for passive declares, opened again after an error closed it. */
  private adminChannel(): Promise<Channel> {
    const current = this.admin;
    if (current) {
      return current.then((ch) => {
        if (ch.active) return ch;
        if (this.admin === current) this.admin = undefined;
        return this.adminChannel();
      });
    }
    const opening = this.conn.acquire();
    this.admin = opening;
    opening.catch(() => {
      if (this.admin === opening) this.admin = undefined;
    });
    return opening;
  }

  /**
   * The shared part of the topology and every known flow's queue; then the legacy work queue is
   * taken off first deliveries again (an instance of an earlier release, during a rolling upgrade,
   * binds it again each time it declares its topology). A flow whose queue the broker refuses
   * (other arguments, permissions) does not keep the others from being declared: the failures are
   * reported together at the end.
   */
  private async declareTopology(flowIds: Iterable<string> = this.flowQueues.keys()): Promise<void> {
    let ch = await this.conn.acquire();
    const failed: string[] = [];
    let lastError: unknown;
    try {
      await this.topology.declare(ch);
      for (const flowId of flowIds) {
        try {
          await this.topology.declareFlow(ch, flowId);
        } catch (err) {
          failed.push(flowId);
          lastError = err;
          if (!ch.active) ch = await this.conn.acquire(); // the refusal closed it
        }
      }
    } finally {
      await ch.close().catch(() => {});
    }
    await this.adoptLegacyWorkQueue();
    if (failed.length > 0) {
      const reason = (lastError as Error | undefined)?.message ?? String(lastError);
      throw new Error(`declaring the queues of ${failed.length} flow(s) failed (${failed.slice(0, 5).join(', ')}): ${reason}`);
    }
  }

  /** What a consumer does before consuming a queue: declare it, on a channel of its own. */
  private async prepareQueue(queue: string): Promise<void> {
    const ch = await this.conn.acquire();
    try {
      const flowId = this.topology.flowOf(queue);
      if (flowId !== undefined && this.retiredFlows.has(flowId)) {
        // A deleted flow's queue: consumed while it exists, never declared again.
        try {
          await ch.queueDeclare({ queue, passive: true });
        } catch (err) {
          // Gone: its consumers forget it (their failed start is then not tried again).
          if (isNotFound(err)) void this.flowQueueGone(flowId);
          throw err;
        }
      } else if (flowId !== undefined) await this.topology.declareFlow(ch, flowId);
      else await ch.queueDeclare({ queue, passive: true }); // the legacy work queue: never declared
    } finally {
      await ch.close().catch(() => {});
    }
  }

  /**
   * Declare a flow's queue once per process (again after a failure, and in every declareTopology),
   * then have the consumers take from it. Rejects with 503 while the broker is unreachable.
   */
  private declareFlow(flowId: string): Promise<void> {
    const known = this.flowQueues.get(flowId);
    if (known !== undefined) return known;
    const declaring = (async () => {
      if (this.closed) throw unavailable('queue', 'the RabbitMQ queue is closed');
      try {
        const ch = await this.adminChannel();
        await this.topology.declareFlow(ch, flowId);
      } catch (err) {
        if (isNotFound(err)) this.repairTopology(); // the exchange is gone
        throw unavailable('queue', err);
      }
    })();
    this.flowQueues.set(flowId, declaring);
    declaring.then(
      () => {
        if (this.flowQueues.get(flowId) !== declaring) return;
        this.declaredFlows.add(flowId);
        const declared = new Set([this.topology.flowQueue(flowId)]);
        for (const c of this.consumers) c.attach(declared);
        this.checkTakeoversSoon(0);
      },
      () => {
        if (this.flowQueues.get(flowId) === declaring) this.flowQueues.delete(flowId);
      },
    );
    return declaring;
  }

  /**
   * What consumers take from: the queue of every declared flow that is not stopped, and the legacy
   * work queue while it exists.
   */
  private *consumedQueues(): Iterable<string> {
    for (const flowId of this.declaredFlows) if (!this.pausedFlows.has(flowId) && !this.awaitingTakeover(flowId)) yield this.topology.flowQueue(flowId);
    for (const [flowId, state] of this.retiredFlows) if (state === 'draining') yield this.topology.flowQueue(flowId);
    if (this.legacyWorkQueue) yield this.topology.legacyWorkQueue;
  }

  /**
   * The broker cancelled a consumer of a retired flow's queue: removed (by another instance,
   * most likely), or the queue's leader moved. Only that queue is looked at: no repair of the
   * whole topology for an expected removal.
   */
  private retiredQueueCancelled(queue: string, flowId: string): void {
    this.missingQueues([queue]).then(
      (missing) => {
        // Still there, or created again meanwhile (routeOf, watchFlows: declared before its
        // consumer starts again): consumed again (attach() leaves a cancelled lane alone).
        if (missing.length > 0 && this.retiredFlows.has(flowId)) void this.flowQueueGone(flowId);
        else for (const c of this.consumers) c.reattach(queue);
      },
      () => {
        // Disconnected, the reconnect starts every consumer again; else the repair (with its
        // backoff) looks at every consumed queue, this one included.
        if (this.publisher.ready) this.repairTopology();
      },
    );
  }

  /**
   * A retired flow's queue is gone (removed here or by another instance): no longer consumed.
   * Resolves once this instance's consumers of the queue are cancelled (RabbitConsumer.cancelLane).
   */
  private flowQueueGone(flowId: string): Promise<void> {
    this.retiredFlows.set(flowId, 'gone');
    const queue = this.topology.flowQueue(flowId);
    return Promise.all([...this.consumers].map((c) => c.forget(queue))).then(() => {});
  }

  /** Drain the single work queue of earlier releases when it is still there (topology.ts). */
  private async adoptLegacyWorkQueue(): Promise<void> {
    const ch = await this.conn.acquire();
    try {
      const exists = await this.topology.adoptLegacyWorkQueue(ch);
      if (exists && !this.legacyWorkQueue) {
        this.logger.warn({ queue: this.topology.legacyWorkQueue }, 'rabbitmq queue: draining the work queue of an earlier release');
      }
      if (!exists && this.legacyWorkQueue) for (const c of this.consumers) c.forget(this.topology.legacyWorkQueue);
      this.legacyWorkQueue = exists;
    } finally {
      await ch.close().catch(() => {});
    }
  }

  /**
   * A queue of the topology is gone while connected: an operator deleted it (management UI,
   * rabbitmqctl), or a policy expired it. Publishes come back unroutable (503) and consumers are
   * cancelled until the topology is declared again; do that now instead of at the next reconnect
   * or restart. Declaring is idempotent, and every instance that notices does it.
   *
   * After a pause: RabbitMQ (3.10) sends the cancel of a deleted quorum queue's consumers
   * asynchronously, and a consumer whose queue is declared again before its cancel went out is
   * never cancelled and never delivered to again. The pause lets the cancels of every instance's
   * consumers arrive first; this instance's consumers of a queue found missing start over on it,
   * whether or not their cancel came.
   */
  private repairTopology(): void {
    if (this.closed || this.topologyDeleted) return;
    if (this.repairTimer) {
      this.repairAgain = true;
      return;
    }
    // Failing again and again (a queue the broker refuses): 1 s, 2 s, 4 s … 30 s apart.
    const delayMs = Math.min(REPAIR_MAX_DELAY_MS, REPAIR_DELAY_MS * 2 ** Math.min(this.repairFailures, 5));
    this.repairTimer = setTimeout(() => void this.repairNow(), delayMs);
    this.repairTimer.unref();
  }

  private async repairNow(): Promise<void> {
    let failed = false;
    try {
      if (this.closed || this.topologyDeleted) return;
      this.repairAgain = false;
      const checkedAt = Date.now();
      const missing = await this.missingQueues([...this.consumedQueues()]);
      // A deleted flow's queue removed (by removeFlow here or on another instance): not a loss.
      const lost: string[] = [];
      for (const queue of missing) {
        const flowId = this.topology.flowOf(queue);
        if (flowId !== undefined && this.retiredFlows.has(flowId)) void this.flowQueueGone(flowId);
        else lost.push(queue);
      }
      // Declared again all the same (idempotent): what else went missing with it comes back.
      if (this.repairFailures === 0 && (lost.length > 0 || missing.length === 0)) {
        this.logger.warn({ exchange: this.topology.exchange, lost }, 'rabbitmq queue: a queue was missing; declaring the topology again');
      }
      let declareError: unknown;
      try {
        await this.declareTopology();
      } catch (err) {
        declareError = err;
      }
      if (this.closed) return;
      // The queues declared again are consumed again, whatever failed besides.
      for (const c of this.consumers) c.restart(lost, checkedAt, true);
      if (declareError !== undefined) throw declareError;
      this.repairFailures = 0;
    } catch (err) {
      failed = true;
      this.repairFailures++;
      if (this.repairFailures === 1 || this.repairFailures % 10 === 0) {
        this.logger.error({ err, failures: this.repairFailures }, 'rabbitmq queue: declaring the topology failed; trying again');
      }
    } finally {
      this.repairTimer = undefined;
      // Another loss meanwhile, or this one failed (not while disconnected: the reconnect declares).
      if ((this.repairAgain || failed) && this.publisher.ready) this.repairTopology();
      else this.repairAgain = false;
    }
  }

  /** Which of these queues do not exist (a passive declare of a missing one closes its channel). */
  private async missingQueues(queues: string[]): Promise<string[]> {
    const missing: string[] = [];
    let ch = await this.conn.acquire();
    try {
      for (const queue of queues) {
        try {
          await ch.queueDeclare({ queue, passive: true });
        } catch (err) {
          if (!isNotFound(err)) throw err;
          missing.push(queue);
          ch = await this.conn.acquire();
        }
      }
    } finally {
      await ch.close().catch(() => {});
    }
    return missing;
  }

  /**
   * Declare the topology again now and then, quietly: what no publish or consumer notices when it
   * goes (a binding deleted by hand, a delay or dead queue while nothing is retried) comes back
   * within TOPOLOGY_REFRESH_MS. A missing flow queue takes the repair path (consumers restart).
   * A binding of a flow queue deleted while a component outside hookd has its own queue bound to
   * the same keys loses hookd its copies until then: publishes still reach that queue, so the
   * broker confirms them without a return. With more than topologyRefreshFlows flows, each
   * refresh looks at that many flow queues, in turn: a flow's binding comes back within
   * flows / topologyRefreshFlows refreshes.
   */
  private async refreshTopology(): Promise<void> {
    // One at a time: a refresh slower than the interval (a busy broker) is not joined by the next.
    if (this.closed || this.topologyDeleted || this.repairTimer || !this.publisher.ready || this.refreshing) return;
    this.refreshing = true;
    try {
      const consuming = new Set([...this.consumers].flatMap((c) => c.consuming));
      const flowIds = this.refreshTurn();
      const queues = flowIds.map((flowId) => this.topology.flowQueue(flowId));
      // Missing: passiveDeclares schedules the repair.
      const oks = await this.passiveDeclares([this.topology.deadQueue, ...queues]);
      // A queue a consumer of this process believes it consumes, which the broker reports without
      // any consumer while messages wait in it, twice in a row: that consumer is attached to
      // nothing (RabbitMQ 3.10, the queue deleted and declared again before the cancel went out,
      // by another instance or within one repair). Consume it again. (Twice, and only with
      // messages: a quorum queue whose leader does not answer in time reports 0 and 0.)
      // Suspects are kept per queue: with flows in turn, "twice in a row" is two looks at the queue.
      const suspects = new Set(
        queues.filter((q, i) => consuming.has(q) && oks[i + 1]?.consumerCount === 0 && (oks[i + 1]?.messageCount ?? 0) > 0),
      );
      const orphaned = [...suspects].filter((q) => this.orphanSuspects.has(q));
      for (const q of queues) if (!suspects.has(q)) this.orphanSuspects.delete(q);
      for (const q of suspects) this.orphanSuspects.add(q);
      if (orphaned.length > 0) {
        this.logger.warn({ queues: orphaned }, 'rabbitmq queue: consuming queues again that had no consumer');
        const grace = Math.min(ORPHAN_GRACE_MS, this.topologyRefreshMs);
        for (const c of this.consumers) c.restart(orphaned, Date.now() - grace, false);
      }
      await this.declareTopology(flowIds.filter((flowId) => this.flowQueues.has(flowId)));
    } catch {
      // down, or being repaired: the next round or the reconnect declares it
    } finally {
      this.refreshing = false;
    }
  }

  /** The flows whose queue this refresh looks at: all of them, or the next topologyRefreshFlows in turn. */
  private refreshTurn(): string[] {
    const all = [...this.declaredFlows];
    const n = this.topologyRefreshFlows;
    if (all.length <= n) return all;
    // By flow id, so that flows added or retired meanwhile do not shift anyone's turn.
    all.sort();
    const after = this.refreshAfter;
    let start = after === undefined ? 0 : all.findIndex((id) => id > after);
    if (start < 0) start = 0;
    const turn = all.slice(start, start + n);
    if (turn.length < n) turn.push(...all.slice(0, n - turn.length));
    this.refreshAfter = turn[turn.length - 1];
    return turn;
  }

  private reconnected(): void {
    if (this.closed) return;
    this.logger.info({}, 'rabbitmq queue: reconnected');
    this.declareTopology().then(
      // Every flow queue was just declared: consumed without declaring each again.
      () => {
        const declared = new Set(this.flowQueueNames);
        for (const c of this.consumers) c.attach(declared);
      },
      (err: unknown) => {
        this.logger.error({ err }, 'rabbitmq queue: declaring the topology failed');
        for (const c of this.consumers) c.attach();
      },
    );
  }
}

/** Connect, declare the topology and return the queue; rejects with 503 when the broker cannot be reached. */
export async function openRabbitMqQueue(options: RabbitMqQueueOptions): Promise<RabbitMqQueue> {
  const queue = new RabbitMqQueue(options);
  try {
    await queue.start();
  } catch (err) {
    await queue.close().catch(() => {});
    throw err;
  }
  return queue;
}

/**
 * A dead letter going back to its flow: attempts start again; it keeps an error (one the broker
 * buried has none of its own), which tells the runner it is no first delivery (runner.ts).
 */
function revived(dead: JobMessage): JobMessage {
  return { ...dead, attempts: 1, deadAt: undefined, runAt: undefined, lastError: dead.lastError ?? 'dead letter retried' };
}
