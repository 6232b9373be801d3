import jsonata from 'jsonata';
import { describe, expect, it } from 'vitest';
import { compileExpression } from '../../src/flow/expression.js';
import { compileFastPath, FALLBACK } from '../../src/flow/expression-fast-path.js';

/** Expressions in the subset: every one must get a fast evaluator. */
const SUBSET = [
  '{ "id": body.id, "total": body.total }',
  'body.total > 100',
  'body',
  'a',
  'a.b',
  'a.b.c',
  'body.customer.id',
  'headers."content-type"',
  'a.`b c`',
  '{ "x": { "y": a.b, "z": c } }',
  '{ "n": 1, "s": "t", "t": true, "f": false, "z": null }',
  '{}',
  'a < 1',
  'a <= b',
  'a > "b"',
  'a >= 2.5',
  'a = 1',
  'a != "x"',
  'a = b',
  'a.b != null',
  'a = true',
  '"lit"',
  '42',
  'null',
  'constructor',
  'a.toString',
  '{ "big": body.total > 100, "who": body.customer.id, "same": a = b }',
  '{ "a": { "b": { "c": a.b.c } } }',
  'a.b < a.c',
];

/** Outside the subset: jsonata alone evaluates them. */
const OUTSIDE = [
  '$',
  'a[0]',
  'a[b > 1]',
  'a.*',
  '$count(a)',
  'a & b',
  'a + 1',
  'a and b',
  'a ? b : c',
  '{ "k": a, "k": b }',
  '{ a: b }',
  '{ "__proto__": a }',
  'a[]',
  'a.b[0].c',
  'a in [1, 2]',
];

/** A small seeded generator (mulberry32): the same inputs on every run. */
function rng(seed: number): () => number {
  let t = seed >>> 0;
  return () => {
    t = (t + 0x6d2b79f5) >>> 0;
    let r = Math.imul(t ^ (t >>> 15), 1 | t);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}

const KEYS = ['a', 'b', 'c', 'body', 'id', 'total', 'customer', 'headers', 'content-type', 'b c', 'constructor', 'toString', '__proto__'];

function value(next: () => number, depth: number): unknown {
  const pick = Math.floor(next() * (depth > 2 ? 7 : 10));
  switch (pick) {
    case 0:
      return Math.floor(next() * 200) - 50;
    case 1:
      return Math.round(next() * 1000) / 8;
    case 2:
      return ['', 'a', 'b', '1', '100', 'x'][Math.floor(next() * 6)];
    case 3:
      return next() < 0.5;
    case 4:
      return null;
    case 5:
      return 0;
    case 6:
      return 2.5;
    case 7:
    case 8:
      return object(next, depth + 1);
    default: {
      const n = Math.floor(next() * 3);
      return Array.from({ length: n }, () => value(next, depth + 1));
    }
  }
}

function object(next: () => number, depth: number): Record<string, unknown> {
  // Built through JSON so that "__proto__" is an own field, as in a parsed webhook body.
  const fields: string[] = [];
  for (const k of KEYS) if (next() < 0.35) fields.push(`${JSON.stringify(k)}:${JSON.stringify(value(next, depth))}`);
  return JSON.parse(`{${fields.join(',')}}`) as Record<string, unknown>;
}

function inputs(count: number): unknown[] {
  const next = rng(42);
  const out: unknown[] = [null, 5, 'scalar', [], [{ a: 1 }, { a: 2 }], {}, JSON.parse('{"a":1e400,"b":{"c":-1e400}}')];
  for (let i = 0; i < count; i++) out.push(next() < 0.9 ? object(next, 0) : value(next, 0));
  return out;
}

/** jsonata's result as text (undefined and thrown errors included), to compare with the fast path's. */
async function viaJsonata(source: string, input: unknown): Promise<string> {
  try {
    const v: unknown = await jsonata(source).evaluate(input);
    return v === undefined ? 'undefined' : JSON.stringify(v);
  } catch (err) {
    return `throws ${(err as { code?: string }).code}`;
  }
}

describe('JSONata fast path', () => {
  it('covers the subset, and leaves everything else to jsonata', () => {
    for (const source of SUBSET) expect(compileFastPath(jsonata(source).ast()), source).toBeTypeOf('function');
    for (const source of OUTSIDE) expect(compileFastPath(jsonata(source).ast()), source).toBeUndefined();
  });

  it('gives jsonata\'s result wherever it decides (differential, 600 generated inputs per expression)', async () => {
    const all = inputs(600);
    let decided = 0;
    let total = 0;
    for (const source of SUBSET) {
      const fast = compileFastPath(jsonata(source).ast())!;
      for (const input of all) {
        total++;
        const got = fast(input);
        if (got === FALLBACK) continue;
        decided++;
        const mine = got === undefined ? 'undefined' : JSON.stringify(got);
        expect(mine, `${source} over ${JSON.stringify(input)}`).toBe(await viaJsonata(source, input));
        if (typeof got === 'object' && got !== null) expect(Object.getPrototypeOf(got)).toBe(Object.prototype);
      }
    }
    // Most inputs are decided without jsonata (arrays on a path and type errors are not).
    expect(decided / total).toBeGreaterThan(0.7);
  });

  it('decides the common cases itself: a mapping and a filter over a message', () => {
    const view = { id: 'r1', headers: { 'content-type': 'application/json' }, body: { id: 'ord_1', total: 129.95, items: [1, 2] } };
    expect(compileFastPath(jsonata('{ "id": body.id, "total": body.total }').ast())!(view)).toEqual({ id: 'ord_1', total: 129.95 });
    expect(compileFastPath(jsonata('body.total > 100').ast())!(view)).toBe(true);
    expect(compileFastPath(jsonata('headers."content-type" = "application/json"').ast())!(view)).toBe(true);
    // An array on the path: jsonata's sequences decide.
    expect(compileFastPath(jsonata('body.items').ast())!(view)).toBe(FALLBACK);
  });

  it('leaves objects jsonata treats specially to jsonata (flags a sender may put in its JSON)', async () => {
    const cases: Array<[string, unknown]> = [
      ['body.amount > 100', { body: { amount: 500, _jsonata_function: true } }],
      ['body.amount > 100', { body: { amount: 500, _jsonata_lambda: true } }],
      ['a = "x"', { a: 'x', _jsonata_function: true }],
      ['{ "a": a }', { tupleStream: true, a: 1 }],
      ['body', { body: { _jsonata_function: true, x: 1 } }],
    ];
    for (const [source, input] of cases) {
      expect(compileFastPath(jsonata(source).ast())!(input), `${source} over ${JSON.stringify(input)}`).toBe(FALLBACK);
      const got = await compileExpression(source).evaluate(input);
      expect(got === undefined ? 'undefined' : JSON.stringify(got)).toBe(await viaJsonata(source, input));
    }
  });

  it('compiled expressions fall back to jsonata, errors included', async () => {
    const filter = compileExpression('a > 1');
    expect(await filter.evaluate({ a: 2 })).toBe(true);
    await expect(filter.evaluate({ a: 'x' })).rejects.toThrow(/T2009|T2010/);
    const pick = compileExpression('a.b');
    expect(JSON.stringify(await pick.evaluate({ a: [{ b: 1 }, { b: 2 }] }))).toBe('[1,2]');
  });
});
