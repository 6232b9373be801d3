import { TextDecoder } from 'node:util';

/** What the parsers need of a decoder. */
export interface TextDecoding {
  /** The Encoding Standard's name of the charset (`utf-8`, `windows-1252`, …). */
  readonly encoding: string;
  decode(bytes: Uint8Array): string;
}

/** The Encoding Standard's windows-1252 for bytes 0x80–0x9F (the others are ISO-8859-1's). */
const WINDOWS_1252_C1 = [
  0x20ac, 0x81, 0x201a, 0x192, 0x201e, 0x2026, 0x2020, 0x2021, 0x2c6, 0x2030, 0x160, 0x2039, 0x152, 0x8d, 0x17d, 0x8f,
  0x90, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014, 0x2dc, 0x2122, 0x161, 0x203a, 0x153, 0x9d, 0x17e, 0x178,
].map((c) => String.fromCharCode(c));

const windows1252: TextDecoding = {
  encoding: 'windows-1252',
  decode: (bytes) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1').replace(/[\x80-\x9f]/g, (c) => WINDOWS_1252_C1[c.charCodeAt(0) - 0x80]!),
};

/**
 * Node 20.18.3 and later decode windows-1252 — the charset the Encoding Standard gives `iso-8859-1`,
 * `latin1`, `us-ascii` and their other labels — as ISO-8859-1: bytes 0x80–0x9F become the C1
 * controls U+0080–U+009F instead of €, “, ”, … (nodejs/node#60888). Checked once: a runtime that
 * decodes it right is used as it is.
 */
const runtimeDecodes1252 = new TextDecoder('windows-1252').decode(Uint8Array.of(0x80)) === '\u20ac';

/**
 * A decoder for a charset label (case-insensitive, as the Encoding Standard resolves labels), or
 * undefined for a label the runtime does not know. `fatal`: invalid bytes throw (windows-1252 has
 * none) instead of becoming U+FFFD.
 */
export function charsetDecoder(label: string, fatal = false): TextDecoding | undefined {
  let decoder: TextDecoder;
  try {
    decoder = new TextDecoder(label, { fatal });
  } catch {
    return undefined;
  }
  return decoder.encoding === 'windows-1252' && !runtimeDecodes1252 ? windows1252 : decoder;
}
