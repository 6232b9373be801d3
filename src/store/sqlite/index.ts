export { openSqliteBackend, SqliteBackend, DEFAULT_LEASE_MS, type SqliteBackendOptions } from './backend.js';
export type { BackendLogger } from './logger.js';
