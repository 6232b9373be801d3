/**
 * PostgreSQL backend (distributed mode).
 *
 * - DATABASE_URL + RABBITMQ_URI: openPostgresStores({ dispatch: 'outbox' }) for flows, requests and
 *   executions, the RabbitMQ queue, and startOutboxRelay({ outbox: stores.outbox, publish }) to move
 *   committed jobs to the broker (contract in outbox.ts).
 * - DATABASE_URL alone: openPostgresBackend() — the same stores plus the PostgreSQL queue.
 */
export { openPostgresBackend, PostgresBackend, type PostgresBackendOptions } from './backend.js';
export { openPostgresStores, type PostgresStores, type PostgresStoresOptions } from './stores.js';
export { PgOutbox, DEFAULT_OUTBOX_LEASE_MS, type OutboxJob } from './outbox.js';
export { startOutboxRelay, type OutboxRelay, type OutboxRelayOptions } from './outbox-relay.js';
export { PgQueue, DEFAULT_LEASE_MS, SWEEP_MS, type PgQueueOptions } from './pg-queue.js';
export { PgDatabase, DEFAULT_SCHEMA, type PgConnectionOptions } from './database.js';
export { PgRequestStore, DEFAULT_GROUP_COMMIT } from './request-store.js';
export { PgExecutionStore } from './execution-store.js';
export { PgFlowStore } from './flow-store.js';
export { PgAttachmentStore, DEFAULT_CHUNK_BYTES, type PgAttachmentStoreOptions } from './attachment-store.js';
export { PgInstances } from './instances.js';
export { refuseMixedQueues, type QueueMode } from './queue-mode.js';
export { PgFlowOwners } from './flow-owners.js';
export { PgSettings } from './settings.js';
export type { Dispatch } from './accept-batch.js';
export type { GroupCommitOptions } from './group-commit.js';
export type { PgLogger } from './logger.js';
export { migrate } from './migrate.js';
