import type { Channel } from 'rabbitmq-client';

/**
 * RabbitMQ topology of one hookd installation (all names start with `prefix`, default `hookd`):
 *
 *   exchange  <prefix>                 topic, durable. Every job message goes through it.
 *   queue     <prefix>.flow.<flowId>   quorum, one per flow. hookd's workers consume it. Bound with
 *                                      `flow-<flowKey>.job` (first deliveries) and
 *                                      `retry.flow-<flowKey>` (retries, retryDead, delayed jobs
 *                                      coming due: a key outside `flow-<flowKey>.#`, so components
 *                                      bound to a flow's keys never see hookd's retries).
 *   queue     <prefix>.dead            quorum. Dead letters, bound with `dead`.
 *   exchange  <prefix>.delay           headers, durable. Routes a delayed job to the wait queue of
 *                                      its level by the header `hookd-delay` (the level's label).
 *   queue     <prefix>.wait.<level>    quorum, one per delay level: x-message-ttl = level,
 *                                      dead-lettered (at-least-once) back to <prefix> with the
 *                                      message's own routing key (`retry.flow-<flowKey>`) when the
 *                                      TTL runs out. No plugin needed.
 *
 * A queue per flow: a flow flooded with jobs, or whose steps are slow, holds up only its own queue;
 * a consumer takes from every flow's queue at once (one channel, prefetch per queue), so the jobs
 * of a quiet flow start after at most a prefetch of each busy flow's. AMQP cannot list queues: a
 * process learns the flows from its own publishes and from watchFlows() (hookd's flow registry),
 * and declares a flow's queue before its first publish to it.
 *
 * Before per-flow queues (December 2026) one queue `<prefix>.work` took
 * every flow's jobs, and delay queues `<prefix>.delay.<level>` dead-lettered into it with key
 * `retry`. When that queue still exists, hookd unbinds its `*.job` key and drains it alongside the
 * flow queues (legacyWorkQueue); docs/distributed.md, "Upgrading", says when to delete both.
 *
 * Every declaration is idempotent (same arguments each time); changing an argument of an existing
 * queue is refused by the broker (PRECONDITION_FAILED), so the arguments here are part of the
 * on-broker format: change them only with new names (as the wait queues did) or a migration.
 */

/** Default delay levels: a retry waits for the smallest level ≥ its delay (at most 2.5× the delay). */
export const DEFAULT_DELAY_LEVELS_MS: readonly number[] = [
  1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000, 600_000, 1_800_000, 3_600_000,
];

/** Routing key of dead letters. */
export const DEAD_KEY = 'dead';
/** Header that routes a delayed job to the wait queue of its level (through `<prefix>.delay`). */
export const DELAY_HEADER = 'hookd-delay';
/** The key the legacy work queue (`<prefix>.work`) was bound with for first deliveries. */
export const LEGACY_JOB_BINDING = '*.job';

/**
 * The routing-key word of a flow: `flow-` + the flow id with `.` replaced by `~` (ids are
 * `[A-Za-z0-9._-]`, so the mapping is one-to-one and the word never splits a topic key).
 */
export function flowKey(flowId: string): string {
  return `flow-${flowId.replace(/\./g, '~')}`;
}

/** Routing key of the first delivery of a job of this flow. */
export function jobRoutingKey(flowId: string): string {
  return `${flowKey(flowId)}.job`;
}

/** Routing key of a job of this flow coming back: retries, retryDead, delayed jobs coming due. */
export function retryRoutingKey(flowId: string): string {
  return `retry.${flowKey(flowId)}`;
}

/** `1s`, `2m`, `1h`, or milliseconds when the level is not a whole unit. */
export function levelLabel(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1_000 === 0) return `${ms / 1_000}s`;
  return `${ms}ms`;
}

export interface TopologyOptions {
  prefix: string;
  delayLevelsMs: readonly number[];
  /**
   * Broker redeliveries (consumer crash, channel lost, stop() releasing a running job) after which
   * the broker moves a job to the dead letters: guards against a job that kills its worker.
   */
  deliveryLimit: number;
}

type QueueArgs = Record<string, string | number>;

export class Topology {
  readonly exchange: string;
  /** Headers exchange in front of the wait queues. */
  readonly delayExchange: string;
  readonly deadQueue: string;
  /** The single work queue of earlier releases: drained when it exists, never declared. */
  readonly legacyWorkQueue: string;
  /** Ascending, unique. */
  readonly delayLevels: ReadonlyArray<{ ms: number; label: string; queue: string }>;

  constructor(readonly options: TopologyOptions) {
    const { prefix } = options;
    if (!/^[A-Za-z0-9._-]{1,100}$/.test(prefix)) throw new Error(`invalid RabbitMQ prefix: ${prefix}`);
    const levels = [...new Set(options.delayLevelsMs)].sort((a, b) => a - b);
    if (levels.length === 0 || levels.some((ms) => !Number.isInteger(ms) || ms < 1)) {
      throw new Error('RabbitMQ delay levels must be positive integers (ms)');
    }
    this.exchange = prefix;
    this.delayExchange = `${prefix}.delay`;
    this.deadQueue = `${prefix}.dead`;
    this.legacyWorkQueue = `${prefix}.work`;
    this.delayLevels = levels.map((ms) => ({ ms, label: levelLabel(ms), queue: `${prefix}.wait.${levelLabel(ms)}` }));
  }

  /** The queue of a flow's jobs (flow ids are at most 128 characters: the name stays under 255). */
  flowQueue(flowId: string): string {
    return `${this.options.prefix}.flow.${flowId}`;
  }

  /** The flow of a flow queue's name; undefined for any other queue. */
  flowOf(queue: string): string | undefined {
    const head = `${this.options.prefix}.flow.`;
    return queue.startsWith(head) ? queue.slice(head.length) : undefined;
  }

  get maxDelayMs(): number {
    return this.delayLevels[this.delayLevels.length - 1]!.ms;
  }

  /** The smallest level ≥ delayMs, or the largest one (the consumer parks the job again when due). */
  delayQueueFor(delayMs: number): { ms: number; label: string; queue: string } {
    for (const level of this.delayLevels) if (level.ms >= delayMs) return level;
    return this.delayLevels[this.delayLevels.length - 1]!;
  }

  /** The queues every installation has (flow queues come on top: flowQueue()). */
  get sharedQueues(): string[] {
    return [this.deadQueue, ...this.delayLevels.map((l) => l.queue)];
  }

  /** Declare the exchanges, dead and wait queues (idempotent). Runs at start and after every reconnect. */
  async declare(ch: Channel): Promise<void> {
    await ch.exchangeDeclare({ exchange: this.exchange, type: 'topic', durable: true });
    await ch.exchangeDeclare({ exchange: this.delayExchange, type: 'headers', durable: true });
    await ch.queueDeclare({ queue: this.deadQueue, durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await ch.queueBind({ queue: this.deadQueue, exchange: this.exchange, routingKey: DEAD_KEY });
    for (const level of this.delayLevels) {
      await ch.queueDeclare({ queue: level.queue, durable: true, arguments: this.delayArgs(level.ms) });
      await ch.queueBind({
        queue: level.queue,
        exchange: this.delayExchange,
        routingKey: '',
        arguments: { 'x-match': 'all', [DELAY_HEADER]: level.label },
      });
    }
  }

  /** Declare a flow's queue and its two bindings (idempotent). */
  async declareFlow(ch: Channel, flowId: string): Promise<void> {
    const queue = this.flowQueue(flowId);
    await ch.queueDeclare({ queue, durable: true, arguments: this.flowArgs() });
    await ch.queueBind({ queue, exchange: this.exchange, routingKey: jobRoutingKey(flowId) });
    await ch.queueBind({ queue, exchange: this.exchange, routingKey: retryRoutingKey(flowId) });
  }

  /**
   * The legacy work queue exists: stop it taking first deliveries (the flow queues take them now)
   * and keep its `retry` binding, which the old delay queues still dead-letter into. Resolves
   * false when there is no such queue. The passive declare runs on a channel of its own: a missing
   * queue closes the channel.
   */
  async adoptLegacyWorkQueue(ch: Channel): Promise<boolean> {
    try {
      await ch.queueDeclare({ queue: this.legacyWorkQueue, passive: true });
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
    await ch.queueUnbind({ queue: this.legacyWorkQueue, exchange: this.exchange, routingKey: LEGACY_JOB_BINDING });
    return true;
  }

  /** Delete the given flows' queues, the shared queues and the exchanges, messages included (tests, uninstall). */
  async delete(ch: Channel, flowIds: Iterable<string> = []): Promise<void> {
    for (const flowId of flowIds) await ch.queueDelete({ queue: this.flowQueue(flowId) });
    for (const queue of this.sharedQueues) await ch.queueDelete({ queue });
    await ch.queueDelete({ queue: this.legacyWorkQueue });
    await ch.exchangeDelete({ exchange: this.delayExchange });
    await ch.exchangeDelete({ exchange: this.exchange });
  }

  private flowArgs(): QueueArgs {
    return {
      'x-queue-type': 'quorum',
      'x-delivery-limit': this.options.deliveryLimit,
      'x-dead-letter-exchange': this.exchange,
      'x-dead-letter-routing-key': DEAD_KEY,
      // at-least-once dead-lettering (quorum queues, RabbitMQ ≥ 3.10) requires reject-publish.
      'x-dead-letter-strategy': 'at-least-once',
      'x-overflow': 'reject-publish',
    };
  }

  /** No dead-letter routing key: a job expires back to the exchange with its own (its flow's retry key). */
  private delayArgs(ms: number): QueueArgs {
    return {
      'x-queue-type': 'quorum',
      'x-message-ttl': ms,
      'x-dead-letter-exchange': this.exchange,
      'x-dead-letter-strategy': 'at-least-once',
      'x-overflow': 'reject-publish',
    };
  }
}

/** A broker error for a queue or exchange that does not exist (AMQP 404 NOT_FOUND). */
export function isNotFound(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === 'NOT_FOUND';
}
