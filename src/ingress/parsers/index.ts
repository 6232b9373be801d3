import type { AttachmentRef } from '../../core/message.js';
import { binaryModeAttributes, cloudEventBatchParser, cloudEventParser } from './cloudevents.js';
import type { ParsedPayload, PayloadContext, PayloadLimits, PayloadParser } from './contract.js';
import { formParser } from './form.js';
import { jsonParser } from './json.js';
import type { MediaType } from './media-type.js';
import { multipartParser } from './multipart.js';
import { rawParser } from './raw.js';
import { textParser } from './text.js';
import { xmlParser } from './xml.js';

/**
 * Parsers in order of preference; the last one accepts anything. CloudEvents before JSON (their
 * types end in +json), XML before text (text/xml).
 */
export const DEFAULT_PARSERS: readonly PayloadParser[] = [
  cloudEventBatchParser,
  cloudEventParser,
  jsonParser,
  xmlParser,
  formParser,
  multipartParser,
  textParser,
  rawParser,
];

export function parserFor(media: MediaType, parsers: readonly PayloadParser[] = DEFAULT_PARSERS): PayloadParser {
  return parsers.find((p) => p.accepts(media)) ?? rawParser;
}

/** The largest body `parser` accepts: a larger Content-Length can be answered 413 before reading. */
export function maxBodyBytes(parser: PayloadParser, limits: PayloadLimits): number {
  return parser.maxBytes?.(limits) ?? limits.payloadSizeLimit;
}

/**
 * Read and parse a request body: the parser for its media type, plus CloudEvents binary mode (a
 * ce-specversion header on any other type: the ce-* attributes are checked before the body is
 * read, the parsed body becomes the event's data).
 */
export async function parsePayload(ctx: PayloadContext, parsers: readonly PayloadParser[] = DEFAULT_PARSERS): Promise<ParsedPayload> {
  const parser = parserFor(ctx.media, parsers);
  const structured = parser === cloudEventParser || parser === cloudEventBatchParser;
  const binaryMode = structured ? undefined : binaryModeAttributes(ctx.headers);
  const parsed = await parser.read(ctx);
  if (binaryMode === undefined) return parsed;
  return { ...parsed, cloudEvent: { ...binaryMode, datacontenttype: ctx.contentType, data: parsed.body } };
}

export { attachmentIdsOf } from '../../core/message.js';
