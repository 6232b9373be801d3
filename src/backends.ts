import path from 'node:path';
import type { Logger } from 'pino';
import type { Config } from './config/config.js';
import { E, HookdError, unavailable } from './core/errors.js';
import type { ReceivedMessage } from './core/message.js';
import { openRabbitMqQueue, type PublishableJob, type RabbitMqQueue } from './queue/rabbitmq/index.js';
import type { Backend } from './store/backend.js';
import type { AcceptOptions, AcceptOutcome, RequestStore } from './store/contracts.js';
import { openPostgresBackend, openPostgresStores, type PostgresStores, startOutboxRelay } from './store/postgres/index.js';
import { openSqliteBackend } from './store/sqlite/index.js';

/**
 * Part of the composition root: the backend follows from the configuration.
 * - nothing set: embedded SQLite (requests and jobs in one file, one transaction);
 * - DATABASE_URL: PostgreSQL stores and the PostgreSQL queue;
 * - DATABASE_URL + RABBITMQ_URI: PostgreSQL stores, jobs through a transactional outbox to RabbitMQ.
 */
export async function openBackend(config: Config, logger: Logger): Promise<Backend> {
  if (config.rabbitmqUri && !config.databaseUrl) {
    throw new Error('RABBITMQ_URI needs DATABASE_URL: requests and the outbox live in PostgreSQL');
  }
  if (!config.databaseUrl) {
    return openSqliteBackend({ path: path.join(config.dataDir, 'hookd.db'), leaseMs: config.leaseMs, logger });
  }
  const pg = { connectionString: config.databaseUrl, schema: config.databaseSchema, logger };
  if (!config.rabbitmqUri) return openPostgresBackend({ ...pg, leaseMs: config.leaseMs });
  const stores = await openPostgresStores({ ...pg, dispatch: 'outbox' });
  let queue: RabbitMqQueue;
  try {
    queue = await openRabbitMqQueue({ url: config.rabbitmqUri, prefix: config.rabbitmqPrefix, logger });
  } catch (err) {
    await stores.close();
    throw err;
  }
  return new OutboxRabbitBackend(stores, queue, logger);
}

/** How long an accept waits for its job's broker confirm at most before answering 503. */
const CONFIRM_WAIT_MS = 10_000;
/** Waiters older than this are checked against the outbox (see sweep()). */
const SWEEP_AFTER_MS = 1_000;
const SWEEP_EVERY_MS = 500;

interface Waiter {
  since: number;
  resolve(): void;
  reject(err: unknown): void;
}

/**
 * PostgreSQL + RabbitMQ. Consistency by a transactional outbox: the request row and its job's outbox
 * row commit in one PostgreSQL transaction (no job without its request, no acknowledged request
 * without its job); a relay publishes outbox rows with publisher confirms and deletes them after
 * the confirm. The ingress's 2xx waits for that confirm too (the broker holds the job), so a broker
 * that is down gives 503s, not 2xx. If the broker confirms after the 503 was sent, the job still
 * runs (at-least-once): a sender that retries with the same x-request-id is deduplicated.
 * See docs/distributed.md.
 */
class OutboxRabbitBackend implements Backend {
  readonly name = 'postgres+rabbitmq';
  readonly flows;
  readonly requests: RequestStore;
  readonly executions;
  private readonly waiting = new Map<string, Waiter>();
  private readonly relay;
  private readonly sweeper: NodeJS.Timeout;
  private sweeping = false;
  private relayFailures = 0;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly stores: PostgresStores,
    readonly queue: RabbitMqQueue,
    logger: Logger,
  ) {
    this.flows = stores.flows;
    this.executions = stores.executions;
    this.relay = startOutboxRelay({ outbox: stores.outbox, publish: (jobs) => this.publish(jobs), logger });
    this.sweeper = setInterval(() => void this.sweep(), SWEEP_EVERY_MS);
    this.sweeper.unref();
    const inner = stores.requests;
    const confirmed = (m: ReceivedMessage) => this.confirmed(m.id);
    this.requests = {
      accept: async (m: ReceivedMessage, options: AcceptOptions): Promise<AcceptOutcome> => {
        if (!queue.connected) throw unavailable('queue', new Error('RabbitMQ is not connected'));
        const wait = confirmed(m); // registered before the commit: the relay may be quick
        try {
          const outcome = await inner.accept(m, options);
          if (outcome.kind === 'stored') await wait.promise;
          return outcome;
        } finally {
          wait.cancel();
        }
      },
      get: (id) => inner.get(id),
      list: (q) => inner.list(q),
      referencesAttachment: (id) => inner.referencesAttachment(id),
      purgeOlderThan: (before, limit) => inner.purgeOlderThan(before, limit),
    };
  }

  /** The relay's publish: one settled result per job; waiting accepts learn theirs. */
  private async publish(jobs: readonly PublishableJob[]) {
    const results = await this.queue.publishSettled(jobs);
    let failure: unknown;
    jobs.forEach((job, i) => {
      const r = results[i]!;
      if (r.status === 'rejected') failure ??= r.reason;
      const w = this.waiting.get(job.requestId);
      if (!w) return;
      if (r.status === 'fulfilled') w.resolve();
      else w.reject(r.reason);
    });
    // The broker refuses: every request still waiting here would wait in vain — answer 503 now.
    if (failure !== undefined) this.rejectAll(failure);
    return results;
  }

  private rejectAll(err: unknown): void {
    for (const w of this.waiting.values()) w.reject(err);
  }

  /**
   * Waiters that are not settled quickly: another instance's relay may have published their job
   * (its confirm reached that process, not this one) — then the row is gone from the outbox and
   * the answer is 200. Rows still pending while the broker is unreachable or the relay fails get
   * their 503 now rather than at the timeout; an unreachable database gives 503 too.
   */
  private async sweep(): Promise<void> {
    if (this.sweeping || this.waiting.size === 0) return;
    this.sweeping = true;
    try {
      const now = Date.now();
      const old = [...this.waiting].filter(([, w]) => now - w.since >= SWEEP_AFTER_MS);
      if (old.length === 0) return;
      let pending: Set<string>;
      try {
        pending = await this.stores.outbox.pendingRequests(old.map(([id]) => id));
      } catch (err) {
        for (const [, w] of old) w.reject(err);
        return;
      }
      const failing = !this.queue.connected || this.relay.counters.failures > this.relayFailures;
      this.relayFailures = this.relay.counters.failures;
      for (const [id, w] of old) {
        if (!pending.has(id)) w.resolve();
        else if (failing) w.reject(new Error('RabbitMQ is not taking jobs'));
      }
    } finally {
      this.sweeping = false;
    }
  }

  private confirmed(requestId: string): { promise: Promise<void>; cancel(): void } {
    let timer: NodeJS.Timeout | undefined;
    const promise = new Promise<void>((resolve, reject) => {
      this.waiting.set(requestId, {
        since: Date.now(),
        resolve,
        reject: (err) => reject(err instanceof HookdError ? err : unavailable('queue', err)),
      });
      timer = setTimeout(
        () => reject(new HookdError(E.QUEUE_UNAVAILABLE, 'no broker confirm in time').withRetryAfter(1)),
        CONFIRM_WAIT_MS,
      );
    });
    promise.catch(() => undefined); // observed by accept, or dropped with cancel()
    return {
      promise,
      cancel: () => {
        clearTimeout(timer);
        this.waiting.delete(requestId);
      },
    };
  }

  async checkWritable(): Promise<void> {
    await Promise.all([this.stores.checkWritable(), this.queue.checkWritable()]);
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      clearInterval(this.sweeper);
      await this.relay.stop();
      await this.queue.close();
      await this.stores.close();
    })();
    return this.closing;
  }
}
