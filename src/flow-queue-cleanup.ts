import type { Queue } from './queue/contract.js';
import type { FlowStore } from './store/contracts.js';
import { type LevelLogger, RecurringFailure } from './core/repeated-log.js';

/**
 * What a deleted flow leaves in a queue per flow (RabbitMQ: a quorum queue) is removed, by any
 * instance, once it cannot be needed (part of the composition root: it joins the flow store and the
 * queue). Each pass:
 *
 * 1. reads the store's deletion records and hands them to the queue (retireFlows): every instance
 *    drains a deleted flow's queue without declaring it again, so the runner dead-letters what is
 *    left in it, and a job published for it goes to the dead letters;
 * 2. for each record older than `graceMs`, asks the queue to remove the flow's queue (removeFlow:
 *    only once nothing is ready in it) and then forgets the record. The store holds the record
 *    meanwhile (forgetDeletion's cleanUp): a flow created again with that id waits for the
 *    removal, so its new queue is never the one removed.
 *
 * The grace lets every instance learn of the delete (each pass, every FLOW_REFRESH) and every retry
 * waiting in a delay queue come back (the longest level is 1 h) before the queue goes: a retry that
 * came back later would find no route, and the delay queue's at-least-once dead-lettering would
 * keep it, trying again forever (and deliver it to the queue of a flow created later with that
 * id). A flow created again clears its
 * record (FlowStore.put) and keeps its queue. Queues without removeFlow (embedded, PostgreSQL)
 * keep nothing outside the store: their records are only forgotten.
 */
export interface FlowQueueCleanupOptions {
  flows: FlowStore;
  queue: Queue;
  graceMs: number;
  everyMs: number;
  logger: LevelLogger;
}

export interface FlowQueueCleanupReport {
  /** Flows whose queue is gone and whose record was forgotten. */
  removed: string[];
  /** Flows past the grace whose queue still holds ready jobs (tried again next pass). */
  waiting: string[];
  /** Flows whose removal failed (broker or store away), with the first error; tried again next pass. */
  failed: string[];
  error?: unknown;
}

export interface FlowQueueCleanup {
  /** One pass now, then one every everyMs (no-op when started, or once stopped). */
  start(): void;
  /** One pass (waits for a pass already running, then runs its own); rejects when the records cannot be read. */
  runOnce(): Promise<FlowQueueCleanupReport>;
  /** Clear the timer; a running pass ends after the record it is at; resolves when it did. */
  stop(): Promise<void>;
}

export function createFlowQueueCleanup(o: FlowQueueCleanupOptions): FlowQueueCleanup {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> = Promise.resolve();
  let ticking = false;
  /** stop() was called: a running pass ends after the record it is at. */
  let stopped = false;
  /** The flows reported waiting by the last pass: reported again only when that changes. */
  let lastWaiting = '';

  const pass = async (): Promise<FlowQueueCleanupReport> => {
    const records = await o.flows.deletions();
    o.queue.retireFlows?.(records.map((r) => r.id));
    const report: FlowQueueCleanupReport = { removed: [], waiting: [], failed: [] };
    const removeFlow = o.queue.removeFlow?.bind(o.queue);
    for (const r of records) {
      if (stopped) break;
      // The record's age on the store's clock: this instance's may differ from the database's.
      if (r.ageMs < o.graceMs) continue;
      let waiting = false;
      const cleanUp = removeFlow
        ? async (stillHeld: () => Promise<void>) => {
            const removed = await removeFlow(r.id, stillHeld);
            waiting = !removed;
            return removed;
          }
        : undefined;
      try {
        // Only this record: the flow may have been created and deleted again meanwhile. Not one
        // another instance is removing right now (it is held): reported as neither.
        if (await o.flows.forgetDeletion(r.id, r.deletedAt, cleanUp)) report.removed.push(r.id);
        else if (waiting) report.waiting.push(r.id);
      } catch (err) {
        report.failed.push(r.id);
        report.error ??= err;
      }
    }
    if (report.removed.length > 0 && removeFlow) o.logger.info({ flows: report.removed }, 'queues of deleted flows removed');
    const waitingNow = report.waiting.join(',');
    if (waitingNow !== lastWaiting && report.waiting.length > 0) {
      o.logger.info({ flows: report.waiting }, 'queues of deleted flows still hold jobs (the runner dead-letters them): removed once empty');
    }
    lastWaiting = waitingNow;
    return report;
  };

  const runOnce = (): Promise<FlowQueueCleanupReport> => {
    const next = running.then(pass, pass);
    running = next.catch(() => {});
    return next;
  };

  // Both fail at every pass while the database or the broker is down: one line, summed up, then 'works again'.
  const readFailure = new RecurringFailure(o.logger, 'reading the deleted flows failed; trying again', 'reading the deleted flows works again');
  const removeFailure = new RecurringFailure(o.logger, 'removing the queues of deleted flows failed; trying again', 'removing the queues of deleted flows works again');
  const tick = (): void => {
    // A pass still running (many flows deleted at once, a slow broker): this tick is skipped.
    if (ticking) return;
    ticking = true;
    const done = (): void => {
      ticking = false;
    };
    const passing = runOnce();
    passing.then(done, done);
    passing.then(
      (report) => {
        readFailure.succeeded();
        if (report.failed.length > 0) removeFailure.failed({ err: report.error, flows: report.failed });
        else removeFailure.succeeded();
      },
      (err: unknown) => readFailure.failed({ err }),
    );
  };

  return {
    start() {
      if (timer || stopped) return;
      tick();
      timer = setInterval(tick, o.everyMs);
      timer.unref();
    },
    runOnce,
    async stop() {
      stopped = true;
      if (timer) clearInterval(timer);
      timer = undefined;
      await running;
    },
  };
}
