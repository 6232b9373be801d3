import type { Readable } from 'node:stream';
import type { AttachmentRef } from '../core/message.js';

/**
 * The attachment store: files of multipart parts, binary bodies and the raw bytes of requests too
 * large to keep in memory. Bytes stream in through a writer (size and sha256 computed on the way,
 * a byte limit enforced), become durable on `finish()`, and are referenced by id from the stored
 * request. Embedded: files under DATA_DIR/attachments (fs-store.ts). A PostgreSQL large-object or
 * S3 store implements the same contract for distributed mode.
 *
 * Lifecycle: the ingress writes attachments before it commits the request, so a crash in between
 * leaves files no request references; `sweep` removes them once they are older than the longest
 * time a request may take to commit.
 */
export interface AttachmentStore {
  /** Start a new attachment. Rejects with a 503 HookdError when the store cannot write. */
  create(meta: AttachmentMeta): Promise<AttachmentWriter>;
  /**
   * The attachment's bytes (optionally a byte range, inclusive end) and its ref; undefined when
   * unknown. Consume or destroy the stream: it holds the attachment open.
   */
  open(id: string, range?: ByteRange): Promise<OpenedAttachment | undefined>;
  /** Remove attachments (finished or not); unknown ids are ignored. Resolves with how many were removed. */
  delete(ids: readonly string[]): Promise<number>;
  /**
   * Remove every attachment older than `olderThanMs` that no stored request references, and every
   * unfinished write (crash, abandoned upload) older than that. `isReferenced` asks the request
   * store; olderThanMs must exceed the longest ingress (upload + commit) so an attachment whose
   * request is about to commit is never taken.
   */
  sweep(isReferenced: (id: string) => Promise<boolean>, olderThanMs: number): Promise<SweepResult>;
}

export interface AttachmentMeta {
  /** Multipart field name. */
  field?: string;
  filename?: string;
  contentType: string;
  /** Largest size in bytes: a write beyond rejects with 413 PAYLOAD_TOO_LARGE and the partial data is removed. */
  maxBytes?: number;
}

export interface AttachmentWriter {
  readonly id: string;
  /** Bytes accepted so far. */
  readonly size: number;
  /**
   * Append bytes. Resolves when the store can take more (await it: that is the backpressure).
   * Rejects with 413 past maxBytes (the writer is aborted then), 503 when the store fails.
   */
  write(chunk: Buffer): Promise<void>;
  /** Flush and make the bytes and their metadata durable (fsync); resolves with the ref only then. */
  finish(): Promise<AttachmentRef>;
  /** Drop the attachment, whatever its state (also after finish). Idempotent; never rejects. */
  abort(): Promise<void>;
}

/** Byte offsets, `end` inclusive (HTTP Range semantics). */
export interface ByteRange {
  start: number;
  end?: number;
}

export interface OpenedAttachment {
  ref: AttachmentRef;
  stream: Readable;
}

export interface SweepResult {
  /** Attachments and unfinished writes looked at. */
  scanned: number;
  removed: number;
  freedBytes: number;
}

/** ATTACHMENT_SIZE_LIMIT's default: total bytes of files per request. */
export const DEFAULT_ATTACHMENT_SIZE_LIMIT = 100 * 1024 * 1024;
