import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import jsonata from 'jsonata';
import { describe, expect, it } from 'vitest';
import { buildFlow } from '../../src/api/flow-definition.js';
import { readFlowsDir } from '../../src/api/flows-dir.js';
import { JSONATA_FUNCTIONS } from '../../src/flow/expression-problems.js';

/** The problems a flow definition is refused with (VALIDATION_FAILED's details). */
function problems(input: unknown): string[] {
  try {
    buildFlow(input, 'f');
  } catch (err) {
    return (err as { details?: string[] }).details ?? [String(err)];
  }
  return [];
}

describe('a flow author saving a broken expression is told where it breaks', () => {
  it('a syntax error names its line and column and quotes the text there', () => {
    expect(problems({ steps: [{ type: 'transform', expression: '{"a": body.x,, }' }] })).toEqual([
      '/steps/0/expression: invalid JSONata at column 14 (near `, }`): The symbol "," cannot be used as a unary operator (S0211)',
    ]);
    expect(problems({ steps: [{ type: 'filter', expression: 'body.total >' }] })).toEqual([
      '/steps/0/expression: invalid JSONata at column 13 (its end): Unexpected end of expression (S0207)',
    ]);
    // A multi-line expression (a YAML block): the line inside the expression.
    expect(problems({ steps: [{ type: 'http', url: 'http://127.0.0.1:8099/x', body: '{\n  "email": body.email,\n  "name": body.first &\n}' }] })).toEqual([
      '/steps/0/body: invalid JSONata at line 4, column 1 (near `}`): The symbol "}" cannot be used as a unary operator (S0211)',
    ]);
  });

  it('a call of a function that does not exist is refused at save, not at the first webhook', () => {
    expect(problems({ steps: [{ type: 'transform', expression: '{"total": $sumx(body.items.price)}' }] })).toEqual([
      '/steps/0/expression: invalid JSONata at column 11 (near `$sumx(body.items.pri`): $sumx is not a JSONata function (did you mean $sum?) nor one the expression defines',
    ]);
    expect(problems({ steps: [{ type: 'filter', expression: 'body.items ~> $Count() > 0' }] })[0]).toMatch(/\$Count is not a JSONata function \(did you mean \$count\?\)/);
    expect(problems({ steps: [{ type: 'transform', expression: '$frobnicate(body)' }] })[0]).toMatch(/\$frobnicate is not a JSONata function nor one/);
    // Functions the expression defines, lambdas' parameters, built-ins and partial applications pass.
    for (const expression of [
      '($double := function($x){ $x * 2 }; $double(body.n))',
      '$map(body.items, function($v, $i, $a){ $v })',
      '$reduce(body.items, function($acc, $v){ $acc + $v }, 0)',
      '($first := $substring(?, 0, 1); $first(body.name))',
      'body.items@$i.$uppercase($i.name)',
      '{"at": $now(), "id": $string(body.id), "n": $count(body.items), "h": $base64encode("x")}',
    ]) {
      expect(problems({ steps: [{ type: 'transform', expression }] }), expression).toEqual([]);
    }
  });

  it("the list of built-in functions is jsonata's", async () => {
    for (const name of JSONATA_FUNCTIONS) expect(await jsonata(`$${name}`).evaluate({}, {}), name).toBeDefined();
    expect(await jsonata('$sumx').evaluate({}, {})).toBeUndefined();
  });
});

describe('http step headers', () => {
  it('an invalid header is named, with what is wrong in it', () => {
    expect(problems({ steps: [{ id: 'post', type: 'http', url: 'http://127.0.0.1:8099/x', headers: { 'x-tenant': 'acme\nfoo' } }] })).toEqual([
      '/steps/0 (http step "post"): header "x-tenant": invalid value "acme\\nfoo" (no line breaks; characters up to U+00FF)',
    ]);
    expect(problems({ steps: [{ id: 'post', type: 'http', url: 'http://127.0.0.1:8099/x', headers: { 'X Tenant': 'acme' } }] })).toEqual([
      '/steps/0 (http step "post"): header "X Tenant": invalid name (letters, digits and !#$%&\'*+-.^_`|~ only: no spaces or colons)',
    ]);
    // A credential's value is never quoted.
    expect(problems({ steps: [{ id: 'post', type: 'http', url: 'http://127.0.0.1:8099/x', headers: { authorization: 'Bearer a\nb' } }] })).toEqual([
      '/steps/0 (http step "post"): header "authorization": invalid value (not shown: a credential; no line breaks, characters up to U+00FF)',
    ]);
  });
});

describe('FLOWS_DIR files', () => {
  const readOne = (name: string, text: string): string => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'hookd-flows-'));
    try {
      writeFileSync(path.join(dir, name), text);
      readFlowsDir(dir, () => undefined);
      return '';
    } catch (err) {
      return (err as Error).message.replace(`${dir}/`, '');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  it("a file's problems name the line of the YAML they are on", () => {
    const yaml = [
      'name: Orders', //                 1
      'steps:', //                       2
      '  - id: big', //                  3
      '    type: filter', //             4
      '    expression: body.total >', // 5
      '  - id: post', //                 6
      '    type: http', //               7
      '    url: ftp://erp.example/in', //8
      '    timeout: 500', //             9
    ].join('\n');
    expect(readOne('orders.yaml', yaml)).toBe(
      'orders.yaml: Invalid flow definition: line 5: /steps/0/expression: invalid JSONata at column 13 (its end): Unexpected end of expression (S0207); ' +
        'line 9: /steps/1: must not have additional properties: timeout',
    );
    // What only compiling finds (a URL), on the step's line; a list file's flows too.
    const list = ['- id: a', '  steps:', '    - type: log', '- id: b', '  steps:', '    - id: post', '      type: http', '      url: ftp://erp.example/in'].join('\n');
    expect(readOne('two.yaml', list)).toBe('two.yaml: Invalid flow definition: line 6: /steps/0 (http step "post"): url must be http or https, got ftp:');
  });

  it('an unquoted expression YAML read as a mapping is told how to write it', () => {
    expect(readOne('shape.yaml', 'steps:\n  - type: transform\n    expression: { "order": body.id }\n')).toBe(
      'shape.yaml: Invalid flow definition: line 3: /steps/0/expression: must be string (YAML read the unquoted { or [ as its own mapping or list: quote the expression, or write it as a block: `expression: |`)',
    );
  });

  it('YAML that does not parse says its line and column, as before', () => {
    expect(readOne('bad.yaml', 'steps:\n  - id: big\n    type: filter\n     expression: x\n')).toMatch(/^bad\.yaml: .* at line 3, column 11/);
  });
});

describe('templates where hookd takes literal text', () => {
  it('a {{…}} placeholder in an http step url or header is refused at save: it would be sent as written', () => {
    // The call went to /orders/%7B%7Bbody.id%7D%7D, on every message.
    expect(problems({ steps: [{ id: 'put', type: 'http', method: 'PUT', url: 'http://127.0.0.1:8099/orders/{{body.id}}' }] })).toEqual([
      '/steps/0/url: "{{body.id}}" would be sent as written: an http step\'s url and headers are literal (hookd fills in no values); the body is the step\'s expression (`body`)',
    ]);
    expect(problems({ steps: [{ id: 'post', type: 'http', url: 'http://127.0.0.1:8099/x', headers: { 'x-user': '{{ body.user }}' } }] })).toEqual([
      '/steps/0/headers/x-user: "{{ body.user }}" would be sent as written: an http step\'s url and headers are literal (hookd fills in no values); the body is the step\'s expression (`body`)',
    ]);
    // Braces that are data pass (encoded in a url, or a literal JSON header value).
    expect(problems({ steps: [{ type: 'http', url: 'http://127.0.0.1:8099/q?f=%7B%7D', headers: { 'x-meta': '{"a":1}' } }] })).toEqual([]);
  });
});

it('a retry policy whose maxBackoffMs is below its backoffMs is refused (the two swapped)', () => {
  expect(problems({ retry: { backoffMs: 5_000, maxBackoffMs: 1_000 }, steps: [{ type: 'log' }] })).toEqual([
    '/retry/maxBackoffMs: 1000 is below backoffMs (5000): the delays start at backoffMs and double up to maxBackoffMs',
  ]);
  expect(problems({ retry: { backoffMs: 1_000, maxBackoffMs: 1_000 }, steps: [{ type: 'log' }] })).toEqual([]);
  expect(problems({ retry: { maxBackoffMs: 200 }, steps: [{ type: 'log' }] })).toEqual([]); // a fixed delay: fine
});
