import { closeSync, constants, mkdirSync, openSync, realpathSync, statfsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { isHookdError, unavailable } from '../../core/errors.js';
import { EmbeddedQueue } from '../../queue/embedded/embedded-queue.js';
import type { Backend } from '../backend.js';
import { DEFAULT_MESSAGE_CACHE_BYTES, MessageCache } from '../message-cache.js';
import { startCheckpointer, type Checkpointer } from './checkpointer.js';
import { DEFAULT_BUSY_TIMEOUT_MS } from './connection.js';
import { lockDatabaseFile, type FileLock } from './file-lock.js';
import { vacuumOnStart } from './vacuum.js';
import { SqliteExecutionStore } from './execution-store.js';
import { SqliteFlowStore } from './flow-store.js';
import { stderrLogger, type BackendLogger } from './logger.js';
import { Reader } from './reader.js';
import { SqliteRequestStore } from './request-store.js';
import { WriterClient } from './writer/writer-client.js';

export interface SqliteBackendOptions {
  /** Database file; its directory is created when missing. */
  path: string;
  /** Lease of a claimed job before another consumer may take it (crash recovery). Default 30 s. */
  leaseMs?: number;
  logger?: BackendLogger;
  /** How long a write waits for a lock held by another connection. Default 5 s. */
  busyTimeoutMs?: number;
  /**
   * Extra PRAGMAs for the writer connection, run after the defaults and migrations
   * (tests use `max_page_count = N` to provoke a real SQLITE_FULL).
   */
  writerPragmas?: string[];
  /** Committed messages kept in memory until the runner reads them back. Default: 32 MiB of them. */
  messageCache?: MessageCache;
  /**
   * Take the database file's lock (one process per file; a second one fails to open) and, holding
   * it, end the leases a previous process left behind at once instead of after leaseMs. hookd's
   * composition root sets it; tests that open the same file twice, as two processes would, do not.
   */
  exclusive?: boolean;
  /** WAL size past which the checkpointer restarts the WAL (checkpointer.ts). Default 16 MiB. */
  walRestartBytes?: number;
  /** How often the checkpointer runs. Default 250 ms. */
  checkpointIntervalMs?: number;
  /** Each fsync of the WAL that made commits durable, in ms (metrics). */
  onWalSync?: (ms: number) => void;
  /** The checkpointer restarted the WAL (metrics). */
  onWalRestart?: () => void;
  /**
   * Compact the file before use: gives the pages freed by deletions back to the disk (vacuum.ts).
   * Takes as long as writing the database once; every outcome is logged and the start goes on.
   * Only with `exclusive` (the file's lock held: no other hookd has it open).
   */
  vacuumOnStart?: boolean;
  /** Bytes free and in all on the database's disk (readiness after SQLITE_FULL); tests replace it. Default: statfs. */
  diskSpace?: () => { free: number; total: number };
}

/**
 * After a write failed with SQLITE_FULL, not ready until a request is stored again or the disk has
 * this much free (a tenth of a smaller disk, at least 1 MiB): the readiness check's own small write
 * may still fit in reused WAL pages while requests do not.
 */
export const DISK_FULL_MARGIN_BYTES = 64 * 1024 * 1024;

export const DEFAULT_LEASE_MS = 30_000;

export class SqliteBackend implements Backend {
  readonly name = 'sqlite';
  private closing: Promise<void> | undefined;

  constructor(
    /** Exposed for tests (crash hooks) and benchmarks. */
    readonly writer: WriterClient,
    private readonly reader: Reader,
    readonly flows: SqliteFlowStore,
    readonly requests: SqliteRequestStore,
    readonly executions: SqliteExecutionStore,
    readonly queue: EmbeddedQueue,
    private readonly checkpointer: Checkpointer,
    private readonly diskSpace: () => { free: number; total: number },
    private readonly lock?: FileLock,
  ) {}

  async checkWritable(): Promise<void> {
    if (this.writer.diskFullAt !== undefined) {
      const { free, total } = this.diskSpace();
      const margin = Math.max(1024 * 1024, Math.min(DISK_FULL_MARGIN_BYTES, Math.floor(total / 10)));
      if (free < margin) {
        throw unavailable('store', new Error(`the disk of the database is full (writes failed with SQLITE_FULL; ${free} bytes free, ready again from ${margin})`));
      }
      this.writer.diskFullAt = undefined;
    }
    await this.writer.call('touchHeartbeat', null);
  }

  /** Halt consumers (leases are kept, as after a crash: stop consumers first to hand jobs back). */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.queue.close();
      this.reader.close();
      await this.checkpointer.close();
      await this.writer.close();
      this.lock?.close();
    })();
    return this.closing;
  }
}

export async function openSqliteBackend(opts: SqliteBackendOptions): Promise<SqliteBackend> {
  if (opts.path === '' || opts.path === ':memory:') {
    throw new Error('the SQLite backend needs a file path (a writer thread and readers share it)');
  }
  const path = resolve(opts.path);
  const leaseMs = opts.leaseMs ?? DEFAULT_LEASE_MS;
  const busyTimeoutMs = opts.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
  const logger = opts.logger ?? stderrLogger;
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    // A new database file is created 0600 (SQLite gives its -wal and -shm files the database's
    // mode): every stored request is in it. An existing file keeps its mode.
    closeSync(openSync(path, constants.O_RDWR | constants.O_CREAT, 0o600));
  } catch (err) {
    throw unavailable('store', err);
  }
  // Not a 503: a second process on the same file is a configuration error, not an outage.
  const lock = opts.exclusive ? lockDatabaseFile(path) : undefined;
  if (lock && opts.vacuumOnStart) vacuumOnStart(path, { busyTimeoutMs, logger });
  let writer: WriterClient;
  try {
    // The writer creates and migrates the file before the readers open it.
    writer = await WriterClient.open({
      path,
      leaseMs,
      busyTimeoutMs,
      pragmas: opts.writerPragmas ?? [],
      logger,
      ...(lock ? { lockPath: lock.path } : {}),
      ...(opts.onWalSync ? { onSync: opts.onWalSync } : {}),
    });
  } catch (err) {
    lock?.close();
    throw err;
  }
  let reader: Reader;
  try {
    if (lock) {
      const ended = await writer.call('expireLeases', null);
      if (ended > 0) logger.info({ jobs: ended }, 'jobs leased by a previous process are delivered again now (not after their lease)');
    }
    reader = new Reader(path, busyTimeoutMs);
  } catch (err) {
    await writer.close();
    lock?.close();
    throw isHookdError(err) ? err : unavailable('store', err);
  }
  const queue = new EmbeddedQueue({ writer, reader, leaseMs, logger });
  return new SqliteBackend(
    writer,
    reader,
    new SqliteFlowStore(writer, reader),
    new SqliteRequestStore(writer, reader, queue, opts.messageCache ?? new MessageCache(DEFAULT_MESSAGE_CACHE_BYTES, { whenFull: 'keep-held' })),
    new SqliteExecutionStore(writer, reader),
    queue,
    startCheckpointer(path, {
      busyTimeoutMs,
      ...(opts.walRestartBytes !== undefined ? { restartBytes: opts.walRestartBytes } : {}),
      ...(opts.checkpointIntervalMs !== undefined ? { intervalMs: opts.checkpointIntervalMs } : {}),
      onError: (message) => logger.warn({ message }, 'WAL checkpoint failed'),
      ...(opts.onWalRestart ? { onRestart: opts.onWalRestart } : {}),
    }),
    opts.diskSpace ??
      (() => {
        const s = statfsSync(dirname(realpathSync(path))); // the disk the file is on (a symlink may lead elsewhere)
        return { free: s.bavail * s.bsize, total: s.blocks * s.bsize };
      }),
    lock,
  );
}
