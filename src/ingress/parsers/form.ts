import { bufferedParser } from './buffered.js';
import { charsetDecoder, type TextDecoding } from './charset.js';
import type { MediaType } from './media-type.js';

/**
 * application/x-www-form-urlencoded → an object: `a=1&b=x&b=y` → { a: "1", b: ["x", "y"] }.
 * Keys are taken as written (no `a[b]` nesting), repeated keys become arrays in order, `+` is a
 * space, a key without `=` has the value "". Percent-escapes are bytes decoded in the charset
 * parameter (UTF-8 when none or unknown), so `charset=iso-8859-1` senders get their é back; a
 * malformed escape stays as written. An empty body is {}.
 */
export function parseForm(raw: Buffer, media: MediaType): Record<string, string | string[]> {
  const decoder = textDecoder(media.params.charset);
  const fields = new Map<string, string | string[]>();
  // The body is ASCII by definition; latin1 maps each byte to one char, losing nothing.
  for (const pair of raw.toString('latin1').split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const key = decode(eq < 0 ? pair : pair.slice(0, eq), decoder);
    const value = eq < 0 ? '' : decode(pair.slice(eq + 1), decoder);
    const seen = fields.get(key);
    if (seen === undefined) fields.set(key, value);
    else if (Array.isArray(seen)) seen.push(value);
    else fields.set(key, [seen, value]);
  }
  // fromEntries defines own properties: a "__proto__" key is data, never the prototype.
  return Object.fromEntries(fields);
}

export const formParser = bufferedParser('form', (m) => m.type === 'application/x-www-form-urlencoded', parseForm);

function textDecoder(charset: string | undefined): TextDecoding {
  return (charset !== undefined ? charsetDecoder(charset) : undefined) ?? charsetDecoder('utf-8')!;
}

/** `+` → space, %XX → byte; the bytes (raw ones too) decoded in the form's charset. */
function decode(s: string, decoder: TextDecoding): string {
  if (!/[%+\x80-\xff]/.test(s)) return s;
  const bytes = Buffer.allocUnsafe(s.length);
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x2b) bytes[n++] = 0x20;
    else if (c === 0x25 && i + 2 < s.length && isHex(s.charCodeAt(i + 1)) && isHex(s.charCodeAt(i + 2))) {
      bytes[n++] = parseInt(s.slice(i + 1, i + 3), 16);
      i += 2;
    } else bytes[n++] = c;
  }
  return decoder.decode(bytes.subarray(0, n));
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}
