import type { AttachmentWriter } from '../../attachments/contract.js';
import { DEFAULT_ATTACHMENT_SIZE_LIMIT } from '../../attachments/contract.js';
import { E, HookdError } from '../../core/errors.js';
import { readBody } from '../read-body.js';
import type { PayloadParser } from './contract.js';
import { dispositionFilename, EMPTY, requestChunks } from './streaming.js';

/**
 * Any other media type (application/octet-stream, PDFs, images, unknown types): never an error. The
 * body streams to the attachment store as one attachment (content type as sent, filename from a
 * Content-Disposition header when there is one), up to ATTACHMENT_SIZE_LIMIT (413 beyond, the
 * partial file removed). The message body is null; the bytes are `attachments[0]`, which is also
 * `rawAttachment` (the body exactly as received), and rawBody is empty: memory stays flat whatever
 * the size. An empty body gives no attachment.
 *
 * Without an attachment store the body is kept in memory as rawBody (up to PAYLOAD_SIZE_LIMIT).
 */
export const rawParser: PayloadParser = {
  name: 'binary',
  accepts: () => true,
  maxBytes: (l) => (l.attachments ? (l.attachmentSizeLimit ?? DEFAULT_ATTACHMENT_SIZE_LIMIT) : l.payloadSizeLimit),
  async read(ctx) {
    const store = ctx.attachments;
    if (store === undefined) {
      return { body: null, rawBody: await readBody(ctx.stream, ctx.payloadSizeLimit, ctx.onChunk) };
    }
    const limit = ctx.attachmentSizeLimit ?? DEFAULT_ATTACHMENT_SIZE_LIMIT;
    const filename = dispositionFilename(ctx.headers?.['content-disposition']);
    let writer: AttachmentWriter | undefined;
    let size = 0;
    try {
      for await (const chunk of requestChunks(ctx.stream)) {
        size += chunk.length;
        if (size > limit) throw new HookdError(E.PAYLOAD_TOO_LARGE, limit);
        ctx.onChunk?.(chunk);
        writer ??= await store.create({ contentType: ctx.contentType, ...(filename ? { filename } : {}), maxBytes: limit });
        await writer.write(chunk);
      }
      if (writer === undefined) return { body: null, rawBody: EMPTY };
      const ref = await writer.finish();
      return { body: null, rawBody: EMPTY, attachments: [ref], rawAttachment: ref };
    } catch (err) {
      await writer?.abort();
      throw err;
    }
  },
};
