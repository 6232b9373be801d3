import type { Readable } from 'node:stream';
import type { AttachmentRef } from '../../core/message.js';
import type { MediaType } from './media-type.js';

/**
 * The parser seam. A payload parser turns a request body stream of the media types it accepts into
 * a message body. Buffered parsers (JSON, text, XML, forms) read the body up to PAYLOAD_SIZE_LIMIT
 * and parse it; streaming parsers (multipart, binary) may move bytes elsewhere (the attachment
 * store) as they arrive. Every parser hands each chunk to `onChunk` in order, so signatures are
 * computed over the raw bytes while they stream, without a second read.
 */
export interface PayloadContext {
  stream: Readable;
  contentType: string;
  media: MediaType;
  payloadSizeLimit: number;
  onChunk?: (chunk: Buffer) => void;
}

export interface ParsedPayload {
  body: unknown;
  /** The body bytes exactly as received. */
  rawBody: Buffer;
  attachments?: AttachmentRef[];
}

export interface PayloadParser {
  readonly name: string;
  accepts(media: MediaType): boolean;
  read(ctx: PayloadContext): Promise<ParsedPayload>;
}
