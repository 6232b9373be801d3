import pg from 'pg';
import { storeClosed, toStoreError } from './errors.js';
import { stderrLogger, type PgLogger } from './logger.js';

export interface PgConnectionOptions {
  /** postgres://user:pass@host:port/db?… (DATABASE_URL). */
  connectionString: string;
  /**
   * Schema that holds hookd's tables; created when missing (needs CREATE on the database then).
   * Default `public`. Several hookd deployments can share a database with one schema each.
   */
  schema?: string;
  /** Pool size per process. Default 10. */
  poolMax?: number;
  /** Connecting fails (→ 503) after this long. Default 5 s. */
  connectTimeoutMs?: number;
  /**
   * Server-side statement_timeout of every connection: a statement stuck behind a lock or a stalled
   * server fails (→ 503) instead of holding the webhook sender. Default 15 s; 0 disables.
   */
  statementTimeoutMs?: number;
  /** application_name, shown in pg_stat_activity. Default `hookd`. */
  applicationName?: string;
  logger?: PgLogger;
}

export const DEFAULT_SCHEMA = 'public';
const DEFAULT_POOL_MAX = 10;
const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
const DEFAULT_STATEMENT_TIMEOUT_MS = 15_000;
/** Client-side guard on top of statement_timeout, for a server that stopped answering at all. */
const QUERY_TIMEOUT_MARGIN_MS = 5_000;

/** Plain identifiers only: they are interpolated into SQL and into a NOTIFY channel name. */
const SCHEMA_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** Schema-qualified table names: SQL never depends on a connection's search_path. */
export interface Tables {
  readonly flows: string;
  readonly flowDeletions: string;
  readonly requests: string;
  readonly requestAttachments: string;
  readonly jobs: string;
  readonly outbox: string;
  readonly executions: string;
  readonly steps: string;
  readonly heartbeat: string;
  readonly instances: string;
  readonly flowOwners: string;
  readonly flowHolders: string;
  readonly settings: string;
  readonly attachments: string;
  readonly attachmentChunks: string;
  readonly migrations: string;
}

/**
 * Epoch milliseconds (sub-ms) on the database clock. `now()` is the start of the (single-statement)
 * transaction: stable, so it can drive index scans. Queue times (run_at, lease_until) are always
 * set and compared on this one clock, so hookd hosts with skewed clocks agree on what is due.
 */
export const NOW_MS = '(extract(epoch from now()) * 1000)::float8';

/** A statement inside PgDatabase.transaction(). */
export type TransactionQuery = (text: string, values?: unknown[], name?: string) => Promise<pg.QueryResult>;

/**
 * The pool and naming shared by the stores and the queue. Every query maps its failure to a
 * HookdError (503 when PostgreSQL cannot be used, 500 for a statement error); after close() every
 * call rejects with 503.
 */
export class PgDatabase {
  readonly pool: pg.Pool;
  readonly schema: string;
  readonly t: Tables;
  readonly logger: PgLogger;
  /** For dedicated connections (migrations, LISTEN): same server, same settings. */
  readonly clientConfig: pg.ClientConfig;
  private closedFlag = false;
  private closing: Promise<void> | undefined;
  private pipelinedPool: pg.Pool | undefined;

  constructor(opts: PgConnectionOptions) {
    const schema = opts.schema ?? DEFAULT_SCHEMA;
    if (!SCHEMA_PATTERN.test(schema)) {
      throw new Error(`invalid PostgreSQL schema name ${JSON.stringify(schema)} (letters, digits, _; ≤ 63)`);
    }
    this.schema = schema;
    this.logger = opts.logger ?? stderrLogger;
    const s = quoteIdent(schema);
    this.t = {
      flows: `${s}.flows`,
      flowDeletions: `${s}.flow_deletions`,
      requests: `${s}.requests`,
      requestAttachments: `${s}.request_attachments`,
      jobs: `${s}.jobs`,
      outbox: `${s}.outbox`,
      executions: `${s}.executions`,
      steps: `${s}.execution_steps`,
      heartbeat: `${s}.heartbeat`,
      instances: `${s}.instances`,
      flowOwners: `${s}.flow_owners`,
      flowHolders: `${s}.flow_holders`,
      settings: `${s}.settings`,
      attachments: `${s}.attachments`,
      attachmentChunks: `${s}.attachment_chunks`,
      migrations: `${s}.schema_migrations`,
    };
    const statementTimeout = opts.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS;
    this.clientConfig = {
      connectionString: opts.connectionString,
      application_name: opts.applicationName ?? 'hookd',
      connectionTimeoutMillis: opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      keepAlive: true,
      ...(statementTimeout > 0
        ? { statement_timeout: statementTimeout, query_timeout: statementTimeout + QUERY_TIMEOUT_MARGIN_MS }
        : {}),
    };
    this.pool = new pg.Pool({ ...this.clientConfig, max: opts.poolMax ?? DEFAULT_POOL_MAX });
    // An idle connection that the server or network drops emits here; without a listener the
    // process would crash. The pool discards it and opens a new one on demand.
    // pg hangs the whole client on the error (parsers, type tables, settings: tens of KB in one
    // line): its name, code and message say what happened.
    this.pool.on('error', this.idleConnectionLost);
  }

  private readonly idleConnectionLost = (err: Error & { code?: string }): void =>
    this.logger.warn(
      { err: { type: err.name, message: err.message, ...(err.code !== undefined ? { code: err.code } : {}) } },
      'postgres: idle connection lost (the pool opens a new one when needed)',
    );

  get closed(): boolean {
    return this.closedFlag;
  }

  /**
   * A small pool of connections in pipeline mode: queries given to one client are all sent at once
   * and answered in order, so a group of statements costs one round trip instead of one each
   * (write-group.ts). With a database 40 ms away, a group of 50 statements took 4 s one by one.
   * Only for callers that send a whole transaction at once; the main pool is not pipelined.
   */
  get pipelined(): pg.Pool {
    if (this.pipelinedPool === undefined) {
      this.pipelinedPool = new pg.Pool({ ...this.clientConfig, pipeline: true, max: 2 });
      this.pipelinedPool.on('error', this.idleConnectionLost);
    }
    return this.pipelinedPool;
  }

  /**
   * Run one statement (its own transaction unless the text says otherwise). `name` makes it a
   * prepared statement, parsed once per connection: for fixed hot-path texts.
   */
  async query<R extends object = Record<string, unknown>>(
    text: string,
    values?: unknown[],
    name?: string,
  ): Promise<pg.QueryResult<R & pg.QueryResultRow>> {
    if (this.closedFlag) throw storeClosed();
    try {
      const config = name === undefined ? { text, values } : { name, text, values };
      return await this.pool.query<R & pg.QueryResultRow>(config);
    } catch (err) {
      throw this.closedFlag ? storeClosed() : toStoreError(err);
    }
  }

  /**
   * Run `fn` in one transaction on one connection: committed when it resolves, rolled back when it
   * rejects (with its error). `query` runs a statement in it (`name`: prepared, as in query()).
   */
  async transaction<T>(fn: (query: TransactionQuery) => Promise<T>): Promise<T> {
    if (this.closedFlag) throw storeClosed();
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw this.closedFlag ? storeClosed() : toStoreError(err);
    }
    let broken: unknown;
    const onError = (err: Error): void => {
      broken ??= err;
    };
    client.on('error', onError);
    const mapped = (err: unknown): unknown => (this.closedFlag ? storeClosed() : toStoreError(err));
    const query = async (text: string, values?: unknown[], name?: string): Promise<pg.QueryResult> => {
      try {
        return await client.query(name === undefined ? { text, values } : { name, text, values });
      } catch (err) {
        // Not an error the server answered (a lost connection, a client-side timeout with the
        // query still pending): the connection cannot be used again.
        if (!(err instanceof pg.DatabaseError)) broken ??= err;
        throw mapped(err);
      }
    };
    try {
      await query('BEGIN');
      let result: T;
      try {
        result = await fn(query);
      } catch (err) {
        if (broken === undefined) await client.query('ROLLBACK').catch((e: unknown) => (broken ??= e));
        throw err;
      }
      await query('COMMIT');
      return result;
    } finally {
      client.removeListener('error', onError);
      // A connection that failed mid-transaction is not given back to the pool.
      client.release(broken === undefined ? undefined : broken instanceof Error ? broken : true);
    }
  }

  /** Close the pool: queries in flight finish first, later calls reject with 503. Idempotent. */
  close(): Promise<void> {
    this.closedFlag = true;
    this.closing ??= Promise.all([this.pool.end(), this.pipelinedPool?.end()]).then(() => undefined).catch((err: unknown) => {
      this.logger.warn({ err }, 'postgres: closing the pool failed');
    });
    return this.closing;
  }
}
