import v8 from 'node:v8';
import jsonata from 'jsonata';
import safeRegex from 'safe-regex2';
import { compileFastPath, FALLBACK, type FastEvaluator } from './expression-fast-path.js';

/*
 * A regular expression that backtracks catastrophically (`/^(a|a)*b$/` over 40 characters a sender
 * chose: 2^40 steps) blocks the process, and the expression time limit cannot interrupt a match.
 * Star height > 1 is refused at compile time (unsafeRegex, below), but overlapping alternatives
 * pass that check. V8 has a linear-time engine for regexes without backreferences or lookarounds;
 * with this flag a match switches to it after 50,000 backtracks instead of running on. Set before
 * any flow's regex is compiled (V8 reads it when it compiles a regex's code).
 */
v8.setFlagsFromString('--enable-experimental-regexp-engine-on-excessive-backtracks');

/**
 * JSONata compilation and evaluation for steps.
 *
 * Compiling parses the expression into an AST, which costs far more than most evaluations, so compiled
 * expressions are cached by source text (bounded, least recently used out first). Sharing one
 * compiled expression between concurrent evaluations is safe: jsonata 2.x evaluates each call in a
 * fresh frame. Guardrails stop runaway expressions (infinite recursion, endless loops) instead of
 * letting them block the event loop. Expressions of the plain subset most flows use (field paths,
 * literals, object constructors, comparisons) are evaluated directly (expression-fast-path.ts),
 * with jsonata as the fallback for every input the subset does not decide.
 */

export interface ExpressionLimits {
  /** Evaluation time limit (ms). */
  timeoutMs: number;
  /** Nesting depth limit (recursion). */
  stack: number;
}

export const DEFAULT_EXPRESSION_LIMITS: ExpressionLimits = { timeoutMs: 1_000, stack: 1_000 };

/** A JSONata syntax or evaluation error, with its code (S0201, T2001, D3030…) and position. */
export class ExpressionError extends Error {
  readonly code: string | undefined;
  readonly position: number | undefined;

  constructor(message: string, code?: string, position?: number) {
    super(message);
    this.name = 'ExpressionError';
    this.code = code;
    this.position = position;
  }
}

/**
 * Where the evaluations the fast path does not decide run instead of the main thread
 * (expression-workers.ts): jsonata's time limit holds the event loop while it runs.
 */
export interface ExpressionIsolate {
  evaluate(source: string, limits: ExpressionLimits, input: unknown, bindings?: Record<string, unknown>): Promise<unknown>;
}

export interface CompiledExpression {
  readonly source: string;
  /**
   * `message`: the message the flow received (its view, the first step's input), read by the
   * expression as `$message` — after an http step, whose answer replaced the input, the event's
   * own fields are still at hand.
   */
  evaluate(input: unknown, message?: unknown): Promise<unknown>;
}

const CACHE_SIZE = 1_000;
interface Compiled {
  expr: jsonata.Expression;
  fast: FastEvaluator | undefined;
  /** The expression reads `$message`: evaluated with that binding, never by the fast path. */
  readsMessage: boolean;
}

const cache = new Map<string, Compiled>();

/**
 * Compile (or fetch from the cache) an expression. Throws ExpressionError on a syntax error. With
 * `isolate`, what the fast path does not decide is evaluated there, not on this thread (the
 * expression is still compiled here: its syntax and regexes are checked when the flow is saved).
 */
export function compileExpression(
  source: string,
  limits: ExpressionLimits = DEFAULT_EXPRESSION_LIMITS,
  isolate?: ExpressionIsolate,
): CompiledExpression {
  const key = `${limits.timeoutMs}:${limits.stack}:${source}`;
  let entry = cache.get(key);
  if (entry === undefined) {
    let expr: jsonata.Expression;
    try {
      expr = jsonata(source, { timeout: limits.timeoutMs, stack: limits.stack });
    } catch (err) {
      throw toExpressionError(err, 'Invalid JSONata expression');
    }
    const risky = unsafeRegex(expr.ast());
    if (risky !== undefined) {
      throw new ExpressionError(
        `Invalid JSONata expression: the regular expression /${risky.source}/ can take exponential time on some inputs (nested quantifiers); rewrite it without them`,
      );
    }
    const readsMessage = readsVariable(expr.ast(), 'message');
    entry = { expr, fast: readsMessage ? undefined : compileFastPath(expr.ast()), readsMessage };
    if (cache.size >= CACHE_SIZE) {
      const oldest = cache.keys().next();
      if (!oldest.done) cache.delete(oldest.value);
    }
  } else {
    cache.delete(key); // re-insert: most recently used last
  }
  cache.set(key, entry);
  const compiled = entry.expr;
  const fast = entry.fast;
  const readsMessage = entry.readsMessage;
  return {
    source,
    async evaluate(input: unknown, message?: unknown): Promise<unknown> {
      if (fast !== undefined) {
        const value = fast(input);
        if (value !== FALLBACK) return value;
      }
      try {
        // Plain data out: what the next step reads is what its records (and a retry's cursor) hold.
        // Only an expression that reads it gets the message (to a worker, it is one more copy).
        const bindings = readsMessage ? { message: message ?? null } : undefined;
        if (isolate !== undefined) return plainResult(await isolate.evaluate(source, limits, input, bindings));
        // Bindings given (even empty) → jsonata evaluates in its own frame; keep it that way.
        return plainResult(await compiled.evaluate(input, bindings ?? {}));
      } catch (err) {
        throw located(toExpressionError(err, 'JSONata evaluation failed'), source);
      }
    },
  };
}

/** Whether the expression reads the variable `$name` anywhere (a `variable` node of the AST). */
function readsVariable(node: unknown, name: string, seen = new Set<object>()): boolean {
  if (typeof node !== 'object' || node === null || seen.has(node)) return false;
  seen.add(node);
  const n = node as { type?: unknown; value?: unknown };
  if (n.type === 'variable' && n.value === name) return true;
  for (const value of Object.values(node)) if (readsVariable(value, name, seen)) return true;
  return false;
}

/**
 * The first regular expression literal of an expression that may backtrack catastrophically (star
 * height > 1, safe-regex2), if any. The time limit cannot stop one: a regex match runs to its end
 * without yielding, and `/(a+)+b/` over 30 characters a sender chose blocks the process for seconds.
 */
function unsafeRegex(node: unknown, seen = new Set<object>()): RegExp | undefined {
  if (typeof node !== 'object' || node === null || seen.has(node)) return undefined;
  seen.add(node);
  if (node instanceof RegExp) return safeRegex(node) ? undefined : node;
  for (const value of Object.values(node)) {
    const found = unsafeRegex(value, seen);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** Number of cached compiled expressions (tests). */
export function expressionCacheSize(): number {
  return cache.size;
}

/**
 * jsonata throws plain objects `{code, position, token, message}`; make them readable Errors (also
 * what an expression worker sends back of one: expression-workers.ts).
 */
export function toExpressionError(err: unknown, prefix: string): ExpressionError {
  if (err instanceof ExpressionError) return err;
  if (typeof err === 'object' && err !== null) {
    const e = err as { code?: unknown; position?: unknown; token?: unknown; message?: unknown };
    const code = typeof e.code === 'string' ? e.code : undefined;
    const position = typeof e.position === 'number' ? e.position : undefined;
    const message = typeof e.message === 'string' && e.message !== '' ? e.message : String(err);
    const where: string[] = [];
    if (code !== undefined) where.push(code);
    if (position !== undefined) where.push(`position ${position}`);
    if (typeof e.token === 'string' && e.token !== '') where.push(`token "${e.token}"`);
    const suffix = where.length > 0 ? ` (${where.join(', ')})` : '';
    return new ExpressionError(`${prefix}: ${message}${suffix}`, code, position);
  }
  return new ExpressionError(`${prefix}: ${String(err)}`);
}

/** Line and column (both from 1) of the character at `offset` in `source`. */
export function lineAndColumn(source: string, offset: number): { line: number; column: number } {
  const before = source.slice(0, offset).split('\n');
  return { line: before.length, column: before[before.length - 1]!.length + 1 };
}

/**
 * An error of a multi-line expression (a YAML block) with the line and column of its position
 * beside it: `position 41` alone sent its author counting characters across lines.
 */
function located(err: ExpressionError, source: string): ExpressionError {
  if (err.position === undefined || !source.includes('\n')) return err;
  // jsonata's position counts the characters up to the token's last one.
  const { line, column } = lineAndColumn(source, Math.max(0, err.position - 1));
  const where = `position ${err.position}, line ${line}, column ${column}`;
  const message = err.message.replace(`position ${err.position}`, where);
  return message === err.message ? err : new ExpressionError(message, err.code, err.position);
}

/** Own properties jsonata sets on the arrays it makes (sequences, array constructors). */
const JSONATA_ARRAY_MARKS = ['sequence', 'keepSingleton', 'tupleStream', 'outerWrapper', 'cons'] as const;

/**
 * A jsonata result as plain data. jsonata marks the arrays it makes (`sequence`, `keepSingleton`…),
 * and reads a marked array differently: a one-item sequence is unwrapped where a JSON array is kept.
 * Handed on as they are, a transform's `[{"id": "a"}]` (so its record shows) was read by the next
 * step as `{"id": "a"}` — and as the array on a retry, whose input comes from the stored cursor.
 * Unmarked values are returned as they are (no copy): the walk costs a pass over the result, on
 * the path that already paid for jsonata.
 */
function plainResult(value: unknown): unknown {
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined = JSONATA_ARRAY_MARKS.some((m) => Object.prototype.hasOwnProperty.call(value, m)) ? [] : undefined;
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      const plain = plainResult(item);
      if (copy === undefined && plain !== item) copy = value.slice(0, i);
      if (copy !== undefined) copy.push(plain);
    }
    return copy ?? value;
  }
  if (typeof value === 'object' && value !== null && !Buffer.isBuffer(value)) {
    let copy: Record<string, unknown> | undefined;
    for (const [key, item] of Object.entries(value)) {
      const plain = plainResult(item);
      if (plain !== item) (copy ??= { ...value })[key] = plain;
    }
    return copy ?? value;
  }
  return value;
}

/**
 * JSONata results are JSON-like but `undefined` means "nothing matched"; steps hand `null` on so the
 * next input, the cursor and the records always hold a JSON value.
 */
export function orNull(value: unknown): unknown {
  return value === undefined ? null : value;
}
