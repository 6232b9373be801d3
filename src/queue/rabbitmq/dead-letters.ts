import type { Channel, Connection, SyncMessage } from 'rabbitmq-client';
import { isHookdError, unavailable } from '../../core/errors.js';
import { afterCursor, type DeadLetter, type DeadLetterQuery } from '../../core/job.js';
import { decodeJob, toDeadLetter, type JobMessage } from './job-message.js';
import type { QueueLogger } from './logger.js';

export interface DeadLetterScanOptions {
  conn: Connection;
  /** The connection is up and not blocked (ConsumerHost.ready). */
  ready(): boolean;
  deadQueue: string;
  /** Messages looked at per scan at most. */
  scanLimit: number;
  deliveryLimit: number;
  logger: QueueLogger;
}

/** What a scan does with the message it looked at: hand it back later, or remove it (and go on, or stop). */
type Visit = 'keep' | 'ack' | 'ack-and-stop';

/** After a scan, how long to wait for the dead queue to count what it was handed back: 20 × 10 ms at most. */
const RECOUNT_TRIES = 20;
const RECOUNT_PAUSE_MS = 10;

/**
 * Reads the dead-letter queue the only way AMQP allows: basic.get without ack, message by message,
 * holding each one, then handing all of them back in one basic.nack(requeue). An admin action, O(n)
 * in the queue length, capped at scanLimit messages. While a scan runs, the messages it holds are
 * invisible to other scans (another process listing or retrying at the same moment may miss them);
 * `held` lets stats() still count them.
 */
export class DeadLetterScanner {
  /** Dead letters held by scans of this process right now. */
  held = 0;

  constructor(private readonly opts: DeadLetterScanOptions) {}

  /** Newest first (deadAt, then id), optionally of one flow, from after `before`. */
  async list(query: DeadLetterQuery): Promise<DeadLetter[]> {
    const found: DeadLetter[] = [];
    await this.scan((msg, job) => {
      if (job !== undefined && (query.flowId === undefined || job.flowId === query.flowId)) {
        const dead = toDeadLetter(job, msg.headers, this.opts.deliveryLimit);
        if (afterCursor(dead, query.before)) found.push(dead);
      }
      return 'keep';
    });
    found.sort((a, b) => b.deadAt - a.deadAt || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
    return found.slice(0, Math.max(0, query.limit));
  }

  /**
   * Find the dead letter with this job id; when found, `revive` publishes it again (confirmed) —
   * or does nothing, to discard it — before it is removed from the dead letters. False when not
   * found.
   */
  async take(jobId: string, revive: (job: JobMessage) => Promise<void>): Promise<boolean> {
    let taken = false;
    await this.scan(async (_msg, job) => {
      if (job?.id !== jobId) return 'keep';
      await revive(job);
      taken = true;
      return 'ack-and-stop';
    });
    return taken;
  }

  /**
   * Take every dead letter `pick` chooses (in queue order: oldest first), up to `limit`: each is
   * handed to `revive` (published again, confirmed) and then removed from the dead letters. Returns
   * how many were taken, and how many `pick` wanted beyond the limit or `revive` declined.
   */
  async takeAll(
    pick: (dead: DeadLetter) => boolean,
    limit: number,
    revive: (job: JobMessage) => Promise<boolean>,
  ): Promise<{ taken: number; left: number }> {
    let left = 0;
    // A job retried here can fail again at once and come back behind the scan: taken once per
    // call (by id), and only what the queue held when the scan began is looked at.
    const taken = new Set<string>();
    await this.scan(
      async (msg, job) => {
        if (job === undefined || taken.has(job.id) || !pick(toDeadLetter(job, msg.headers, this.opts.deliveryLimit))) return 'keep';
        if (taken.size < limit && (await revive(job))) {
          taken.add(job.id);
          return 'ack';
        }
        left++;
        return 'keep';
      },
      { onlyWhatWasThere: true },
    );
    return { taken: taken.size, left };
  }

  private async scan(
    visit: (msg: SyncMessage, job: JobMessage | undefined) => Visit | Promise<Visit>,
    options: { onlyWhatWasThere?: boolean } = {},
  ): Promise<void> {
    const { conn, deadQueue, scanLimit } = this.opts;
    if (!this.opts.ready()) throw unavailable('queue', 'RabbitMQ is unreachable (reconnecting)');
    let ch: Channel;
    try {
      ch = await conn.acquire();
    } catch (err) {
      throw unavailable('queue', err);
    }
    let holding = 0;
    let lastTag = 0;
    /** The dead queue's count after the last basic.get: what it holds besides this scan's messages. */
    let remaining = 0;
    /** With onlyWhatWasThere: the messages the queue held at the first get (it counts the rest). */
    let budget = scanLimit;
    try {
      for (let seen = 0; seen < Math.min(scanLimit, budget); seen++) {
        const msg = await ch.basicGet({ queue: deadQueue });
        if (msg === undefined) break;
        if (seen === 0 && options.onlyWhatWasThere) budget = 1 + (msg.messageCount ?? scanLimit);
        holding++;
        this.held++;
        remaining = msg.messageCount ?? 0;
        let job: JobMessage | undefined;
        try {
          job = decodeJob(msg.body);
        } catch (err) {
          this.opts.logger.warn({ err, messageId: msg.messageId }, 'rabbitmq queue: undecodable dead letter skipped');
        }
        const verdict = await visit(msg, job);
        if (verdict !== 'keep') {
          ch.basicAck({ deliveryTag: msg.deliveryTag });
          holding--;
          this.held--;
          if (verdict === 'ack-and-stop') break;
          continue;
        }
        // The hand-back below nacks up to this tag: never an acked one (the broker would close
        // the channel on an unknown tag, after the ack: a retried job answered 503).
        lastTag = msg.deliveryTag;
        if (seen === scanLimit - 1) {
          this.opts.logger.warn({ scanLimit }, 'rabbitmq queue: dead-letter scan stopped at its limit');
        }
      }
      if (holding > 0) {
        // Everything still held goes back in one go. A passive declare on the same channel is
        // answered after the channel processed the nack, but a quorum queue counts the returned
        // messages a moment later (its log applies the return on its own): wait, briefly, until it
        // counts what was handed back on top of what it still held, so that stats() right after a
        // scan are right.
        ch.basicNack({ deliveryTag: lastTag, multiple: true, requeue: true });
        for (let i = 0; i < RECOUNT_TRIES; i++) {
          const { messageCount } = await ch.queueDeclare({ queue: deadQueue, passive: true });
          if (messageCount >= remaining + holding) break;
          await new Promise((r) => setTimeout(r, RECOUNT_PAUSE_MS));
        }
      }
    } catch (err) {
      throw isHookdError(err) ? err : unavailable('queue', err);
    } finally {
      this.held -= holding;
      // Closing also requeues whatever the nack above did not reach (error paths).
      await ch.close().catch(() => {});
    }
  }
}
