import type { AttachmentStore, SweepResult } from '../attachments/contract.js';
import type { RequestStore } from './contracts.js';

/**
 * The background upkeep of stored requests and their files, run by the composition root:
 *
 * - Retention (RETENTION, 0 = off): requests older than that go, with their execution, step
 *   records, dead-lettered job and files — in batches, each one write, files deleted once the
 *   batch is committed (a crash in between leaves orphans the sweep takes). Requests whose job is
 *   still queued are kept until it is done.
 * - Attachment sweep: files no committed request references (the request failed to commit, or a
 *   crash came between writing the files and the commit) and abandoned partial writes, once older
 *   than `orphanAgeMs` (1 h: far longer than any upload + commit).
 *
 * One pass at `firstRunMs` after start, then every `everyMs`; never two passes at once.
 */
export interface HousekeepingOptions {
  requests: RequestStore;
  attachments: AttachmentStore;
  /** Keep requests this long (ms); 0 keeps them forever. */
  retentionMs: number;
  /** Default 1 h. */
  orphanAgeMs?: number;
  /** Default 1 h. */
  everyMs?: number;
  /** Default 1 min: a restart loop does not sweep on every start. */
  firstRunMs?: number;
  /** Requests per purge write (default 500). */
  batch?: number;
  logger: HousekeepingLogger;
}

export interface HousekeepingLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface PurgeReport {
  requests: number;
  files: number;
  /** Bytes the database file gave back to the disk after the purge (SQLite; 0 elsewhere). */
  reclaimedBytes: number;
}

/**
 * Free pages given back per write after a purge (8 MiB of 4 KiB pages): each is one short
 * transaction, so requests committing meanwhile wait behind at most one.
 */
const RECLAIM_PAGES = 2048;

export interface HousekeepingReport {
  purged: PurgeReport;
  swept: SweepResult;
}

export interface Housekeeping {
  /** Schedule the passes (no-op when started). */
  start(): void;
  /** One pass now (waits for a pass already running, then runs its own). */
  runOnce(now?: number): Promise<HousekeepingReport>;
  /** Retention purge only: requests received before now − retention. */
  purge(now?: number): Promise<PurgeReport>;
  /** Attachment sweep only (olderThanMs defaults to orphanAgeMs). */
  sweep(olderThanMs?: number): Promise<SweepResult>;
  /** Clear the timer and wait for a running pass, which stops at its next step. */
  stop(): Promise<void>;
}

export const HOUR_MS = 3_600_000;
const DEFAULT_BATCH = 500;

class Stopped extends Error {}

export function createHousekeeping(o: HousekeepingOptions): Housekeeping {
  const orphanAgeMs = o.orphanAgeMs ?? HOUR_MS;
  const everyMs = o.everyMs ?? HOUR_MS;
  const batch = o.batch ?? DEFAULT_BATCH;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let running: Promise<unknown> = Promise.resolve();
  let warnedNotIncremental = false;

  const checkStopped = () => {
    if (stopped) throw new Stopped('housekeeping stopped');
  };

  /** Passes run one after another. */
  const serial = <T>(task: () => Promise<T>): Promise<T> => {
    const next = running.then(task, task);
    running = next.catch(() => undefined);
    return next;
  };

  async function purgeNow(now: number): Promise<PurgeReport> {
    const report: PurgeReport = { requests: 0, files: 0, reclaimedBytes: 0 };
    if (o.retentionMs <= 0) return report;
    const before = now - o.retentionMs;
    for (;;) {
      checkStopped();
      const step = await o.requests.purgeOlderThan(before, batch);
      report.requests += step.requests;
      // Committed: the files are no longer referenced.
      if (step.attachmentIds.length > 0) report.files += await o.attachments.delete(step.attachmentIds);
      if (!step.more) break;
    }
    if (report.requests > 0) report.reclaimedBytes = await reclaim();
    return report;
  }

  /** The purged rows' space back to the disk, a bounded write at a time (a store that can). */
  async function reclaim(): Promise<number> {
    const store = o.requests;
    if (store.reclaimSpace === undefined) return 0;
    let freed = 0;
    for (;;) {
      checkStopped();
      const step = await store.reclaimSpace(RECLAIM_PAGES);
      freed += step.freedBytes;
      if (!step.incremental && step.freeBytesLeft > 0 && !warnedNotIncremental) {
        warnedNotIncremental = true;
        o.logger.info({ freeBytes: step.freeBytesLeft }, 'the database file keeps the space of purged requests (made before hookd gave it back while running): SQLITE_VACUUM_ON_START=true once converts it');
      }
      if (step.freedBytes === 0 || step.freeBytesLeft === 0) return freed;
    }
  }

  function sweepNow(olderThanMs: number): Promise<SweepResult> {
    return o.attachments.sweep(async (id) => {
      checkStopped();
      return o.requests.referencesAttachment(id);
    }, olderThanMs);
  }

  async function pass(now: number): Promise<HousekeepingReport> {
    const purged = await purgeNow(now);
    const swept = await sweepNow(orphanAgeMs);
    if (purged.requests > 0 || swept.removed > 0) {
      o.logger.info({ purgedRequests: purged.requests, purgedFiles: purged.files, reclaimedDatabaseBytes: purged.reclaimedBytes, orphansRemoved: swept.removed, freedBytes: swept.freedBytes }, 'housekeeping');
    }
    return { purged, swept };
  }

  const schedule = (ms: number) => {
    if (stopped) return;
    timer = setTimeout(() => {
      void serial(() => pass(Date.now()))
        .catch((err: unknown) => {
          if (!(err instanceof Stopped)) o.logger.warn({ err }, 'housekeeping pass failed; next one as scheduled');
        })
        .finally(() => schedule(everyMs));
    }, ms);
    timer.unref();
  };

  return {
    start() {
      if (timer !== undefined || stopped) return;
      schedule(o.firstRunMs ?? 60_000);
    },
    runOnce: (now = Date.now()) => serial(() => pass(now)),
    purge: (now = Date.now()) => serial(() => purgeNow(now)),
    sweep: (olderThanMs = orphanAgeMs) => serial(() => sweepNow(olderThanMs)),
    async stop() {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      await running;
    },
  };
}
