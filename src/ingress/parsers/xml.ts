import { XMLParser, XMLValidator, type X2jOptions } from 'fast-xml-parser';
import { E, HookdError } from '../../core/errors.js';
import { bufferedParser } from './buffered.js';
import type { MediaType } from './media-type.js';
import { charsetDecoder } from './charset.js';

/**
 * XML → JSON (application/xml, text/xml, every `+xml` type). The mapping (docs/payloads.md):
 *
 *   <order id="7">                     { "order": {
 *     <item sku="a">1</item>               "@_id": "7",
 *     <item>2</item>                       "item": [ { "@_sku": "a", "#text": "1" }, "2" ],
 *     <note>a &amp; b</note>               "note": "a & b",
 *     <empty/>                             "empty": "",
 *     <x:n>007</x:n>                       "x:n": "007" } }
 *   </order>
 *
 * - The document is one object keyed by the root element's name (exactly one root, else 400).
 * - Attributes: `@_name`. Text of an element with attributes or child elements: `#text`; an element
 *   with only text is that string.
 * - Repeated sibling elements → an array in document order; a single element stays an object or a
 *   string. For a reliable array use JSONata's `[]`: `body.order.item[]` is an array whether one or
 *   many <item> came (JSONata treats a single value and a one-element sequence alike anyway).
 * - Values stay strings (no number/boolean guessing: "007", zip codes and long ids survive), trimmed.
 * - CDATA is merged into the text; comments, processing instructions and the <?xml?> declaration
 *   are dropped; namespace prefixes are kept as written ("x:n", "@_xmlns:x").
 * - Element names that clash with JavaScript object internals (__proto__, constructor, prototype,
 *   toString, hasOwnProperty, valueOf, …) get a `__` prefix.
 * - Only the five predefined entities (&amp; &lt; &gt; &quot; &apos;) and numeric character
 *   references are decoded. No DTD is ever read: a document with <!DOCTYPE or <!ENTITY is refused
 *   (400) before parsing, so external entities (XXE) and entity expansion (billion laughs) cannot
 *   happen. Nesting deeper than 100 elements → 400. Malformed XML → 400 with line and column.
 *
 * The raw bytes stay in the message (rawBody) for anything this mapping loses (whitespace, order of
 * mixed content).
 */
export const XML_MAX_DEPTH = 100;

const CRITICAL_NAMES = new Set(['__proto__', 'constructor', 'prototype']);
const XML_ENTITIES = { amp: '&', apos: "'", gt: '>', lt: '<', quot: '"' };

const OPTIONS: X2jOptions = {
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  textNodeName: '#text',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  ignoreDeclaration: true,
  ignorePiTags: true,
  allowBooleanAttributes: false,
  removeNSPrefix: false,
  // With no DTD (refused upfront) entity processing means the five XML entities only; the object
  // form of htmlEntities (not in the typings) selects exactly those plus numeric references.
  processEntities: true,
  htmlEntities: XML_ENTITIES as unknown as boolean,
  // fast-xml-parser does not count the root element.
  maxNestedTags: XML_MAX_DEPTH - 1,
  transformTagName: (name) => (CRITICAL_NAMES.has(name) ? `__${name}` : name),
};

const FORBIDDEN = /<!\s*(DOCTYPE|ENTITY|ELEMENT|ATTLIST|NOTATION)/iy;

/**
 * Where a DTD or another declaration (`<!DOCTYPE`, `<!ENTITY`, `<!ELEMENT`…) starts, if anywhere:
 * as markup, not as text inside a comment, a CDATA section, a processing instruction or an
 * attribute value (HTML mail in CDATA often starts with <!DOCTYPE html>). A small tokenizer over
 * the document's markup, linear: each construct is skipped whole. A construct left open is
 * refused outright (the parser runs before the validator and must never see what this skipped).
 */
function forbiddenMarkup(text: string): { index: number; what: string } | undefined {
  const skipTo = (from: number, close: string, what: string): number => {
    const end = text.indexOf(close, from);
    if (end === -1) throw invalid(`${what} is not closed (${where(text, from)})`);
    return end + close.length;
  };
  let at = text.indexOf('<');
  while (at !== -1) {
    if (text.startsWith('<!--', at)) at = skipTo(at + 4, '-->', 'a comment');
    else if (text.startsWith('<![CDATA[', at)) at = skipTo(at + 9, ']]>', 'a CDATA section');
    else if (text.startsWith('<?', at)) at = skipTo(at + 2, '?>', 'a processing instruction');
    else if (text.startsWith('<!', at)) {
      FORBIDDEN.lastIndex = at;
      const m = FORBIDDEN.exec(text);
      return { index: at, what: m ? `<!${m[1]!.toUpperCase()}` : '<! markup other than a comment or a CDATA section' };
    } else {
      // A tag: to its `>`, past quoted attribute values (which may hold `>`). No `<` inside, quoted
      // or not (XML allows none in an attribute value): readers that end a tag or a processing
      // instruction elsewhere (fast-xml-parser ignores quotes in closing tags and honours them in
      // PIs) could otherwise take a stretch this skips for markup.
      let i = at + 1;
      for (; i < text.length; i++) {
        const c = text.charCodeAt(i);
        if (c === 0x3e /* > */) break;
        if (c === 0x3c /* < */) throw invalid(`'<' inside a tag (${where(text, i)})`);
        if (c === 0x22 /* " */ || c === 0x27 /* ' */) {
          // To the closing quote, character by character (linear: no search past the value).
          let j = i + 1;
          for (; j < text.length && text.charCodeAt(j) !== c; j++) {
            if (text.charCodeAt(j) === 0x3c /* < */) throw invalid(`'<' in an attribute value (${where(text, j)})`);
          }
          if (j >= text.length) throw invalid(`an attribute value is not closed (${where(text, i)})`);
          i = j;
        }
      }
      if (i >= text.length) throw invalid(`a tag is not closed (${where(text, at)})`);
      at = i + 1;
    }
    at = text.indexOf('<', at);
  }
  return undefined;
}

function where(text: string, index: number): string {
  const { line, col } = position(text, index);
  return `line ${line}, column ${col}`;
}

export function parseXml(raw: Buffer, media: MediaType): unknown {
  if (raw.length === 0) throw invalid('the body is empty');
  const text = decodeXml(raw, media);
  const forbidden = forbiddenMarkup(text);
  if (forbidden) {
    const { line, col } = position(text, forbidden.index);
    throw invalid(`${forbidden.what} is not allowed: DTDs and entity declarations are refused (line ${line}, column ${col})`);
  }
  // Parse first: it stops at once past the depth limit (the validator would walk the whole depth).
  let parsed: unknown;
  let parseError: Error | undefined;
  try {
    parsed = new XMLParser(OPTIONS).parse(text);
  } catch (err) {
    parseError = err as Error;
    if (/nested/i.test(parseError.message)) throw invalid(`elements are nested deeper than ${XML_MAX_DEPTH} levels`);
  }
  // The validator is strict (the parser tolerates some malformed input) and knows line and column.
  const valid = XMLValidator.validate(text);
  if (valid !== true) {
    const { msg, line, col } = valid.err;
    throw invalid(`${msg.replace(/\.$/, '')} (line ${line}, column ${col ?? 1})`);
  }
  if (parseError) throw invalid(parseError.message);
  const roots = parsed !== null && typeof parsed === 'object' ? Object.values(parsed) : [];
  if (roots.length !== 1 || Array.isArray(roots[0])) throw invalid('a document has exactly one root element');
  return parsed;
}

export const xmlParser = bufferedParser(
  'xml',
  (m) => m.type === 'application/xml' || m.type === 'text/xml' || m.type.endsWith('+xml'),
  parseXml,
);

/**
 * The text of an XML document: the charset parameter wins, then a byte order mark, then the
 * encoding of the <?xml?> declaration, else UTF-8.
 */
function decodeXml(raw: Buffer, media: MediaType): string {
  let charset = media.params.charset?.toLowerCase();
  if (!charset) {
    if (raw[0] === 0xff && raw[1] === 0xfe) charset = 'utf-16le';
    else if (raw[0] === 0xfe && raw[1] === 0xff) charset = 'utf-16be';
    else {
      const head = raw.subarray(0, 200).toString('latin1');
      charset = /^(?:\uFEFF|\xEF\xBB\xBF)?<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']/.exec(head)?.[1]?.toLowerCase();
    }
  }
  // An encoding unknown to the runtime: UTF-8 (the raw bytes stay in the message).
  return (charsetDecoder(charset ?? 'utf-8') ?? charsetDecoder('utf-8')!).decode(raw);
}

function position(text: string, index: number): { line: number; col: number } {
  let line = 1;
  let start = 0;
  for (let i = text.indexOf('\n'); i !== -1 && i < index; i = text.indexOf('\n', i + 1)) {
    line++;
    start = i + 1;
  }
  return { line, col: index - start + 1 };
}

function invalid(reason: string): HookdError {
  return new HookdError(E.INVALID_BODY, 'XML', reason);
}
