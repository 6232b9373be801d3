import type { Backend } from '../backend.js';
import type { PgExecutionStore } from './execution-store.js';
import type { PgFlowStore } from './flow-store.js';
import { PgQueue, type PgQueueOptions } from './pg-queue.js';
import type { PgRequestStore } from './request-store.js';
import type { PgAttachmentStore } from './attachment-store.js';
import type { PgInstances } from './instances.js';
import { refuseMixedQueues } from './queue-mode.js';
import type { PgSettings } from './settings.js';
import { openPostgresStores, type PostgresStores, type PostgresStoresOptions } from './stores.js';

export type PostgresBackendOptions = Omit<PostgresStoresOptions, 'dispatch'> &
  Omit<PgQueueOptions, 'instance'> & {
    /**
     * The instances beat in the registry (membership.ts) and count as gone after this long
     * without a beat: the queue then stops counting their consumers' leases against flow limits
     * and ends them.
     */
    instanceExpireMs?: number;
    /**
     * Whether this process may judge instances gone now (InstanceJudgement.steady). Default: its
     * own beats went through without a break for instanceExpireMs (PgInstances.steadyFor).
     * Tests that write the registry by hand say `() => true`.
     */
    instanceSteady?: () => boolean;
  };

/**
 * PostgreSQL alone (DATABASE_URL without RABBITMQ_URI): the stores plus the PostgreSQL queue, jobs
 * inserted by accept() in the request's transaction.
 */
export class PostgresBackend implements Backend {
  readonly name = 'postgres';
  readonly flows: PgFlowStore;
  readonly requests: PgRequestStore;
  readonly executions: PgExecutionStore;
  readonly instances: PgInstances;
  readonly attachments: PgAttachmentStore;
  readonly settings: PgSettings;
  private closing: Promise<void> | undefined;

  constructor(
    readonly stores: PostgresStores,
    readonly queue: PgQueue,
  ) {
    this.flows = stores.flows;
    this.requests = stores.requests;
    this.executions = stores.executions;
    this.instances = stores.instances;
    this.attachments = stores.attachments;
    this.settings = stores.settings;
  }

  checkWritable(): Promise<void> {
    return this.stores.checkWritable();
  }

  /** Halt consumers (leases are kept, as after a crash: stop consumers first to hand jobs back). */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.queue.close();
      await this.stores.close();
    })();
    return this.closing;
  }
}

export async function openPostgresBackend(opts: PostgresBackendOptions): Promise<PostgresBackend> {
  const stores = await openPostgresStores({ ...opts, dispatch: 'pg-queue' });
  const expireMs = opts.instanceExpireMs;
  const instance =
    expireMs === undefined
      ? {}
      : { instance: { id: stores.instances.id, expireMs, steady: opts.instanceSteady ?? (() => stores.instances.steadyFor(expireMs)) } };
  const queue = new PgQueue(stores.db, { ...(opts.leaseMs !== undefined ? { leaseMs: opts.leaseMs } : {}), ...instance });
  stores.requests.onCommitted(() => queue.jobsCommitted());
  try {
    if (expireMs !== undefined) await refuseMixedQueues(stores.db, 'postgres', expireMs);
    const adopted = await queue.sql.adoptOutbox();
    if (adopted > 0) stores.db.logger.info({ count: adopted }, 'postgres queue: jobs moved over from the outbox');
  } catch (err) {
    await stores.close();
    throw err;
  }
  return new PostgresBackend(stores, queue);
}
