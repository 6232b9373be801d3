import type { PayloadParser } from './contract.js';
import { jsonParser } from './json.js';
import type { MediaType } from './media-type.js';
import { rawParser } from './raw.js';
import { textParser } from './text.js';

/** Parsers in order of preference; the last one accepts anything. */
export const DEFAULT_PARSERS: readonly PayloadParser[] = [jsonParser, textParser, rawParser];

export function parserFor(media: MediaType, parsers: readonly PayloadParser[] = DEFAULT_PARSERS): PayloadParser {
  return parsers.find((p) => p.accepts(media)) ?? rawParser;
}
