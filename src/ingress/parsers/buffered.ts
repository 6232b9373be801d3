import { readBody } from '../read-body.js';
import type { PayloadParser } from './contract.js';
import type { MediaType } from './media-type.js';

/** A parser that reads the whole body (up to PAYLOAD_SIZE_LIMIT) and then parses the bytes. */
export function bufferedParser(
  name: string,
  accepts: (media: MediaType) => boolean,
  parse: (raw: Buffer, media: MediaType) => unknown,
): PayloadParser {
  return {
    name,
    accepts,
    async read(ctx) {
      const rawBody = await readBody(ctx.stream, ctx.payloadSizeLimit, ctx.onChunk);
      ctx.beforeParse?.();
      return { body: parse(rawBody, ctx.media), rawBody };
    },
  };
}

/** Decode text in the declared charset (utf-8 when none or unknown to the runtime). */
export function decodeText(raw: Buffer, media: MediaType): string {
  const charset = media.params.charset?.toLowerCase();
  if (charset && charset !== 'utf-8' && charset !== 'utf8') {
    try {
      return new TextDecoder(charset).decode(raw);
    } catch {
      // Unknown label: fall through to utf-8, the raw bytes stay available anyway.
    }
  }
  return raw.toString('utf8');
}
