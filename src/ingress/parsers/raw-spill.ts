import type { AttachmentStore, AttachmentWriter } from '../../attachments/contract.js';
import type { AttachmentRef } from '../../core/message.js';
import { EMPTY } from './streaming.js';

/**
 * The raw bytes of a streamed body: kept in memory while they fit in `memoryMax`, moved to the
 * attachment store (as one attachment with the request's content type) once they do not. Small
 * bodies stay cheap (rawBody, no file); large ones never sit in memory.
 */
export class RawSpill {
  private chunks: Buffer[] = [];
  private size = 0;
  private writer: AttachmentWriter | undefined;

  constructor(
    private readonly store: AttachmentStore,
    private readonly contentType: string,
    private readonly memoryMax: number,
  ) {}

  async write(chunk: Buffer): Promise<void> {
    if (this.writer !== undefined) return this.writer.write(chunk);
    if (this.size + chunk.length <= this.memoryMax) {
      this.chunks.push(chunk);
      this.size += chunk.length;
      return;
    }
    this.writer = await this.store.create({ contentType: this.contentType });
    const held = this.chunks;
    this.chunks = [];
    this.size = 0;
    for (const c of held) await this.writer.write(c);
    await this.writer.write(chunk);
  }

  /** The bytes in memory (rawBody), or the finished attachment holding them (rawBody empty). */
  async finish(): Promise<{ rawBody: Buffer; rawAttachment?: AttachmentRef }> {
    if (this.writer !== undefined) return { rawBody: EMPTY, rawAttachment: await this.writer.finish() };
    const rawBody = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
    this.chunks = [];
    return { rawBody };
  }

  async abort(): Promise<void> {
    this.chunks = [];
    await this.writer?.abort();
  }
}
