import type { Dispatch } from './accept-batch.js';
import { PgAttachmentStore } from './attachment-store.js';
import { PgDatabase, type PgConnectionOptions } from './database.js';
import { storeClosed } from './errors.js';
import { PgExecutionStore } from './execution-store.js';
import { PgFlowStore } from './flow-store.js';
import { PgInstances } from './instances.js';
import type { GroupCommitOptions } from './group-commit.js';
import { migrate } from './migrate.js';
import { PgOutbox } from './outbox.js';
import { PgRequestStore } from './request-store.js';
import { PgSettings } from './settings.js';
import { unavailable } from '../../core/errors.js';
import { DEFAULT_MESSAGE_CACHE_BYTES, MessageCache } from '../message-cache.js';

export interface PostgresStoresOptions extends PgConnectionOptions {
  /** Where accept() records jobs: 'outbox' (default, for a broker) or 'pg-queue'. */
  dispatch?: Dispatch;
  /** Outbox rows start held for this long for the process that accepted them (see AcceptBatch). */
  outboxHoldMs?: number;
  /** Group commit of accept(): batch caps and batches in flight (defaults in request-store.ts). */
  groupCommit?: Partial<GroupCommitOptions>;
  /** Committed messages kept in memory until a worker here reads them back. Default: 32 MiB of them. */
  messageCache?: MessageCache;
}

export interface PostgresStores {
  readonly name: 'postgres';
  /** The pool and table names, for the PostgreSQL queue (pg-queue.ts). */
  readonly db: PgDatabase;
  readonly flows: PgFlowStore;
  readonly requests: PgRequestStore;
  readonly executions: PgExecutionStore;
  /** Relay side of the transactional outbox (empty unless dispatch is 'outbox'). */
  readonly outbox: PgOutbox;
  /** The hookd processes sharing this database (cluster-wide limits). */
  readonly instances: PgInstances;
  /** Files of requests, shared by every instance. */
  readonly attachments: PgAttachmentStore;
  /** Values every instance must agree on (the admin token's hash). */
  readonly settings: PgSettings;
  /** Resolves when PostgreSQL commits a write now (a heartbeat upsert); rejects with 503 otherwise. */
  checkWritable(): Promise<void>;
  /** Finish accept batches in flight, then close the pool. Idempotent; later calls reject with 503. */
  close(): Promise<void>;
}

/**
 * Open the PostgreSQL stores: connect, migrate the schema (advisory lock: safe when several
 * instances start together), and build the flow, request and execution stores on one pool.
 * Rejects with a 503 HookdError when PostgreSQL cannot be reached or migrated.
 */
export async function openPostgresStores(opts: PostgresStoresOptions): Promise<PostgresStores> {
  const db = new PgDatabase(opts);
  const startedAt = Date.now();
  try {
    await migrate(db);
  } catch (err) {
    await db.close();
    throw unansweredStart(err, db, Date.now() - startedAt);
  }
  const requests = new PgRequestStore(db, opts.dispatch ?? 'outbox', opts.groupCommit, opts.outboxHoldMs, opts.messageCache ?? new MessageCache(DEFAULT_MESSAGE_CACHE_BYTES));
  const executions = new PgExecutionStore(db);
  let closing: Promise<void> | undefined;
  return {
    name: 'postgres',
    db,
    flows: new PgFlowStore(db),
    requests,
    executions,
    outbox: new PgOutbox(db, requests),
    instances: new PgInstances(db, (opts.dispatch ?? 'outbox') === 'outbox' ? 'rabbitmq' : 'postgres'),
    attachments: new PgAttachmentStore(db),
    settings: new PgSettings(db),
    async checkWritable() {
      if (closing) throw storeClosed();
      await db.query(
        `INSERT INTO ${db.t.heartbeat} (id, at) VALUES (1, extract(epoch from clock_timestamp()) * 1000)
         ON CONFLICT (id) DO UPDATE SET at = excluded.at`,
        [],
        'hookd_heartbeat',
      );
    },
    close() {
      closing ??= (async () => {
        await requests.close();
        await executions.close();
        await db.close();
      })();
      return closing;
    },
  };
}

/**
 * The first connection, ended without an answer: pg says only that the connection was
 * "terminated" (unexpectedly, or due to the timeout). Say where, and which of the two it was: given
 * up after connectTimeoutMs (a host that drops packets, or a firewall), or closed by the other
 * side before that (a proxy or load balancer whose PostgreSQL is down, a server refusing more
 * connections) — a wait that never happened must not send the operator to the firewall.
 */
function unansweredStart(err: unknown, db: PgDatabase, elapsedMs: number): unknown {
  const message = err instanceof Error ? err.message : String(err);
  if (!/Connection terminated (unexpectedly|due to connection timeout)|timeout expired/i.test(message)) return err;
  let where = 'PostgreSQL';
  try {
    const url = new URL(String(db.clientConfig.connectionString));
    where = `PostgreSQL at ${url.hostname}:${url.port || '5432'}`;
  } catch {
    // Not a URL (a connection string of key=value pairs): said without the address.
  }
  const timeoutMs = Number(db.clientConfig.connectionTimeoutMillis ?? 0);
  const cause = message.replace(/^Storage is unavailable: /, '');
  if (timeoutMs > 0 && elapsedMs < timeoutMs * 0.9) {
    return unavailable('store', new Error(`${where} closed the connection before answering, after ${elapsedMs} ms (a proxy or load balancer whose PostgreSQL is down, or a server refusing connections?): ${cause}`));
  }
  return unavailable('store', new Error(`${where} did not answer within ${timeoutMs / 1000} s (a host that drops packets, or a firewall?): ${cause}`));
}
