import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { E, HookdError, isHookdError, unavailable } from '../../../core/errors.js';
import { NewerSchemaError } from '../../newer-schema.js';
import { storeClosed, toStoreError } from '../errors.js';
import type { BackendLogger } from '../logger.js';
import type { OpArgs, OpName, OpResult } from '../ops/index.js';
import type { FromWriter, OpCall, OpOutcome, ToWriter, WriterInit } from './protocol.js';
import { writerEntry, type WriterEntry } from './writer-entry.js';

export interface WriterClientOptions {
  path: string;
  leaseMs: number;
  busyTimeoutMs: number;
  pragmas: string[];
  /** See WriterInit.lockPath. */
  lockPath?: string;
  logger: BackendLogger;
  /** Each fsync of the WAL that made commits durable, and how long it took (metrics). */
  onSync?: (ms: number) => void;
}

export interface CallOptions<A> {
  /** ArrayBuffers moved (not copied) to the writer thread; the caller must not use them again. */
  transfer?: ArrayBuffer[];
  /** Runs when the op is actually posted (batch formation), may still change args. */
  beforeSend?: (args: A) => void;
}

interface Pending {
  id: number;
  name: OpName;
  args: unknown;
  transfer: ArrayBuffer[] | undefined;
  beforeSend: ((args: never) => void) | undefined;
  resolve: (value: never) => void;
  reject: (err: unknown) => void;
}

type State = 'starting' | 'ready' | 'down' | 'closing' | 'closed';

/** After a writer failed to start, calls fail fast (503) for this long before the next attempt. */
const RESTART_BACKOFF_MS = 1_000;
const CLOSE_TIMEOUT_MS = 10_000;

/**
 * Main-thread side of the SQLite writer thread. Calls made in one event-loop turn go out as one
 * message (setImmediate); each call resolves with its own op's result once the transaction that
 * ran it has committed. If the thread dies, its pending calls fail with 503 and a new thread starts.
 */
export class WriterClient {
  private worker: Worker | undefined;
  private port: MessagePort | undefined;
  private state: State = 'down';
  private queued: Pending[] = [];
  private readonly inflight = new Map<number, Pending>();
  private flushScheduled = false;
  private nextId = 1;
  private restartAt = 0;
  private crashNext = false;
  private failSyncNext = false;
  private starting: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private readonly flushNow = (): void => this.flush();
  /** Committed transactions and the ops they carried (metrics, tests: group commit at work). */
  readonly counters = { transactions: 0, ops: 0 };
  /** When a write last failed for want of space (SQLITE_FULL); cleared by the backend's readiness check. */
  diskFullAt: number | undefined;

  private constructor(private readonly opts: WriterClientOptions) {}

  static async open(opts: WriterClientOptions): Promise<WriterClient> {
    const client = new WriterClient(opts);
    await client.spawn();
    return client;
  }

  call<K extends OpName>(name: K, args: OpArgs<K>, options?: CallOptions<OpArgs<K>>): Promise<OpResult<K>> {
    if (this.state === 'closing' || this.state === 'closed') return Promise.reject(storeClosed().beforeAnyWrite());
    return new Promise<OpResult<K>>((resolve, reject) => {
      this.queued.push({
        id: this.nextId++,
        name,
        args,
        transfer: options?.transfer,
        beforeSend: options?.beforeSend as ((args: never) => void) | undefined,
        resolve: resolve as (value: never) => void,
        reject,
      });
      if (this.flushScheduled) return;
      if (this.state === 'ready' && this.inflight.size === 0) {
        // The writer is idle: hand it this op now rather than at the end of the event-loop turn.
        // Under load this breaks the convoy where every connection waits on one commit while the
        // writer idles through the parsing of the next requests: commits overlap with parsing.
        this.flush();
        return;
      }
      this.flushScheduled = true;
      setImmediate(this.flushNow);
    });
  }

  /** Finish every queued op, close the database and end the thread. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  /** Test hook: the thread dies on receipt of the next batch, leaving that batch unanswered. */
  crashOnNextBatch(): void {
    this.crashNext = true;
  }

  /** Test hook: the writer's next fsync of the WAL fails (EIO), as a failing disk's would. */
  failNextSync(): void {
    this.failSyncNext = true;
  }

  /** Test hook: kill the thread now. */
  async terminate(): Promise<void> {
    await this.worker?.terminate();
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.queued.length === 0) return;
    if (this.state === 'ready') return this.send();
    if (this.state === 'down') {
      if (Date.now() >= this.restartAt) {
        this.spawn().catch(() => {}); // queued ops wait for it, and fail with it
      } else {
        this.failQueued(unavailable('store', new Error('the SQLite writer thread is down')));
      }
    }
    // 'starting': sent once the thread is ready.
  }

  private send(): void {
    const port = this.port!;
    const batch = this.queued;
    this.queued = [];
    const calls: OpCall[] = new Array(batch.length);
    let transfer: ArrayBuffer[] | undefined;
    const wasIdle = this.inflight.size === 0;
    for (let i = 0; i < batch.length; i++) {
      const p = batch[i]!;
      p.beforeSend?.(p.args as never);
      calls[i] = [p.id, p.name, p.args];
      if (p.transfer) (transfer ??= []).push(...p.transfer);
      this.inflight.set(p.id, p);
    }
    const msg: ToWriter = { t: 'ops', ops: calls };
    if (this.crashNext) {
      this.crashNext = false;
      msg.crash = true;
    }
    if (this.failSyncNext) {
      this.failSyncNext = false;
      msg.failNextSync = true;
    }
    // Keep the process alive while commits are pending; an idle writer does not.
    if (wasIdle) this.worker?.ref();
    try {
      port.postMessage(msg, transfer);
    } catch (err) {
      const failure = new HookdError(E.INTERNAL).withDetails({ message: (err as Error).message });
      for (const p of batch) {
        this.inflight.delete(p.id);
        p.reject(failure);
      }
    }
  }

  private settle(outcomes: OpOutcome[]): void {
    this.counters.transactions++;
    this.counters.ops += outcomes.length;
    for (const o of outcomes) {
      const p = this.inflight.get(o[0]);
      if (p === undefined) continue;
      this.inflight.delete(o[0]);
      if (o[1]) {
        // A request stored after the failure: writes work again (free space alone can mislead:
        // root writes into ext4's reserved blocks, which statfs's available count leaves out).
        if (p.name === 'acceptRequest') this.diskFullAt = undefined;
        p.resolve(o[2] as never);
      } else {
        if (o[2].code === 'SQLITE_FULL') this.diskFullAt = Date.now();
        p.reject(toStoreError(o[2]));
      }
    }
    if (this.inflight.size === 0 && this.state === 'ready') this.worker?.unref();
  }

  /** Ops never posted to the thread: nothing of theirs was written (a copy: `err` may be shared with in-flight ops). */
  private failQueued(err: unknown): void {
    const e = isHookdError(err) ? err.copy().beforeAnyWrite() : err;
    for (const p of this.queued.splice(0)) p.reject(e);
  }

  private failInflight(err: unknown): void {
    const pending = [...this.inflight.values()];
    this.inflight.clear();
    for (const p of pending) p.reject(err);
  }

  private spawn(): Promise<void> {
    this.state = 'starting';
    this.starting = writerEntry()
      .then((entry) => this.startThread(entry))
      .catch((err: unknown) => {
        // No thread came up (and none will report an exit): fail fast until the next attempt.
        if (this.state === 'starting' && this.worker === undefined) {
          this.state = 'down';
          this.restartAt = Date.now() + RESTART_BACKOFF_MS;
          this.failQueued(unavailable('store', err));
        }
        throw err instanceof HookdError || err instanceof NewerSchemaError ? err : unavailable('store', err);
      });
    return this.starting;
  }

  private startThread(entry: WriterEntry): Promise<void> {
    const { port1, port2 } = new MessageChannel();
    const init: WriterInit = {
      path: this.opts.path,
      leaseMs: this.opts.leaseMs,
      busyTimeoutMs: this.opts.busyTimeoutMs,
      pragmas: this.opts.pragmas,
      ...(this.opts.lockPath !== undefined ? { lockPath: this.opts.lockPath } : {}),
      port: port2,
    };
    const worker = new Worker(entry.entry, { eval: entry.eval, workerData: init, transferList: [port2] });
    this.worker = worker;
    this.port = port1;
    let ready = false;
    return new Promise<void>((resolve, reject) => {
      port1.on('message', (m: FromWriter) => {
        switch (m.t) {
          case 'results':
            if (m.syncMs !== undefined) this.opts.onSync?.(m.syncMs);
            return this.settle(m.r);
          case 'ready':
            ready = true;
            if (this.state === 'starting') this.state = 'ready';
            port1.unref();
            if (this.inflight.size === 0) worker.unref();
            resolve();
            if (this.queued.length > 0) this.flush();
            return;
          case 'syncFailed':
            this.opts.logger.error(
              { code: m.error.code, message: m.error.message },
              'fsync of the SQLite WAL failed: writes answer 503 until a checkpoint has made the whole WAL durable in the database file',
            );
            return;
          case 'fileGone':
            this.opts.logger.error(
              { code: m.error.code, message: m.error.message },
              'the SQLite database file was deleted or replaced while hookd ran: nothing written since would survive a restart, so every write answers 503 (readyz too); restart hookd',
            );
            return;
          case 'syncRecovered':
            this.opts.logger.info({}, 'SQLite WAL durable again after a failed fsync (checkpointed into the database file); writes resume');
            return;
          case 'fatal':
            // A newer hookd's database is no outage: its own message, not a 503.
            if (m.error.code === 'NewerSchemaError') return reject(new NewerSchemaError(m.error.message));
            return reject(unavailable('store', new Error(`${m.error.code}: ${m.error.message}`)));
          case 'closed':
            return;
        }
      });
      worker.on('error', (err) => {
        if (ready) this.opts.logger.error({ err }, 'SQLite writer thread failed');
        reject(err.name === 'NewerSchemaError' ? new NewerSchemaError(err.message) : unavailable('store', err));
      });
      worker.on('exit', (code) => {
        // Results the thread posted before it ended may still sit on the port: they are real commits.
        for (let r = receiveMessageOnPort(port1); r !== undefined; r = receiveMessageOnPort(port1)) {
          const m = r.message as FromWriter;
          if (m.t === 'results') this.settle(m.r);
        }
        port1.close();
        reject(unavailable('store', new Error(`SQLite writer thread exited during start (code ${code})`)));
        if (this.worker === worker) this.onExit(code, ready);
      });
    });
  }

  private onExit(code: number, wasReady: boolean): void {
    this.worker = undefined;
    this.port = undefined;
    const err = unavailable('store', new Error(`SQLite writer thread exited (code ${code})`));
    this.failInflight(err);
    if (this.state === 'closing' || this.state === 'closed') return;
    if (!wasReady) {
      this.state = 'down';
      this.restartAt = Date.now() + RESTART_BACKOFF_MS;
      this.failQueued(err);
      return;
    }
    this.opts.logger.error({ code }, 'SQLite writer thread died; starting a new one');
    this.spawn().then(
      () => this.opts.logger.info({}, 'SQLite writer thread restarted'),
      (startErr: unknown) => this.opts.logger.error({ err: startErr }, 'SQLite writer thread failed to restart'),
    );
  }

  private async shutdown(): Promise<void> {
    if (this.state === 'starting') await this.starting?.catch(() => {});
    const worker = this.worker;
    const port = this.port;
    this.state = 'closing';
    if (worker === undefined || port === undefined) {
      this.failQueued(storeClosed());
      this.state = 'closed';
      return;
    }
    if (this.queued.length > 0) this.send();
    worker.ref();
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    port.postMessage({ t: 'close' } satisfies ToWriter);
    const timer = setTimeout(() => {
      this.opts.logger.warn({}, 'SQLite writer thread did not close in time; terminating it');
      void worker.terminate();
    }, CLOSE_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
    this.state = 'closed';
    this.failInflight(storeClosed());
    this.failQueued(storeClosed());
  }
}
