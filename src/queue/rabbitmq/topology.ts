import type { Channel } from 'rabbitmq-client';

/**
 * RabbitMQ topology of one hookd installation (all names start with `prefix`, default `hookd`):
 *
 *   exchange  <prefix>                 topic, durable. Every job message goes through it.
 *   queue     <prefix>.work            quorum. hookd's workers consume it. Bound with `*.job`
 *                                      (first deliveries, routing key `flow-<flowKey>.job`) and
 *                                      `retry` (retries, retryDead, delayed jobs coming due).
 *   queue     <prefix>.dead            quorum. Dead letters, bound with `dead`.
 *   queue     <prefix>.delay.<level>   quorum, one per delay level: x-message-ttl = level,
 *                                      dead-lettered (at-least-once) back to <prefix> with key
 *                                      `retry` when the TTL runs out. No plugin needed.
 *
 * One shared work queue rather than a queue per flow: the Queue contract's consume() takes every
 * flow's jobs with one concurrency limit (= prefetch, exact on one queue; quorum queues have no
 * channel-global prefetch to cap a consumer spread over N queues), stats() and the dead letters need
 * no queue discovery (AMQP cannot list queues), and a consumer started before a flow existed still
 * gets its jobs. Per-flow routing keys keep the OIH-style fan-out: an external component binds its
 * own queue with `flow-<flowKey>.#` (docs/external-consumers.md).
 *
 * Every declaration is idempotent (same arguments each time); changing an argument of an existing
 * queue is refused by the broker (PRECONDITION_FAILED), so the arguments here are part of the
 * on-broker format: change them only with a new prefix or a migration.
 */

/** Default delay levels: a retry waits for the smallest level ≥ its delay (at most 2.5× the delay). */
export const DEFAULT_DELAY_LEVELS_MS: readonly number[] = [
  1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000, 600_000, 1_800_000, 3_600_000,
];

/** Routing key of hookd's retries and of delayed jobs coming due (work queue only). */
export const RETRY_KEY = 'retry';
/** Routing key of dead letters. */
export const DEAD_KEY = 'dead';
/** Binding of the work queue for first deliveries: `flow-<flowKey>.job` (flowKey has no dots). */
export const JOB_BINDING = '*.job';

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
  readonly workQueue: string;
  readonly deadQueue: string;
  /** Ascending, unique. */
  readonly delayLevels: ReadonlyArray<{ ms: number; queue: string }>;

  constructor(readonly options: TopologyOptions) {
    const { prefix } = options;
    if (!/^[A-Za-z0-9._-]{1,100}$/.test(prefix)) throw new Error(`invalid RabbitMQ prefix: ${prefix}`);
    const levels = [...new Set(options.delayLevelsMs)].sort((a, b) => a - b);
    if (levels.length === 0 || levels.some((ms) => !Number.isInteger(ms) || ms < 1)) {
      throw new Error('RabbitMQ delay levels must be positive integers (ms)');
    }
    this.exchange = prefix;
    this.workQueue = `${prefix}.work`;
    this.deadQueue = `${prefix}.dead`;
    this.delayLevels = levels.map((ms) => ({ ms, queue: `${prefix}.delay.${levelLabel(ms)}` }));
  }

  get maxDelayMs(): number {
    return this.delayLevels[this.delayLevels.length - 1]!.ms;
  }

  /** The smallest level ≥ delayMs, or the largest one (the consumer parks the job again when due). */
  delayQueueFor(delayMs: number): { ms: number; queue: string } {
    for (const level of this.delayLevels) if (level.ms >= delayMs) return level;
    return this.delayLevels[this.delayLevels.length - 1]!;
  }

  get allQueues(): string[] {
    return [this.workQueue, this.deadQueue, ...this.delayLevels.map((l) => l.queue)];
  }

  /** Declare everything (idempotent). Runs at start and after every reconnect. */
  async declare(ch: Channel): Promise<void> {
    await ch.exchangeDeclare({ exchange: this.exchange, type: 'topic', durable: true });
    await ch.queueDeclare({ queue: this.workQueue, durable: true, arguments: this.workArgs() });
    await ch.queueBind({ queue: this.workQueue, exchange: this.exchange, routingKey: JOB_BINDING });
    await ch.queueBind({ queue: this.workQueue, exchange: this.exchange, routingKey: RETRY_KEY });
    await ch.queueDeclare({ queue: this.deadQueue, durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await ch.queueBind({ queue: this.deadQueue, exchange: this.exchange, routingKey: DEAD_KEY });
    for (const level of this.delayLevels) {
      await ch.queueDeclare({ queue: level.queue, durable: true, arguments: this.delayArgs(level.ms) });
    }
  }

  /** Delete every queue and the exchange, messages included (tests, uninstall). */
  async delete(ch: Channel): Promise<void> {
    for (const queue of this.allQueues) await ch.queueDelete({ queue });
    await ch.exchangeDelete({ exchange: this.exchange });
  }

  private workArgs(): QueueArgs {
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

  private delayArgs(ms: number): QueueArgs {
    return {
      'x-queue-type': 'quorum',
      'x-message-ttl': ms,
      'x-dead-letter-exchange': this.exchange,
      'x-dead-letter-routing-key': RETRY_KEY,
      'x-dead-letter-strategy': 'at-least-once',
      'x-overflow': 'reject-publish',
    };
  }
}

/** A broker error for a queue or exchange that does not exist (AMQP 404 NOT_FOUND). */
export function isNotFound(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === 'NOT_FOUND';
}
