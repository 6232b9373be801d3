import path from 'node:path';
import type { Logger } from 'pino';
import type { Config } from './config/config.js';
import { E, HookdError, isHookdError, unavailable } from './core/errors.js';
import { finishesWithin } from './core/finishes-within.js';
import { uuidv7 } from './core/ids.js';
import { READY_CHECK_TIMEOUT_MS } from './http/ops-routes.js';
import { attachmentIdsOf, type ReceivedMessage } from './core/message.js';
import { CarriedToDeletedFlow, openRabbitMqQueue, requestPayload, type RabbitMqQueue } from './queue/rabbitmq/index.js';
import type { Backend, FlowOwners } from './store/backend.js';
import { instanceExpireMs } from './store/membership.js';
import type { MessageCache } from './store/message-cache.js';
import { ACCEPT_STORED, type AcceptOptions, type AcceptOutcome, type RequestStore } from './store/contracts.js';
import { openPostgresBackend, openPostgresStores, PgFlowOwners, type PostgresStores, refuseMixedQueues, startOutboxRelay } from './store/postgres/index.js';
import { openSqliteBackend } from './store/sqlite/index.js';

/**
 * How long each part of a readiness check may take: less than /readyz waits for the whole
 * (READY_CHECK_TIMEOUT_MS), so that the answer names the part that is silent.
 */
const PART_CHECK_MS = READY_CHECK_TIMEOUT_MS - 250;

/**
 * A readiness check of several parts (PostgreSQL and RabbitMQ), run together: resolves when each
 * does; rejects with the first failure, or with a 503 naming a part that gave no answer within
 * PART_CHECK_MS (a connection that died silently answers nothing until a heartbeat notices).
 */
export async function checkEach(parts: Array<{ kind: 'store' | 'queue'; name: string; check: () => Promise<void> }>): Promise<void> {
  await Promise.all(
    parts.map(async (p) => {
      if (!(await finishesWithin(p.check(), PART_CHECK_MS))) throw unavailable(p.kind, `${p.name} gave no answer within ${PART_CHECK_MS} ms`);
    }),
  );
}

/**
 * Part of the composition root: the backend follows from the configuration.
 * - nothing set: embedded SQLite (requests and jobs in one file, one transaction);
 * - DATABASE_URL: PostgreSQL stores and the PostgreSQL queue;
 * - DATABASE_URL + RABBITMQ_URI: PostgreSQL stores, jobs through a transactional outbox to RabbitMQ.
 */
export interface BackendObservers {
  /** Distributed mode: ms from a job's publish to the broker's confirm. */
  onConfirmed?: (ms: number) => void;
  /** Embedded mode: each fsync of the WAL that made commits durable, in ms. */
  onWalSync?: (ms: number) => void;
  /** Embedded mode: the checkpointer restarted the WAL. */
  onWalRestart?: () => void;
}

export async function openBackend(config: Config, logger: Logger, messageCache: MessageCache, observers: BackendObservers = {}): Promise<Backend> {
  if (config.rabbitmqUri && !config.databaseUrl) {
    throw new Error('RABBITMQ_URI needs DATABASE_URL: requests and the outbox live in PostgreSQL');
  }
  if (!config.databaseUrl) {
    const file = path.join(config.dataDir, 'hookd.db');
    return openSqliteBackend({
      path: file,
      leaseMs: config.leaseMs,
      messageCache,
      logger,
      exclusive: true,
      vacuumOnStart: config.sqliteVacuumOnStart,
      ...(observers.onWalSync ? { onWalSync: observers.onWalSync } : {}),
      ...(observers.onWalRestart ? { onWalRestart: observers.onWalRestart } : {}),
    }).catch((err: unknown) => {
      // At start, an error of the file (permissions, a read-only disk) is the operator's to fix:
      // say which file and which setting.
      const e = err as Error;
      if (/SQLITE_CANTOPEN|EACCES|EROFS|EPERM|readonly/i.test(e.message)) throw new Error(`DATA_DIR: cannot open the database ${file} (${e.message})`);
      throw err;
    });
  }
  const pg = { connectionString: config.databaseUrl, schema: config.databaseSchema, messageCache, logger };
  if (!config.rabbitmqUri) return openPostgresBackend({ ...pg, leaseMs: config.leaseMs, instanceExpireMs: instanceExpireMs(config.flowRefreshMs) });
  const stores = await openPostgresStores({ ...pg, dispatch: 'outbox', outboxHoldMs: OUTBOX_HOLD_MS });
  let queue: RabbitMqQueue;
  try {
    await refuseMixedQueues(stores.db, 'rabbitmq', instanceExpireMs(config.flowRefreshMs));
    // Jobs of an earlier run on the PostgreSQL queue alone: the outbox relay publishes them.
    const adopted = await stores.outbox.adoptQueueJobs();
    if (adopted.moved > 0) logger.info({ count: adopted.moved }, 'jobs of the PostgreSQL queue moved to the outbox, for RabbitMQ');
    if (adopted.deadLeft > 0) {
      logger.warn(
        { count: adopted.deadLeft },
        'dead jobs of the PostgreSQL queue stay in its table and are not listed with RabbitMQ: retry them with the PostgreSQL queue (without RABBITMQ_URI) to run them',
      );
    }
    queue = await openRabbitMqQueue({
      url: config.rabbitmqUri,
      prefix: config.rabbitmqPrefix,
      // A flow held by one instance, just taken: looked at this often until its previous holder's consumer is gone.
      takeoverCheckMs: Math.min(config.flowRefreshMs, 1_000),
      logger,
      ...(observers.onConfirmed ? { onConfirmed: observers.onConfirmed } : {}),
      flowExists: async (flowId) => (await stores.flows.get(flowId)) !== undefined,
      // Its dead letters are in the broker, the executions here: one moved with the other.
      onRevive: {
        before: async (requestId) => void (await stores.executions.moveStatus([requestId], 'dead', 'retrying', Date.now())),
        failed: async (requestId) => void (await stores.executions.moveStatus([requestId], 'retrying', 'dead', Date.now())),
      },
      // A dismissed dead letter's request stays (docs/api.md): one only the dead letter held is stored first.
      beforeDiscard: async (request) => void (await stores.requests.recordCarried(request)),
    });
  } catch (err) {
    await stores.close();
    throw err;
  }
  const backend = new OutboxRabbitBackend(stores, queue, logger, config.jobPayloadBytes, new PgFlowOwners(stores.db, instanceExpireMs(config.flowRefreshMs)));
  if (config.rabbitmqAccept === 'broker') await backend.acceptByBrokerOnceUpgraded(instanceExpireMs(config.flowRefreshMs), config.flowRefreshMs);
  return backend;
}

/**
 * Outbox rows start held by the instance that accepted them for this long: it publishes them itself
 * right after the commit, and other relays only take rows whose hold ran out (that instance died,
 * or the broker refused). Matches the queue's confirm timeout, so a slow confirm is not doubled.
 */
const OUTBOX_HOLD_MS = 10_000;

/**
 * Confirmed rows are deleted in one statement per this many ms (or rows): they are held for
 * OUTBOX_HOLD_MS anyway, so waiting a little costs nothing and saves a statement per batch.
 */
const PUBLISHED_FLUSH_MS = 100;
const PUBLISHED_FLUSH_ROWS = 1_000;

/**
 * RABBITMQ_ACCEPT=broker: the largest body a job message carries. Larger requests (and those with
 * files, already written to PostgreSQL's attachment store) go the outbox way: every message goes
 * through a quorum queue's log on a majority of its nodes, and a large one costs the broker more
 * than the commit it saves (and every retry's copy carries it again).
 */
const CARRIED_BODY_MAX = 256 * 1024;

/** Whether a request goes to the broker alone (RABBITMQ_ACCEPT=broker): no file, a body of at most CARRIED_BODY_MAX. */
function carriable(m: ReceivedMessage): boolean {
  return m.rawBody.length <= CARRIED_BODY_MAX && attachmentIdsOf(m).length === 0;
}

/**
 * PostgreSQL + RabbitMQ. Consistency by a transactional outbox: the request row and its job's outbox
 * row commit in one PostgreSQL transaction (no job without its request, no acknowledged request
 * without its job). The accepting instance then publishes the job with a publisher confirm and
 * answers 2xx only once the broker holds it; the outbox row is deleted after the confirm. Broker
 * down → the publish fails fast → 503; the row stays, and a relay publishes it when its hold runs
 * out (at-least-once: a sender that retries with the same x-request-id is deduplicated).
 * See docs/distributed.md.
 */
class OutboxRabbitBackend implements Backend {
  readonly name = 'postgres+rabbitmq';
  readonly flows;
  readonly requests: RequestStore;
  readonly executions;
  readonly instances;
  readonly attachments;
  readonly settings;
  readonly flowOwners: FlowOwners;
  private readonly relay;
  /** Rows confirmed by the broker, deleted from the outbox together every PUBLISHED_FLUSH_MS. */
  private published: string[] = [];
  private publishedTimer: NodeJS.Timeout | undefined;
  private deleting = new Set<Promise<unknown>>();
  private closing: Promise<void> | undefined;
  /**
   * RABBITMQ_ACCEPT=broker is in effect: set, and no instance of an earlier build runs on this
   * database (one would dead-letter a carried request's job without the request: lost).
   * Undefined until the first look (acceptByBrokerOnceUpgraded), and without the setting.
   */
  private byBroker: boolean | undefined;
  private brokerCheck: NodeJS.Timeout | undefined;

  constructor(
    private readonly stores: PostgresStores,
    readonly queue: RabbitMqQueue,
    private readonly logger: Logger,
    /** RABBITMQ_JOB_PAYLOAD: the longest request JSON a job message carries, for flows that ask (0: none). */
    private readonly payloadLimit: number,
    /**
     * Every instance consumes every flow queue: a limited flow is held by one of them, for as long
     * as an instance counts as alive without a beat (renewed at every flow refresh).
     */
    flowOwners: FlowOwners,
  ) {
    this.flowOwners = flowOwners;
    this.flows = stores.flows;
    this.executions = stores.executions;
    this.instances = stores.instances;
    this.attachments = stores.attachments;
    this.settings = stores.settings;
    // For rows whose hold ran out: instances that died after a commit, publishes that failed.
    // Only for rows whose hold ran out: this process publishes its own rows right after the commit.
    this.relay = startOutboxRelay({ outbox: stores.outbox, publish: (jobs) => queue.publishSettled(jobs), logger, wakeOnCommit: false });
    const inner = stores.requests;
    this.requests = {
      accept: async (m: ReceivedMessage, options: AcceptOptions): Promise<AcceptOutcome> => {
        if (!queue.connected) throw unavailable('queue', new Error('RabbitMQ is not connected')).beforeAnyWrite();
        if (this.byBroker && options.fromSender === true && carriable(m)) return this.acceptByBroker(m, options);
        return this.acceptByOutbox(m, options);
      },
      recordCarried: (m) => inner.recordCarried(m),
      recordedLater: () => this.byBroker === true,
      get: (id) => inner.get(id),
      getForExecution: (id, job) => inner.getForExecution(id, job),
      list: (q) => inner.list(q),
      listSizes: (q) => inner.listSizes(q),
      listReceived: (r) => inner.listReceived(r),
      referencesAttachment: (id) => inner.referencesAttachment(id),
      purgeOlderThan: (before, limit) => inner.purgeOlderThan(before, limit),
    };
  }

  /** The transactional outbox: the request and its job committed in PostgreSQL, then the job confirmed by the broker. */
  private async acceptByOutbox(m: ReceivedMessage, options: AcceptOptions): Promise<AcceptOutcome> {
    const { outcome, job } = await this.stores.requests.acceptWithJob(m, options);
    if (job === undefined) return outcome;
    const payload = options.includeRequest === true ? requestPayload(m, this.payloadLimit) : undefined;
    try {
      await this.queue.publish([payload === undefined ? job : { ...job, payload }]);
    } catch (err) {
      throw isHookdError(err) ? err : unavailable('queue', err);
    }
    this.markPublished(job.id);
    return outcome;
  }

  /**
   * RABBITMQ_ACCEPT=broker: answer senders' webhooks from the broker alone, but only while every
   * instance on the database runs a build that records carried requests; looked at every
   * FLOW_REFRESH (a rolling upgrade: the outbox way until the last earlier instance is gone).
   */
  async acceptByBrokerOnceUpgraded(expireMs: number, everyMs: number): Promise<void> {
    let looking = false;
    const look = async (): Promise<void> => {
      // A silent database holds a query up to its timeout: one look at a time, not one per tick.
      if (looking) return;
      looking = true;
      let earlier: number;
      try {
        earlier = await this.stores.instances.earlier(expireMs);
      } catch {
        return; // the database is away: keep what was decided (its workers wait for it anyway)
      } finally {
        looking = false;
      }
      const byBroker = earlier === 0;
      if (byBroker === this.byBroker) return;
      this.byBroker = byBroker;
      if (byBroker) this.logger.info('RABBITMQ_ACCEPT=broker in effect: webhooks are answered once the broker confirmed them, and recorded by the workers');
      else {
        this.logger.warn(
          { instances: earlier },
          'RABBITMQ_ACCEPT=broker waits: instances of an earlier hookd run on this database, and would dead-letter a job without the request it carries; webhooks go the outbox way until they are upgraded',
        );
      }
    };
    await look();
    this.brokerCheck = setInterval(() => void look(), everyMs);
    this.brokerCheck.unref();
  }

  /**
   * The broker as the request's record: the job carries it, and the 2xx waits for its confirm
   * alone. The worker that takes the job writes the request to PostgreSQL before anything else
   * (runner.ts); a sender's retry with the same id is found there (its job is acked unrun).
   */
  private async acceptByBroker(m: ReceivedMessage, options: AcceptOptions): Promise<AcceptOutcome> {
    const payload = options.includeRequest === true ? requestPayload(m, this.payloadLimit) : undefined;
    const now = Date.now();
    const job = { id: uuidv7(now), flowId: m.flowId, requestId: m.id, maxAttempts: options.maxAttempts, enqueuedAt: now, carried: m };
    try {
      await this.queue.publish([payload === undefined ? job : { ...job, payload }]);
    } catch (err) {
      // Its flow was deleted while the request arrived: its job goes to the dead letters, and the
      // request is stored first, so that it does not live there alone.
      if (err instanceof CarriedToDeletedFlow) return this.acceptByOutbox(m, options);
      // Valid JSON nested thousands deep parses, but does not serialise (the stack runs out): the
      // sender's to fix, as the outbox way says (rows.ts), not an outage to retry.
      if (err instanceof RangeError) throw new HookdError(E.INVALID_BODY, 'JSON', 'nested too deeply to store');
      throw isHookdError(err) ? err : unavailable('queue', err);
    }
    return ACCEPT_STORED;
  }

  private markPublished(id: string): void {
    if (this.published.push(id) >= PUBLISHED_FLUSH_ROWS) return this.deletePublished();
    this.publishedTimer ??= setTimeout(() => this.deletePublished(), PUBLISHED_FLUSH_MS);
  }

  private deletePublished(): void {
    clearTimeout(this.publishedTimer);
    this.publishedTimer = undefined;
    const ids = this.published;
    if (ids.length === 0) return;
    this.published = [];
    // Lost, the row is published again by a relay once its hold ends: a duplicate job, which
    // the runner's one-execution-per-request rule absorbs.
    const p = this.stores.outbox
      .markPublished(ids)
      .catch((err: unknown) => this.logger.warn({ err, count: ids.length }, 'outbox: deleting published rows failed'));
    this.deleting.add(p);
    void p.finally(() => this.deleting.delete(p));
  }

  async checkWritable(): Promise<void> {
    // Webhooks need the broker alone: while PostgreSQL is down they wait there, and the API and
    // the workers answer 503 or wait (docs/distributed.md).
    const broker = { kind: 'queue' as const, name: 'RabbitMQ', check: () => this.queue.checkWritable() };
    await checkEach(this.byBroker === true ? [broker] : [{ kind: 'store', name: 'PostgreSQL', check: () => this.stores.checkWritable() }, broker]);
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      clearInterval(this.brokerCheck);
      await this.relay.stop();
      this.deletePublished();
      await Promise.all(this.deleting);
      await this.queue.close();
      await this.stores.close();
    })();
    return this.closing;
  }
}
