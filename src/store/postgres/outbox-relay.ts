import { RecurringFailure } from '../../core/repeated-log.js';
import { stderrLogger, type PgLogger } from './logger.js';
import type { OutboxJob, PgOutbox } from './outbox.js';
import { DEFAULT_OUTBOX_LEASE_MS } from './outbox.js';

export interface OutboxRelayOptions {
  outbox: PgOutbox;
  /**
   * Hand the jobs to the broker; resolve only once it holds them (publisher confirms). Either
   * resolve with nothing (all confirmed) or with one settled result per job, in order (e.g.
   * RabbitMqQueue.publishSettled): confirmed rows are deleted, the others retried after
   * retryDelayMs. Throwing retries them all. Jobs may come twice (see PgOutbox).
   */
  publish(jobs: readonly OutboxJob[]): Promise<void | ReadonlyArray<PromiseSettledResult<unknown>>>;
  /** Rows per claim. Default 256. */
  batchSize?: number;
  /** How long a claim keeps other relays off the rows. Default 30 s: longer than a publish takes. */
  leaseMs?: number;
  /** Poll for rows this process was not told about (other instances, expired leases). Default 1 s. */
  pollMs?: number;
  /** Wait after a failed publish or database error. Default 1 s. */
  retryDelayMs?: number;
  /**
   * Look at once after every local commit (default true). False when the accepting process
   * publishes its own rows (they start held for it): a look after each commit would only find
   * them held, one wasted statement per accept batch; polling still finds expired holds.
   */
  wakeOnCommit?: boolean;
  logger?: PgLogger;
}

export interface OutboxRelay {
  /** Look for rows now (it also runs on every local commit and every pollMs). */
  kick(): void;
  /** Stop polling; resolves once the publish in flight, if any, has finished. */
  stop(): Promise<void>;
  readonly counters: { readonly published: number; readonly failures: number };
}

/**
 * A relay loop over PgOutbox: claim → publish → markPublished, woken by local commits and by a poll
 * timer. One loop per process is enough (claims are batched); several processes share the outbox.
 */
export function startOutboxRelay(o: OutboxRelayOptions): OutboxRelay {
  const batchSize = o.batchSize ?? 256;
  const leaseMs = o.leaseMs ?? DEFAULT_OUTBOX_LEASE_MS;
  const pollMs = o.pollMs ?? 1_000;
  const retryDelayMs = o.retryDelayMs ?? 1_000;
  const logger = o.logger ?? stderrLogger;
  const counters = { published: 0, failures: 0 };
  // Both fail at every retry while the database or the broker is down: one line, summed up, then 'works again'.
  const claimFailure = new RecurringFailure(logger, 'outbox relay: claim failed; retrying', 'outbox relay: claims work again');
  const publishFailure = new RecurringFailure(logger, 'outbox relay: publish failed; retrying', 'outbox relay: publishing works again');
  let running: Promise<void> | undefined;
  let again = false;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  /** After a failure, commits do not wake the relay before the retry delay (no hammering). */
  let pausedUntil = 0;

  const schedule = (ms: number): void => {
    if (stopped) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      pausedUntil = 0;
      kick();
    }, ms);
    timer.unref();
  };

  /** Publish until the outbox has nothing claimable; returns the delay before the next look. */
  const drain = async (): Promise<number> => {
    for (;;) {
      again = false;
      let jobs: OutboxJob[];
      try {
        jobs = await o.outbox.claimOutbox(batchSize, leaseMs);
      } catch (err) {
        claimFailure.failed({ err });
        return retryDelayMs;
      }
      claimFailure.succeeded();
      if (jobs.length === 0) {
        if (again && !stopped) continue;
        return pollMs;
      }
      const confirmed: string[] = [];
      const failed: string[] = [];
      let reason: unknown;
      try {
        const results = await o.publish(jobs);
        jobs.forEach((job, i) => {
          const r = results?.[i];
          if (r === undefined || r.status === 'fulfilled') confirmed.push(job.id);
          else {
            failed.push(job.id);
            reason ??= r.reason;
          }
        });
      } catch (err) {
        failed.push(...jobs.map((j) => j.id));
        reason = err;
      }
      if (failed.length > 0) {
        counters.failures++;
        publishFailure.failed({ err: reason, count: failed.length });
        await o.outbox.releaseOutbox(failed, retryDelayMs).catch(() => {}); // else the lease expires
      }
      if (confirmed.length > 0) {
        try {
          await o.outbox.markPublished(confirmed);
        } catch (err) {
          // Published but still in the outbox: published again once the lease ends (at-least-once).
          logger.warn({ err, count: confirmed.length }, 'outbox relay: marking published failed');
          return retryDelayMs;
        }
        counters.published += confirmed.length;
      }
      if (failed.length > 0) return retryDelayMs;
      publishFailure.succeeded();
      if (stopped) return pollMs;
      if (jobs.length < batchSize && !again) return pollMs;
    }
  };

  function kick(): void {
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    if (Date.now() < pausedUntil) return; // the timer runs it then
    if (timer) clearTimeout(timer);
    timer = undefined;
    running = drain().then((delay) => {
      running = undefined;
      if (delay !== pollMs) {
        pausedUntil = Date.now() + delay;
        schedule(delay);
      } else if (again) {
        kick();
      } else {
        schedule(delay);
      }
    });
  }

  const unsubscribe = o.wakeOnCommit === false ? () => {} : o.outbox.onCommitted(() => kick());
  kick();

  return {
    kick,
    counters,
    async stop() {
      stopped = true;
      unsubscribe();
      if (timer) clearTimeout(timer);
      timer = undefined;
      await running;
    },
  };
}
