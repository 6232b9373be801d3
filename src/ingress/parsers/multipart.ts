import type { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import busboy from 'busboy';
import type { AttachmentStore, AttachmentWriter } from '../../attachments/contract.js';
import { DEFAULT_ATTACHMENT_SIZE_LIMIT } from '../../attachments/contract.js';
import { E, HookdError, isHookdError } from '../../core/errors.js';
import type { AttachmentRef } from '../../core/message.js';
import type { ParsedPayload, PayloadContext, PayloadParser } from './contract.js';
import { RawSpill } from './raw-spill.js';
import { requestChunks } from './streaming.js';

/** Parts per request: each file part is a file and an fsync, so the count is bounded. */
export const MULTIPART_MAX_FILES = 1000;
export const MULTIPART_MAX_FIELDS = 10_000;
/** Raw multipart bodies up to this size (256 KiB) stay in memory as rawBody; larger ones go to the store. */
export const MULTIPART_RAW_IN_MEMORY = 256 * 1024;

/**
 * multipart/form-data, streamed (busboy). Text fields become the body: { name: value }, repeated
 * names → arrays in order. Every file part (a part with a filename, or of type
 * application/octet-stream), whatever its field name and however many share one, streams to the
 * attachment store: message.attachments in part order, each with field, filename, content type,
 * size and sha256.
 *
 * Limits: text fields together ≤ PAYLOAD_SIZE_LIMIT, files together ≤ ATTACHMENT_SIZE_LIMIT, both
 * checked while streaming (413 at once, every file of the request removed); at most 1000 files and
 * 10,000 fields. A missing or wrong boundary, a malformed part header or a truncated body → 400, no
 * file left behind.
 *
 * The raw body is kept (signatures, replay): in memory as rawBody up to 256 KiB, beyond that as
 * `rawAttachment` (the exact request bytes in the store, rawBody empty).
 */
export const multipartParser: PayloadParser = {
  name: 'multipart',
  accepts: (m) => m.type === 'multipart/form-data',
  maxBytes: (l) => l.payloadSizeLimit + (l.attachmentSizeLimit ?? DEFAULT_ATTACHMENT_SIZE_LIMIT),
  read(ctx) {
    if (ctx.attachments === undefined) {
      throw new HookdError(E.UNSUPPORTED_MEDIA_TYPE, 'multipart/form-data needs an attachment store, none is configured');
    }
    return new MultipartRead(ctx, ctx.attachments).run();
  },
};

class MultipartRead {
  private readonly fields = new Map<string, string | string[]>();
  private fieldBytes = 0;
  private fileBytes = 0;
  private readonly refs: Array<AttachmentRef | undefined> = [];
  private readonly writers: AttachmentWriter[] = [];
  private readonly tasks: Array<Promise<void>> = [];
  private readonly raw: RawSpill;
  private readonly attachmentLimit: number;
  private failure: unknown;
  private rejectFailed!: (err: unknown) => void;
  /** Rejects with the first failure, from wherever it comes (busboy, a file task, a limit). */
  private readonly failed = new Promise<never>((_, reject) => (this.rejectFailed = reject));

  constructor(
    private readonly ctx: PayloadContext,
    private readonly store: AttachmentStore,
  ) {
    this.failed.catch(() => undefined);
    this.attachmentLimit = ctx.attachmentSizeLimit ?? DEFAULT_ATTACHMENT_SIZE_LIMIT;
    this.raw = new RawSpill(store, ctx.contentType, Math.min(MULTIPART_RAW_IN_MEMORY, ctx.payloadSizeLimit));
  }

  async run(): Promise<ParsedPayload> {
    const { ctx } = this;
    let bb: busboy.Busboy;
    try {
      bb = busboy({
        headers: { 'content-type': ctx.contentType },
        defParamCharset: 'utf8',
        limits: {
          fieldNameSize: 1024,
          fieldSize: ctx.payloadSizeLimit,
          fields: MULTIPART_MAX_FIELDS,
          files: MULTIPART_MAX_FILES,
          headerPairs: 100,
        },
      });
    } catch (err) {
      // "Multipart: Boundary not found" and friends.
      throw invalid((err as Error).message);
    }
    bb.on('field', (name, value, info) => this.onField(name, value, info));
    bb.on('file', (name, file, info) => this.onFile(name, file, info));
    bb.on('filesLimit', () => this.fail(invalid(`more than ${MULTIPART_MAX_FILES} files`)));
    bb.on('fieldsLimit', () => this.fail(invalid(`more than ${MULTIPART_MAX_FIELDS} fields`)));
    bb.on('error', (err) => this.fail(invalid((err as Error).message)));

    const rawLimit = ctx.payloadSizeLimit + this.attachmentLimit;
    let rawSize = 0;
    try {
      for await (const chunk of requestChunks(ctx.stream)) {
        rawSize += chunk.length;
        if (rawSize > rawLimit) throw new HookdError(E.PAYLOAD_TOO_LARGE, rawLimit);
        ctx.onChunk?.(chunk);
        await this.until(this.raw.write(chunk));
        // Resolves once busboy took the chunk, which waits for file streams to drain: backpressure
        // from the store reaches the socket.
        await this.until(new Promise<void>((resolve, reject) => bb.write(chunk, (err) => (err ? reject(invalid(err.message)) : resolve()))));
      }
      bb.end();
      await this.until(finished(bb).catch((err: Error) => Promise.reject(invalid(err.message))));
      // Files and the raw body are made durable side by side.
      const [, raw] = await this.until(Promise.all([Promise.all(this.tasks), this.raw.finish()]));
      if (this.failure !== undefined) throw this.failure;
      const attachments = this.refs.filter((r): r is AttachmentRef => r !== undefined);
      return {
        body: Object.fromEntries(this.fields),
        ...raw,
        ...(attachments.length > 0 ? { attachments } : {}),
      };
    } catch (err) {
      this.failure ??= err;
      bb.destroy();
      await Promise.allSettled(this.tasks);
      await Promise.all(this.writers.map((w) => w.abort()));
      await this.raw.abort();
      throw this.failure;
    }
  }

  private onField(name: string | undefined, value: string, info: busboy.FieldInfo): void {
    // busboy hands over a part without name="…" (or an empty one) as undefined: RFC 7578 §4.2 requires one.
    if (!name) return this.fail(invalid(UNNAMED_PART));
    if (info.nameTruncated) return this.fail(invalid('a field name is longer than 1024 bytes'));
    if (info.valueTruncated) return this.fail(new HookdError(E.PAYLOAD_TOO_LARGE, this.ctx.payloadSizeLimit));
    this.fieldBytes += Buffer.byteLength(name) + Buffer.byteLength(value);
    if (this.fieldBytes > this.ctx.payloadSizeLimit) return this.fail(new HookdError(E.PAYLOAD_TOO_LARGE, this.ctx.payloadSizeLimit));
    const seen = this.fields.get(name);
    if (seen === undefined) this.fields.set(name, value);
    else if (Array.isArray(seen)) seen.push(value);
    else this.fields.set(name, [seen, value]);
  }

  private onFile(field: string | undefined, file: Readable, info: busboy.FileInfo): void {
    if (!field) {
      file.resume();
      return this.fail(invalid(UNNAMED_PART));
    }
    const index = this.refs.push(undefined) - 1;
    // busboy may fail the part (truncated body) before the task below iterates it: the task sees the
    // error through the iteration, this listener only keeps it from being an uncaught 'error'.
    file.on('error', () => undefined);
    const task = (async () => {
      try {
        if (this.failure !== undefined) throw this.failure;
        const writer = await this.store.create({
          field,
          // busboy turns a path-only name (`..`) into '': no name then.
          ...(info.filename ? { filename: info.filename } : {}),
          contentType: info.mimeType,
        });
        this.writers.push(writer);
        for await (const chunk of file) {
          this.fileBytes += (chunk as Buffer).length;
          if (this.fileBytes > this.attachmentLimit) throw new HookdError(E.PAYLOAD_TOO_LARGE, this.attachmentLimit);
          await writer.write(chunk as Buffer);
        }
        this.refs[index] = await writer.finish();
      } catch (err) {
        file.resume();
        this.fail(err);
      }
    })();
    this.tasks.push(task);
  }

  private fail(err: unknown): void {
    if (this.failure !== undefined) return;
    this.failure = isHookdError(err) ? err : invalid((err as Error)?.message ?? String(err));
    this.rejectFailed(this.failure);
  }

  /** Wait for `p`, or stop at the first failure anywhere. */
  private until<T>(p: Promise<T>): Promise<T> {
    // Whichever loses the race may reject later: that is no news.
    p.catch(() => undefined);
    return Promise.race([p, this.failed]);
  }
}

const UNNAMED_PART = 'a part has no name (Content-Disposition: form-data; name="…" is required)';

function invalid(reason: string): HookdError {
  return new HookdError(E.INVALID_BODY, 'multipart', reason);
}
