import type { Readable } from 'node:stream';
import type { AttachmentStore } from '../../attachments/contract.js';
import type { AttachmentRef, CloudEvent } from '../../core/message.js';
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
  /**
   * Called once every byte is read and before the bytes are parsed (parsers that buffer: JSON, XML,
   * forms, text, CloudEvents): the signature is checked there, so a caller without valid credentials
   * never has its body parsed. A throw refuses the request.
   */
  beforeParse?: () => void;
  /** The request headers (node's lower-cased names): ce-* for CloudEvents binary mode, Content-Disposition. */
  headers?: Readonly<Record<string, string | string[] | undefined>>;
  /**
   * Where multipart files and binary bodies go. Without a store, binary bodies are buffered in
   * memory (up to payloadSizeLimit, body null) and multipart/form-data is refused with 415.
   */
  attachments?: AttachmentStore;
  /** ATTACHMENT_SIZE_LIMIT: total bytes of files per request (default 100 MB). */
  attachmentSizeLimit?: number;
}

export interface ParsedPayload {
  body: unknown;
  /** The body bytes exactly as received; empty when they went to the store (see rawAttachment). */
  rawBody: Buffer;
  attachments?: AttachmentRef[];
  /**
   * The body bytes exactly as received, kept in the attachment store instead of memory (multipart
   * bodies past 256 KiB, every binary body — then the same ref as attachments[0]). rawBody is empty
   * whenever this is set. Signatures were computed over these bytes while they streamed.
   */
  rawAttachment?: AttachmentRef;
  /** CloudEvents (structured or binary mode): the event's attributes and data. */
  cloudEvent?: CloudEvent;
  /** CloudEvents batch mode (application/cloudevents-batch+json): every event of the batch. */
  cloudEvents?: CloudEvent[];
}

/** A CloudEvent (spec v1.0): a domain type (core/message.ts), re-exported for the parsers. */
export type { CloudEvent } from '../../core/message.js';

/** The limits a parser is run with (maxBytes). */
export interface PayloadLimits {
  payloadSizeLimit: number;
  attachmentSizeLimit?: number;
  attachments?: AttachmentStore;
}

export interface PayloadParser {
  readonly name: string;
  accepts(media: MediaType): boolean;
  read(ctx: PayloadContext): Promise<ParsedPayload>;
  /**
   * The largest request body this parser takes with these limits (default payloadSizeLimit): the
   * ingress may answer 413 at once for a larger Content-Length.
   */
  maxBytes?(limits: PayloadLimits): number;
}
