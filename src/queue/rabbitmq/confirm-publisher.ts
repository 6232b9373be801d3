import type { Channel, Connection, Envelope, ReturnedMessage } from 'rabbitmq-client';
import { unavailable, type HookdError } from '../../core/errors.js';
import type { QueueLogger } from './logger.js';
import { isNotFound } from './topology.js';

export interface ConfirmPublisherOptions {
  /** Publishes awaiting their confirm at most; beyond that send() fails at once (503). */
  maxUnconfirmed: number;
  /** A publish not confirmed within this time fails (503); the broker may still have it. */
  confirmTimeoutMs: number;
  logger: QueueLogger;
  /** Send the publishes of one event-loop turn in one socket write (default true; see corkForTick). */
  coalesceWrites?: boolean;
  /**
   * A publish came back unroutable (a queue of the topology is gone), or its exchange does not
   * exist (the channel closed with NOT_FOUND): the topology was probably deleted by hand.
   */
  onTopologyMissing?: () => void;
}

interface Pending {
  readonly id: string;
  readonly at: number;
  done: boolean;
  resolve(): void;
  reject(err: HookdError): void;
}

/**
 * Pipelined publishing with publisher confirms on one channel: any number of publishes are on the
 * wire at once, each promise settles on its own basic.ack / basic.nack, so callers waiting for a
 * confirm (a 2xx after the broker has the job) never queue behind each other.
 *
 * Fails fast instead of buffering: while the connection is down or blocked (resource alarm), or
 * when maxUnconfirmed publishes are already waiting, send() rejects at once with a 503 HookdError.
 * Every publish is mandatory: a message no queue takes (its flow queue deleted) fails instead of
 * being confirmed into the void.
 */
export class ConfirmPublisher {
  private ch: Channel | undefined;
  private opening: Promise<Channel> | undefined;
  /** Insertion order is publish order: the timeout sweep stops at the first young entry. */
  private readonly pending = new Set<Pending>();
  /** messageId → returns not yet matched with their confirm. */
  private readonly returned = new Map<string, number>();
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;
  /** The socket is corked until the end of this turn (corkForTick). */
  private corked = false;

  constructor(
    private readonly conn: Connection,
    private readonly opts: ConfirmPublisherOptions,
  ) {
    this.sweeper = setInterval(() => this.sweep(), Math.max(50, Math.min(1_000, opts.confirmTimeoutMs / 4)));
    this.sweeper.unref();
  }

  /**
   * The connection can take publishes: conn.ready, except that it reads false for the rest of a
   * turn this publisher corked (the library corks to mean 'blocked').
   */
  get ready(): boolean {
    return this.corked || this.conn.ready;
  }

  get unconfirmed(): number {
    return this.pending.size;
  }

  send(envelope: Envelope & { messageId: string }, body: Buffer): Promise<void> {
    if (this.closed) return Promise.reject(unavailable('queue', 'the RabbitMQ queue is closed'));
    // While corked by corkForTick, conn.ready reads false (the library corks to mean 'blocked'):
    // the first send of this turn found it ready. A frame read before the uncork (blocked, close)
    // leaves this turn's later publishes waiting on the socket: they fail at the confirm timeout.
    if (!this.ready) return Promise.reject(unavailable('queue', 'RabbitMQ is unreachable or blocked (reconnecting)'));
    if (this.pending.size >= this.opts.maxUnconfirmed) {
      return Promise.reject(unavailable('queue', `${this.pending.size} publishes are waiting for a broker confirm`));
    }
    return new Promise<void>((resolve, reject) => {
      const p: Pending = { id: envelope.messageId, at: Date.now(), done: false, resolve, reject };
      this.pending.add(p);
      const publish = (ch: Channel): void => {
        ch.basicPublish({ ...envelope, mandatory: true }, body).then(
          () => this.confirmed(p),
          (err: unknown) => {
            if (isNotFound(err)) this.opts.onTopologyMissing?.();
            this.fail(p, err);
          },
        );
      };
      const ch = this.ch;
      this.corkForTick();
      if (ch?.active) publish(ch);
      else this.channel().then(publish, (err: unknown) => this.fail(p, err));
    });
  }

  /**
   * rabbitmq-client writes every publish (method, header and body frames) to the socket on its own,
   * a system call each (a sixth of the CPU of an ingest that publishes per request). The publishes
   * of one event-loop turn are corked together and leave in one write at its end (setImmediate:
   * after the I/O callbacks of this turn, so the requests that arrived together — or that a group
   * commit resolved together — share it; microseconds of added latency). `npm run bench:publish`
   * compares both (docs/benchmarks.md). The socket is the library's private field: without it
   * (another version) publishing works as before, one write each.
   */
  private corkForTick(): void {
    if (this.corked || this.opts.coalesceWrites === false) return;
    const socket = (this.conn as unknown as { _socket?: { cork?(): void; uncork?(): void } })._socket;
    if (typeof socket?.cork !== 'function' || typeof socket.uncork !== 'function') return;
    this.corked = true;
    socket.cork();
    setImmediate(() => {
      this.corked = false;
      socket.uncork!();
    });
  }

  /** Stop taking publishes, wait (up to the confirm timeout) for those in flight, close the channel. */
  async close(): Promise<void> {
    this.closed = true;
    const deadline = Date.now() + this.opts.confirmTimeoutMs;
    while (this.pending.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    clearInterval(this.sweeper);
    for (const p of this.pending) this.fail(p, 'the RabbitMQ queue is closed');
    const ch = this.ch ?? (await this.opening?.catch(() => undefined));
    this.ch = undefined;
    await ch?.close().catch(() => {});
  }

  private channel(): Promise<Channel> {
    this.opening ??= (async () => {
      const ch = await this.conn.acquire();
      try {
        ch.on('basic.return', (msg: ReturnedMessage) => this.onReturn(msg));
        ch.once('close', () => {
          if (this.ch === ch) this.ch = undefined;
          // Returns whose confirm never came (the channel went between the two): their publishes
          // failed with the channel; kept, an entry would fail a later publish of the same job.
          this.returned.clear();
        });
        await ch.confirmSelect();
      } catch (err) {
        await ch.close().catch(() => {});
        throw err;
      }
      if (this.closed) {
        await ch.close().catch(() => {});
        throw new Error('the RabbitMQ queue is closed');
      }
      this.ch = ch;
      return ch;
    })().finally(() => {
      this.opening = undefined;
    });
    return this.opening;
  }

  private onReturn(msg: ReturnedMessage): void {
    const id = msg.messageId ?? '';
    this.returned.set(id, (this.returned.get(id) ?? 0) + 1);
    this.opts.logger.warn(
      { messageId: id, exchange: msg.exchange, routingKey: msg.routingKey, reply: msg.replyText },
      'rabbitmq queue: a job was returned unroutable (is the topology missing?)',
    );
    this.opts.onTopologyMissing?.();
  }

  /**
   * The broker acks a returned (unroutable mandatory) message right after basic.return, which
   * rabbitmq-client emits on setImmediate, while the ack settles in a microtask: look at each
   * confirm on a setImmediate of its own, queued behind the return of the same message. (One
   * flush for every confirm of a turn would run before a return decoded after the turn's first
   * ack, and count that message as confirmed: a 2xx for a job no queue took.)
   */
  private confirmed(p: Pending): void {
    setImmediate(this.settleConfirmed, p);
  }

  private readonly settleConfirmed = (p: Pending): void => {
    const r = this.returned.get(p.id);
    if (r !== undefined) {
      if (r <= 1) this.returned.delete(p.id);
      else this.returned.set(p.id, r - 1);
      this.fail(p, 'no queue took the message (unroutable)');
      return;
    }
    if (p.done) return;
    p.done = true;
    this.pending.delete(p);
    p.resolve();
  };

  private fail(p: Pending, cause: unknown): void {
    if (p.done) return;
    p.done = true;
    this.pending.delete(p);
    p.reject(unavailable('queue', cause));
  }

  private sweep(): void {
    const limit = Date.now() - this.opts.confirmTimeoutMs;
    for (const p of this.pending) {
      if (p.at > limit) break;
      this.fail(p, `no broker confirm within ${this.opts.confirmTimeoutMs} ms`);
    }
  }
}
