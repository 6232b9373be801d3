/**
 * A direct evaluator for the JSONata most flows use: field paths over objects, literals, object
 * constructors and comparisons (`{ "id": body.id, "total": body.total }`, `body.total > 100`).
 *
 * jsonata 2.x evaluates every node through async functions and sequences: ≈ 4 µs and 16 KB of
 * garbage for that one-line mapping, which made it the largest allocator of an execution. This
 * interprets jsonata's own AST (so parsing, quoting and operator precedence are jsonata's), only for
 * node shapes whose meaning is plain, and answers FALLBACK whenever a value would take jsonata into
 * its sequence semantics (an array anywhere on a path, an array as the context) or into an error
 * (comparing a string with a number): the caller then evaluates with jsonata. A differential test
 * checks the results against jsonata's.
 */

/** "Ask jsonata": this input takes the expression outside what the fast path decides. */
export const FALLBACK: unique symbol = Symbol('jsonata fallback');

export type FastEvaluator = (input: unknown) => unknown;

interface Node {
  type?: unknown;
  value?: unknown;
  steps?: unknown;
  lhs?: unknown;
  rhs?: unknown;
}

/** Property names every node may carry besides the ones its shape needs (positions, for errors). */
const POSITIONAL = new Set(['type', 'value', 'position']);

/** A node of exactly these properties (any other, e.g. `stages` or `group`, changes its meaning). */
function only(node: object, allowed: readonly string[]): boolean {
  for (const key of Object.keys(node)) if (!POSITIONAL.has(key) && !allowed.includes(key)) return false;
  return true;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const hasOwn = (o: object, key: string): boolean => Object.prototype.hasOwnProperty.call(o, key);

/** The evaluator for an AST (jsonata's `expression.ast()`), or undefined when it is outside the subset. */
export function compileFastPath(ast: unknown): FastEvaluator | undefined {
  if (typeof ast !== 'object' || ast === null) return undefined;
  const node = ast as Node;
  switch (node.type) {
    case 'string':
    case 'number':
    case 'value': {
      if (!only(node, [])) return undefined;
      const value = node.value;
      if (!(typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' || value === null)) return undefined;
      return () => value;
    }
    case 'path':
      return compilePath(node);
    case 'unary':
      return node.value === '{' ? compileObject(node) : undefined;
    case 'binary':
      return compileComparison(node);
    default:
      return undefined;
  }
}

/**
 * Objects jsonata does not treat as plain data: flagged as a function (`_jsonata_function`,
 * `_jsonata_lambda`: no fields) or as a tuple stream (`tupleStream`: object constructors group
 * differently). A sender's JSON may carry these keys; jsonata decides what they mean.
 */
function jsonataSpecial(o: Record<string, unknown>): boolean {
  return o._jsonata_function === true || o._jsonata_lambda === true || Boolean(o.tupleStream);
}

/** `a.b.c`: plain field steps only (no predicates, stages, wildcards, functions). */
function compilePath(node: Node): FastEvaluator | undefined {
  if (!only(node, ['steps']) || !Array.isArray(node.steps) || node.steps.length === 0) return undefined;
  const names: string[] = [];
  for (const step of node.steps as unknown[]) {
    if (typeof step !== 'object' || step === null) return undefined;
    const s = step as Node;
    if (s.type !== 'name' || typeof s.value !== 'string' || !only(s, [])) return undefined;
    names.push(s.value);
  }
  return (input) => {
    let current = input;
    for (const name of names) {
      if (Array.isArray(current)) return FALLBACK; // jsonata maps over arrays
      // jsonata reads own fields of objects only; anything else has no fields.
      if (!isObject(current)) return undefined;
      if (jsonataSpecial(current)) return FALLBACK;
      if (!hasOwn(current, name)) return undefined;
      current = current[name];
    }
    // A sequence result: jsonata decides whether it stays an array (singletons, flattening); a
    // number JSON.parse made infinite (1e400): jsonata's range checks decide.
    if (Array.isArray(current) || (typeof current === 'number' && !Number.isFinite(current))) return FALLBACK;
    if (isObject(current) && jsonataSpecial(current)) return FALLBACK;
    return current;
  };
}

/** `{ "key": expr, … }` with literal, distinct keys, over one (non-array) context. */
function compileObject(node: Node): FastEvaluator | undefined {
  if (!only(node, ['lhs']) || !Array.isArray(node.lhs)) return undefined;
  const keys: string[] = [];
  const values: FastEvaluator[] = [];
  for (const pair of node.lhs as unknown[]) {
    if (!Array.isArray(pair) || pair.length !== 2) return undefined;
    const [k, v] = pair as [Node, unknown];
    if (typeof k !== 'object' || k === null || k.type !== 'string' || typeof k.value !== 'string' || !only(k, [])) return undefined;
    // Duplicate keys are a jsonata error (D1009); __proto__ would set the result's prototype.
    if (keys.includes(k.value) || k.value === '__proto__') return undefined;
    const value = compileFastPath(v);
    if (value === undefined) return undefined;
    keys.push(k.value);
    values.push(value);
  }
  return (input) => {
    if (Array.isArray(input)) return FALLBACK; // jsonata groups over the items
    if (isObject(input) && jsonataSpecial(input)) return FALLBACK;
    const out: Record<string, unknown> = {};
    for (let i = 0; i < keys.length; i++) {
      const value = values[i]!(input);
      if (value === FALLBACK) return FALLBACK;
      if (value !== undefined) out[keys[i]!] = value;
    }
    return out;
  };
}

type Primitive = string | number | boolean | null;
const isPrimitive = (v: unknown): v is Primitive => v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';

/** What jsonata's ordering operators accept on either side (anything else is error T2010). */
const comparable = (v: unknown): boolean => v === undefined || typeof v === 'string' || typeof v === 'number';

const ORDER: Record<string, (a: number | string, b: number | string) => boolean> = {
  '<': (a, b) => a < b,
  '<=': (a, b) => a <= b,
  '>': (a, b) => a > b,
  '>=': (a, b) => a >= b,
};

/** `<`, `<=`, `>`, `>=`, `=`, `!=` between operands of the subset. */
function compileComparison(node: Node): FastEvaluator | undefined {
  const op = node.value;
  if (typeof op !== 'string' || !only(node, ['lhs', 'rhs'])) return undefined;
  const order = ORDER[op];
  if (order === undefined && op !== '=' && op !== '!=') return undefined;
  const lhs = compileFastPath(node.lhs);
  const rhs = compileFastPath(node.rhs);
  if (lhs === undefined || rhs === undefined) return undefined;
  if (order !== undefined) {
    return (input) => {
      const a = lhs(input);
      const b = rhs(input);
      if (a === FALLBACK || b === FALLBACK) return FALLBACK;
      if ((typeof a === 'number' && typeof b === 'number') || (typeof a === 'string' && typeof b === 'string')) return order(a, b);
      // No value on one side gives no value, unless the other side cannot be compared at all.
      if ((a === undefined && comparable(b)) || (b === undefined && comparable(a))) return undefined;
      return FALLBACK; // a type error (T2009, T2010): jsonata raises it
    };
  }
  const equal = op === '=';
  return (input) => {
    const a = lhs(input);
    const b = rhs(input);
    if (a === FALLBACK || b === FALLBACK) return FALLBACK;
    if (a === undefined || b === undefined) return false; // jsonata: false for = and != alike
    if (!isPrimitive(a) || !isPrimitive(b)) return FALLBACK; // deep equality of objects: jsonata's
    return equal ? a === b : a !== b;
  };
}
