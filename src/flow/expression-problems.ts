import jsonata from 'jsonata';
import { lineAndColumn } from './expression.js';

/**
 * What is wrong with an expression, for a flow definition being saved (API or FLOWS_DIR file):
 * a syntax error told with where it is (line and column inside the expression, and the text
 * there), or a call of a function that does not exist. jsonata itself finds the latter only when
 * the call is evaluated (T1006 "Attempted to invoke a non-function"), so a typo such as `$sumx`
 * passed the save and dead-lettered every message.
 */
export function expressionProblem(source: string): string | undefined {
  let ast: unknown;
  try {
    ast = jsonata(source).ast();
  } catch (err) {
    const e = (err ?? {}) as { code?: unknown; position?: unknown; token?: unknown; message?: unknown };
    const message = typeof e.message === 'string' ? e.message : String(err);
    const code = typeof e.code === 'string' ? ` (${e.code})` : '';
    // "(end)": the expression ended where more was expected; the place is after its last character.
    const tokenLength = e.token === '(end)' ? 0 : typeof e.token === 'string' ? e.token.length : 1;
    const at = typeof e.position === 'number' ? ` ${whereIn(source, e.position, tokenLength)}` : '';
    return `invalid JSONata${at}: ${message}${code}`;
  }
  const unknown = unknownFunctionCall(ast);
  if (unknown === undefined) return undefined;
  const near = closestBuiltin(unknown.name);
  return (
    `invalid JSONata ${whereIn(source, unknown.position, unknown.name.length + 1)}: $${unknown.name} is not a JSONata function` +
    `${near === undefined ? '' : ` (did you mean $${near}?)`} nor one the expression defines`
  );
}

/**
 * "at line 2, column 7 (near `, }`)" ("at column 7" in a one-line expression) for the token that
 * ends at jsonata's `position` (a count of characters up to the token's last one).
 */
function whereIn(source: string, position: number, tokenLength: number): string {
  const start = Math.min(source.length, Math.max(0, position - tokenLength));
  const { line, column } = lineAndColumn(source, start);
  const near = source.slice(start, start + 20).split('\n')[0]!.trimEnd();
  const place = source.includes('\n') ? `line ${line}, column ${column}` : `column ${column}`;
  return `at ${place}${near === '' ? ' (its end)' : ` (near \`${near}\`)`}`;
}

/** jsonata 2's built-in functions ($sum, $now…); test/unit/flow-expression-problems.test.ts checks the list against jsonata. */
export const JSONATA_FUNCTIONS: ReadonlySet<string> = new Set([
  'abs', 'append', 'assert', 'average', 'base64decode', 'base64encode', 'boolean', 'ceil', 'clone', 'contains', 'count',
  'decodeUrl', 'decodeUrlComponent', 'distinct', 'each', 'encodeUrl', 'encodeUrlComponent', 'error', 'eval', 'exists',
  'filter', 'floor', 'formatBase', 'formatInteger', 'formatNumber', 'fromMillis', 'join', 'keys', 'length', 'lookup',
  'lowercase', 'map', 'match', 'max', 'merge', 'millis', 'min', 'not', 'now', 'number', 'pad', 'parseInteger', 'power',
  'random', 'reduce', 'replace', 'reverse', 'round', 'shuffle', 'sift', 'single', 'sort', 'split', 'spread', 'sqrt',
  'string', 'substring', 'substringAfter', 'substringBefore', 'sum', 'toMillis', 'trim', 'type', 'uppercase', 'zip',
]);

interface Call {
  name: string;
  position: number;
}

/**
 * The first call (`$name(…)`, or a partial application `$name(?, …)`) of a name that is neither
 * built in nor bound anywhere in the expression (`$f := …`, a lambda's parameter, `@$v`, `#$i`).
 * Any binding anywhere counts, whatever its scope: this finds typos, not every unbound call.
 */
function unknownFunctionCall(ast: unknown): Call | undefined {
  const bound = new Set<string>();
  const calls: Call[] = [];
  const seen = new Set<object>();
  const walk = (node: unknown): void => {
    if (typeof node !== 'object' || node === null || seen.has(node)) return;
    seen.add(node);
    if (Array.isArray(node)) {
      for (const item of node) walk(item);
      return;
    }
    const n = node as Record<string, unknown>;
    if (n.type === 'bind') bound.add(String((n.lhs as { value?: unknown } | undefined)?.value));
    if (n.type === 'lambda' && Array.isArray(n.arguments)) for (const a of n.arguments) bound.add(String((a as { value?: unknown }).value));
    if (typeof n.focus === 'string') bound.add(n.focus);
    if (typeof n.index === 'string') bound.add(n.index);
    const procedure = n.procedure as { type?: unknown; value?: unknown; position?: unknown } | undefined;
    if ((n.type === 'function' || n.type === 'partial') && procedure?.type === 'variable' && typeof procedure.value === 'string' && procedure.value !== '') {
      calls.push({ name: procedure.value, position: typeof procedure.position === 'number' ? procedure.position : 0 });
    }
    for (const value of Object.values(n)) walk(value);
  };
  walk(ast);
  return calls.find((c) => !JSONATA_FUNCTIONS.has(c.name) && !bound.has(c.name));
}

/** The built-in a typo most likely meant: same letters in another case, or at most 2 edits away. */
function closestBuiltin(name: string): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const builtin of JSONATA_FUNCTIONS) {
    if (builtin.toLowerCase() === name.toLowerCase()) return builtin;
    const d = editDistance(name, builtin);
    if (d < bestDistance) {
      best = builtin;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}
