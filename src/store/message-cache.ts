import type { ReceivedMessage } from '../core/message.js';

/** MESSAGE_CACHE's default. */
export const DEFAULT_MESSAGE_CACHE_BYTES = 32 * 1024 * 1024;

export interface MessageCacheStats {
  hits: number;
  misses: number;
  /** Messages not kept because the cache was full (policy 'keep-held'). */
  refused: number;
  entries: number;
  bytes: number;
}

/**
 * What a full cache does with a new message:
 * - 'keep-held': refuse it, and keep what it holds. Right when this process runs every job it
 *   accepts, in queue order (embedded): the held messages are the next ones a backlog runs, so
 *   dropping them for newer ones would make the reads miss in turn once a backlog outgrows the
 *   cache. Held messages older than `staleAfterMs` (a flow stopped or deleted before its jobs
 *   ran: never read) make room first.
 * - 'drop-oldest': drop the oldest to make room. Right when other instances consume the queue too
 *   (distributed): many held messages are never read here, and the oldest are the likeliest.
 */
export type WhenFull = 'keep-held' | 'drop-oldest';

export interface MessageCacheOptions {
  /** Default 'drop-oldest'; the composition root picks 'keep-held' for the embedded backend. */
  whenFull?: WhenFull;
  /** 'keep-held': a held message older than this (since its receipt) may make room. Default 5 min. */
  staleAfterMs?: number;
}

const DEFAULT_STALE_AFTER_MS = 5 * 60_000;

/** Bookkeeping bytes counted per message on top of its payload (object headers, ids, map entry). */
const OVERHEAD_BYTES = 1024;

/**
 * Messages this process committed, kept until a worker reads them back. A job's first delivery
 * reads its request moments after the commit, usually in the process that accepted it: serving that
 * read from memory saves a query and the parsing of the row per execution (on SQLite a read on the
 * main thread, on PostgreSQL a round trip). A committed message never changes, so the one kept here
 * is exactly what the store would return.
 *
 * Bounded by an estimate of the bytes held (raw body twice — bytes and parsed form —, a body stored
 * apart from the raw bytes twice its JSON length, header and query text, overhead); when full,
 * `whenFull` decides. A message leaves at its execution's first read; a retry, the API, another
 * instance, or this one after a restart read from the store.
 */
export class MessageCache {
  private readonly messages = new Map<string, Held>();
  /**
   * Entries in the order they were put, oldest from `head` on; taken or replaced ones stay until
   * passed. Eviction walks this instead of the Map: a Map iterated from its start skips every entry
   * deleted since its last rehash, and a full cache under a backlog deletes at its front on every
   * put, so that walk grew with the cache (5 % of the main thread in a profile under load).
   */
  private order: Held[] = [];
  private head = 0;
  private bytes = 0;
  /** The latest cutoff dropReceivedBefore() walked the cache for. */
  private droppedBefore = Number.NEGATIVE_INFINITY;
  private hits = 0;
  private misses = 0;
  private refused = 0;
  private readonly keepHeld: boolean;
  private readonly staleAfterMs: number;

  constructor(
    private readonly maxBytes: number,
    options: MessageCacheOptions = {},
  ) {
    this.keepHeld = options.whenFull === 'keep-held';
    this.staleAfterMs = options.staleAfterMs ?? DEFAULT_STALE_AFTER_MS;
  }

  /**
   * Keep a message that was just committed (call only for a stored outcome, never a duplicate).
   * `bodyJsonBytes`: the length of the parsed body's JSON when it is stored apart from the raw bytes
   * (a redacted body, or form fields whose bytes went to the attachment store): the estimate then
   * counts it, as it counts the raw body when that is the body's source.
   */
  put(m: ReceivedMessage, bodyJsonBytes = 0): void {
    if (this.maxBytes <= 0) return;
    this.drop(m.id); // an earlier message under this id is stale, whether or not this one is kept
    const bytes = sizeOf(m) + 2 * bodyJsonBytes;
    if (bytes > this.maxBytes) return;
    if (this.bytes + bytes > this.maxBytes) {
      this.evictOldest(bytes, m.receivedAt - this.staleAfterMs);
      if (this.bytes + bytes > this.maxBytes) {
        this.refused++;
        return;
      }
    }
    const held: Held = { id: m.id, receivedAt: m.receivedAt, message: m, bytes };
    this.messages.set(m.id, held);
    this.order.push(held);
    this.bytes += bytes;
    this.compact();
  }

  /**
   * The message, removed from the cache; undefined when it is not (or no longer) here. With `job`,
   * only that job's request: of its flow, received at most SAME_REQUEST_WINDOW_MS before the job
   * was enqueued (else it is an older request under a reused id, and is dropped).
   */
  take(id: string, job?: { flowId: string; enqueuedAt: number }): ReceivedMessage | undefined {
    const held = this.messages.get(id);
    const message = held?.message;
    if (message === undefined) {
      this.misses++;
      return undefined;
    }
    this.drop(id);
    if (job !== undefined && (message.flowId !== job.flowId || message.receivedAt < job.enqueuedAt - SAME_REQUEST_WINDOW_MS)) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    return message;
  }

  /**
   * Retention purged requests received before `before`: they are not served from here either. A
   * purge calls this once per batch with the same cutoff; only the first call of a cutoff walks
   * the cache (what is put afterwards was received now, long after any retention cutoff).
   */
  dropReceivedBefore(before: number): void {
    if (before <= this.droppedBefore) return;
    this.droppedBefore = before;
    for (const [id, held] of this.messages) if (held.receivedAt < before) this.drop(id);
  }

  stats(): MessageCacheStats {
    return { hits: this.hits, misses: this.misses, refused: this.refused, entries: this.messages.size, bytes: this.bytes };
  }

  /**
   * Drop held messages in put order until `room` more bytes fit; with 'keep-held', only those
   * received before `staleBefore` (the oldest come first, so it stops at the first fresh one).
   */
  private evictOldest(room: number, staleBefore: number): void {
    while (this.bytes + room > this.maxBytes && this.head < this.order.length) {
      const oldest = this.order[this.head]!;
      if (oldest.message === undefined) {
        this.head++; // taken, dropped or replaced since
        continue;
      }
      if (this.keepHeld && oldest.receivedAt >= staleBefore) return;
      this.head++;
      this.drop(oldest.id);
    }
  }

  private drop(id: string): void {
    const held = this.messages.get(id);
    if (held === undefined) return;
    this.messages.delete(id);
    this.bytes -= held.bytes;
    // `order` still lists the entry until compact() passes it: without its message, so that the
    // bytes are freed now and not up to 1,023 messages later.
    held.message = undefined;
  }

  /**
   * Rebuild the order from the held entries once evicted, taken and replaced ones are most of it
   * (every entry before `head` is one of those): at least 512 puts apart, so O(1) per put.
   */
  private compact(): void {
    if (this.order.length < 1024 || this.order.length < 2 * this.messages.size) return;
    this.order = this.order.filter((h) => h.message !== undefined);
    this.head = 0;
  }
}

interface Held {
  readonly id: string;
  readonly receivedAt: number;
  /** Cleared when the entry leaves the cache. */
  message: ReceivedMessage | undefined;
  readonly bytes: number;
}

/**
 * A job is enqueued as its request commits: a cached message received longer than this before
 * the job was enqueued is another request under the same id (ids a sender chose can come back once
 * retention, at least a minute, purged the first). Generous for clocks of different instances.
 */
const SAME_REQUEST_WINDOW_MS = 30_000;

/** A cheap estimate: no serialisation (that is what the cache saves). */
function sizeOf(m: ReceivedMessage): number {
  let bytes = OVERHEAD_BYTES + m.rawBody.byteLength * 2;
  bytes += textBytes(m.headers) + textBytes(m.query);
  return bytes;
}

function textBytes(fields: Record<string, string | string[]>): number {
  let n = 0;
  for (const k in fields) {
    const v = fields[k];
    n += k.length + (typeof v === 'string' ? v.length : Array.isArray(v) ? v.reduce((s, x) => s + x.length, 0) : 0);
  }
  return n;
}
