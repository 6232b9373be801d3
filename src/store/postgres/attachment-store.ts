import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type {
  AttachmentMeta,
  AttachmentStore,
  AttachmentWriter,
  ByteRange,
  OpenedAttachment,
  SweepResult,
} from '../../attachments/contract.js';
import { E, HookdError, isHookdError, unavailable } from '../../core/errors.js';
import type { AttachmentRef } from '../../core/message.js';
import { NOW_MS, type PgDatabase } from './database.js';
import { newId } from './ids.js';

export interface PgAttachmentStoreOptions {
  /** Bytes per chunk row: every chunk but the last holds exactly this many. Default 1 MiB. */
  chunkBytes?: number;
  /** Attachments the sweep looks at per query. Default 500. */
  sweepPageSize?: number;
}

export const DEFAULT_CHUNK_BYTES = 1024 * 1024;
const MAX_CHUNK_BYTES = 64 * 1024 * 1024;
const DEFAULT_SWEEP_PAGE = 500;
/** Attachments removed per DELETE: each may cascade to many chunk rows, under one statement_timeout. */
const DELETE_BATCH = 100;

/**
 * Attachments in PostgreSQL (distributed mode: any instance serves or forwards a file another one
 * received). Tables of migration 0004:
 *
 *   attachments         one header row per attachment: meta (JSON), chunk size, finished, size, sha256
 *   attachment_chunks   (attachment_id, seq) → bytea of exactly chunk_bytes bytes (the last: ≤)
 *
 * create() inserts the header (unfinished). The writer buffers up to one chunk and inserts each full
 * chunk as it fills, awaiting the insert (the backpressure): memory per upload is about one chunk.
 * finish() inserts the last chunk and marks the header finished (size, sha256) in one statement.
 * Every statement is its own transaction, committed with the server's synchronous_commit (on: hookd
 * never turns it off for data), so when finish() resolves the bytes and the ref are durable.
 *
 * An attachment exists for open() only when finished. A chunk is written only while its header
 * exists unfinished, and chunks cascade with the header: abort(), delete() and the sweep remove the
 * header and nothing is left behind. Each chunk written moves the header's updated_at, so the sweep
 * never takes an upload that is slow but alive. Times are on the database clock.
 *
 * open() streams one chunk per query, fetched when the consumer wants more (bounded memory, no
 * connection held between chunks). Unlike the fs store, an attachment deleted while it is being
 * read is not pinned: the stream then fails (NOT_FOUND) instead of ending short.
 */
export class PgAttachmentStore implements AttachmentStore {
  private readonly chunkBytes: number;
  private readonly sweepPageSize: number;

  constructor(
    private readonly db: PgDatabase,
    options: PgAttachmentStoreOptions = {},
  ) {
    this.chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    if (!Number.isInteger(this.chunkBytes) || this.chunkBytes < 1 || this.chunkBytes > MAX_CHUNK_BYTES) {
      throw new RangeError(`chunkBytes must be an integer from 1 to ${MAX_CHUNK_BYTES}, got ${options.chunkBytes}`);
    }
    this.sweepPageSize = options.sweepPageSize ?? DEFAULT_SWEEP_PAGE;
    if (!Number.isInteger(this.sweepPageSize) || this.sweepPageSize < 1) {
      throw new RangeError(`sweepPageSize must be a positive integer, got ${options.sweepPageSize}`);
    }
  }

  async create(meta: AttachmentMeta): Promise<AttachmentWriter> {
    const id = newId();
    await this.db.query(
      `INSERT INTO ${this.db.t.attachments} (id, meta, chunk_bytes, created_at, updated_at)
       VALUES ($1, $2, $3, ${NOW_MS}, ${NOW_MS})`,
      [id, JSON.stringify(storedMeta(meta)), this.chunkBytes],
      'hookd_attachment_create',
    );
    return new PgAttachmentWriter(this.db, id, meta, this.chunkBytes);
  }

  async open(id: string, range?: ByteRange): Promise<OpenedAttachment | undefined> {
    if (!UUID.test(id)) return undefined;
    const { rows } = await this.db.query<{ meta: string; size: number; sha256: string; chunk_bytes: number }>(
      `SELECT meta, size::float8 AS size, sha256, chunk_bytes FROM ${this.db.t.attachments} WHERE id = $1 AND finished`,
      [id],
      'hookd_attachment_open',
    );
    const row = rows[0];
    if (row === undefined) return undefined;
    const ref = toRef(id, JSON.parse(row.meta) as StoredMeta, row.size, row.sha256);
    const start = Math.max(range?.start ?? 0, 0);
    const end = Math.min(range?.end ?? ref.size - 1, ref.size - 1);
    if (start > end) return { ref, stream: Readable.from([]) };
    return { ref, stream: new ChunkStream(this.db, id, row.chunk_bytes, start, end) };
  }

  async delete(ids: readonly string[]): Promise<number> {
    const valid = [...new Set(ids.filter((id) => UUID.test(id)))];
    let removed = 0;
    for (let i = 0; i < valid.length; i += DELETE_BATCH) {
      const { rowCount } = await this.db.query(
        `DELETE FROM ${this.db.t.attachments} WHERE id = ANY($1::text[])`,
        [valid.slice(i, i + DELETE_BATCH)],
        'hookd_attachments_delete',
      );
      removed += rowCount ?? 0;
    }
    return removed;
  }

  async sweep(isReferenced: (id: string) => Promise<boolean>, olderThanMs: number): Promise<SweepResult> {
    const t = this.db.t;
    const result: SweepResult = { scanned: 0, removed: 0, freedBytes: 0 };
    // One horizon for the whole sweep, on the database clock.
    const { rows: now } = await this.db.query<{ cutoff: number }>(`SELECT ${NOW_MS} - $1::float8 AS cutoff`, [
      olderThanMs,
    ]);
    const cutoff = now[0]!.cutoff;
    // Keyset pages in (created_at, id) order: deleting rows behind the cursor never shifts a page.
    let after: { createdAt: number; id: string } = { createdAt: Number.NEGATIVE_INFINITY, id: '' };
    for (;;) {
      const { rows } = await this.db.query<{ id: string; created_at: number; finished: boolean }>(
        `SELECT id, created_at, finished FROM ${t.attachments}
         WHERE created_at < $1 AND (created_at, id) > ($2::float8, $3::text) AND updated_at < $1
         ORDER BY created_at, id LIMIT $4`,
        [cutoff, after.createdAt, after.id, this.sweepPageSize],
        'hookd_attachments_sweep_page',
      );
      const doomed: string[] = [];
      for (const row of rows) {
        result.scanned++;
        if (!row.finished || !(await isReferenced(row.id))) doomed.push(row.id);
      }
      for (let i = 0; i < doomed.length; i += DELETE_BATCH) {
        // updated_at again: an unfinished write that wrote (or finished) since the page was read stays.
        const { rows: gone } = await this.db.query<{ size: number }>(
          `DELETE FROM ${t.attachments} WHERE id = ANY($1::text[]) AND updated_at < $2
           RETURNING size::float8 AS size`,
          [doomed.slice(i, i + DELETE_BATCH), cutoff],
          'hookd_attachments_sweep_delete',
        );
        result.removed += gone.length;
        for (const g of gone) result.freedBytes += g.size;
      }
      const last = rows[rows.length - 1];
      if (last === undefined || rows.length < this.sweepPageSize) return result;
      after = { createdAt: last.created_at, id: last.id };
    }
  }
}

type WriterState = 'open' | 'finishing' | 'finished' | 'aborted';

class PgAttachmentWriter implements AttachmentWriter {
  /** Bytes accepted (hashed); `stored` of them are in chunk rows, the rest in `pending`. */
  private bytes = 0;
  private stored = 0;
  private seq = 0;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private state: WriterState = 'open';
  private readonly hash = createHash('sha256');
  private readonly maxBytes: number;
  private failure: HookdError | undefined;
  /** The statement in flight: chunk inserts and finish run one at a time, in order. */
  private busy: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly db: PgDatabase,
    readonly id: string,
    private readonly meta: AttachmentMeta,
    private readonly chunkBytes: number,
  ) {
    this.maxBytes = meta.maxBytes ?? Number.POSITIVE_INFINITY;
  }

  get size(): number {
    return this.bytes;
  }

  async write(chunk: Buffer): Promise<void> {
    if (this.state !== 'open') throw new Error(`attachment ${this.id} is ${this.state}`);
    if (this.failure) throw this.failure;
    if (this.bytes + chunk.length > this.maxBytes) {
      await this.abort();
      throw new HookdError(E.PAYLOAD_TOO_LARGE, this.maxBytes);
    }
    this.bytes += chunk.length;
    this.hash.update(chunk);
    if (chunk.length === 0) return;
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.pendingBytes < this.chunkBytes) return;
    try {
      await this.serially(() => this.storeFullChunks());
    } catch (err) {
      this.failure ??= toHookdError(err);
      void this.abort();
      throw this.failure;
    }
  }

  finish(): Promise<AttachmentRef> {
    if (this.state !== 'open') return Promise.reject(new Error(`attachment ${this.id} is ${this.state}`));
    if (this.failure) return Promise.reject(this.failure);
    this.state = 'finishing';
    return this.serially(() => this.complete()).catch(async (err: unknown) => {
      await this.discard();
      throw toHookdError(err);
    });
  }

  async abort(): Promise<void> {
    if (this.state === 'aborted') return;
    this.state = 'aborted';
    this.pending = [];
    this.pendingBytes = 0;
    // Let a statement in flight (a chunk, finish) settle first, so nothing appears after the removal.
    await this.busy;
    await this.discard();
  }

  private async storeFullChunks(): Promise<void> {
    while (this.pendingBytes >= this.chunkBytes && this.state !== 'aborted') {
      const data = this.take(this.chunkBytes);
      const { rowCount } = await this.db.query(
        `WITH header AS (
           UPDATE ${this.db.t.attachments} SET size = $4, updated_at = ${NOW_MS}
           WHERE id = $1 AND NOT finished RETURNING id
         )
         INSERT INTO ${this.db.t.attachmentChunks} (attachment_id, seq, data)
         SELECT id, $2::integer, $3::bytea FROM header`,
        [this.id, this.seq, data, this.stored + data.length],
        'hookd_attachment_chunk',
      );
      if (rowCount !== 1) throw removedMeanwhile(this.id);
      this.seq++;
      this.stored += data.length;
    }
  }

  private async complete(): Promise<AttachmentRef> {
    await this.storeFullChunks();
    const sha256 = this.hash.digest('hex');
    const last = this.pendingBytes > 0 ? this.take(this.pendingBytes) : null;
    // The last chunk and the finished header commit together.
    const { rows } = await this.db.query<{ n: number }>(
      `WITH header AS (
         UPDATE ${this.db.t.attachments} SET finished = true, size = $4, sha256 = $5, updated_at = ${NOW_MS}
         WHERE id = $1 AND NOT finished RETURNING id
       ), chunk AS (
         INSERT INTO ${this.db.t.attachmentChunks} (attachment_id, seq, data)
         SELECT id, $2::integer, $3::bytea FROM header WHERE $3::bytea IS NOT NULL
       )
       SELECT count(*)::integer AS n FROM header`,
      [this.id, this.seq, last, this.bytes, sha256],
      'hookd_attachment_finish',
    );
    if (rows[0]?.n !== 1) throw removedMeanwhile(this.id);
    if (this.state === 'finishing') this.state = 'finished';
    return toRef(this.id, storedMeta(this.meta), this.bytes, sha256);
  }

  /** Remove header and chunks. Best effort: what cannot be removed now is an orphan the sweep takes later. */
  private async discard(): Promise<void> {
    this.state = 'aborted';
    await this.db
      .query(`DELETE FROM ${this.db.t.attachments} WHERE id = $1`, [this.id], 'hookd_attachment_discard')
      .catch(() => undefined);
  }

  private serially<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.busy.then(fn);
    this.busy = run.catch(() => undefined);
    return run;
  }

  /** The first n pending bytes as one buffer (no copy when a written buffer is exactly a chunk). */
  private take(n: number): Buffer {
    const parts: Buffer[] = [];
    let need = n;
    let used = 0;
    while (need > 0) {
      const head = this.pending[used]!;
      if (head.length <= need) {
        parts.push(head);
        need -= head.length;
        used++;
      } else {
        parts.push(head.subarray(0, need));
        this.pending[used] = head.subarray(need);
        need = 0;
      }
    }
    this.pending.splice(0, used);
    this.pendingBytes -= n;
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, n);
  }
}

/**
 * Bytes [start, end] of a finished attachment, one chunk row (or the part of it in range) per query,
 * fetched only when the consumer wants more.
 */
class ChunkStream extends Readable {
  private seq: number;
  private offset: number;
  private remaining: number;

  constructor(
    private readonly db: PgDatabase,
    private readonly id: string,
    private readonly chunkBytes: number,
    start: number,
    end: number,
  ) {
    super();
    this.seq = Math.floor(start / chunkBytes);
    this.offset = start % chunkBytes;
    this.remaining = end - start + 1;
  }

  override _read(): void {
    const want = Math.min(this.chunkBytes - this.offset, this.remaining);
    this.db
      .query<{ data: Buffer }>(
        `SELECT substring(data FROM $3 FOR $4) AS data FROM ${this.db.t.attachmentChunks}
         WHERE attachment_id = $1 AND seq = $2`,
        [this.id, this.seq, this.offset + 1, want],
        'hookd_attachment_read',
      )
      .then(
        ({ rows }) => {
          if (this.destroyed) return;
          const data = rows[0]?.data;
          // Deleted while being read: fail rather than end short.
          if (data?.length !== want) {
            this.destroy(new HookdError(E.NOT_FOUND, `attachment ${this.id}`));
            return;
          }
          this.seq++;
          this.offset = 0;
          this.remaining -= want;
          this.push(data);
          if (this.remaining === 0) this.push(null);
        },
        (err: unknown) => this.destroy(toHookdError(err)),
      );
  }
}

/** The AttachmentMeta fields kept with the bytes (the header's meta column, as JSON). */
interface StoredMeta {
  field?: string;
  filename?: string;
  contentType: string;
}

function storedMeta(meta: AttachmentMeta): StoredMeta {
  return {
    ...(meta.field !== undefined ? { field: meta.field } : {}),
    ...(meta.filename !== undefined ? { filename: meta.filename } : {}),
    contentType: meta.contentType,
  };
}

function toRef(id: string, meta: StoredMeta, size: number, sha256: string): AttachmentRef {
  return {
    id,
    ...(meta.field !== undefined ? { field: meta.field } : {}),
    ...(meta.filename !== undefined ? { filename: meta.filename } : {}),
    contentType: meta.contentType,
    size,
    sha256,
  };
}

/** The header went away under a writer: deleted, or swept after the upload stalled past the horizon. */
function removedMeanwhile(id: string): HookdError {
  return unavailable('store', new Error(`attachment ${id} was removed while being written`));
}

function toHookdError(err: unknown): HookdError {
  return isHookdError(err) ? err : unavailable('store', err);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
