import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { FilterStepDef, LogStepDef, TransformStepDef } from '../../src/core/flow.js';
import { compileFlow, flowProblems } from '../../src/flow/compile.js';
import { compileExpression, expressionCacheSize, ExpressionError } from '../../src/flow/expression.js';
import { createExpressionWorkers } from '../../src/flow/expression-workers.js';
import type { StepContext } from '../../src/flow/step.js';
import { StepFailure } from '../../src/flow/step-failure.js';
import { compileFilterStep, jsonataBoolean } from '../../src/flow/steps/filter.js';
import { compileLogStep } from '../../src/flow/steps/log.js';
import { compileTransformStep } from '../../src/flow/steps/transform.js';
import { capturingLogger } from '../helpers/capturing-logger.js';


const silent = pino({ level: 'silent' });
const ctx = (stepId: string): StepContext => ({ flowId: 'f1', requestId: 'r1', stepId, attempt: 1, logger: silent });
const message = { id: 'r1', method: 'POST', body: { order: { id: 7, items: [{ sku: 'a', qty: 2 }, { sku: 'b', qty: 3 }] }, type: 'order.created' } };

describe('transform step', () => {
  const def = (expression: string): TransformStepDef => ({ id: 't', type: 'transform', expression });

  it('returns the expression result as output', async () => {
    const step = compileTransformStep(def('{ "orderId": body.order.id, "total": $sum(body.order.items.qty) }'));
    expect(step.pure).toBe(true);
    await expect(step.run(message, ctx('t'))).resolves.toEqual({ status: 'completed', output: { orderId: 7, total: 5 } });
  });

  it('turns "no match" into null', async () => {
    const step = compileTransformStep(def('body.missing'));
    await expect(step.run(message, ctx('t'))).resolves.toEqual({ status: 'completed', output: null });
  });

  it('maps arrays at the root as one input', async () => {
    const step = compileTransformStep(def('$count($)'));
    await expect(step.run([1, 2, 3], ctx('t'))).resolves.toEqual({ status: 'completed', output: 3 });
  });

  it('rejects a syntax error when compiled, with code and position', () => {
    expect(() => compileTransformStep(def('{ "a": '))).toThrow(ExpressionError);
    try {
      compileTransformStep(def('body.('));
    } catch (err) {
      expect((err as ExpressionError).message).toMatch(/^Invalid JSONata expression: .+\(S0\d{3}, position \d+/);
    }
  });

  it('fails non-retryably on an evaluation error', async () => {
    const step = compileTransformStep(def('body.type + 1'));
    const err = await step.run(message, ctx('t')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StepFailure);
    expect((err as StepFailure).retryable).toBe(false);
    expect((err as StepFailure).message).toMatch(/T2001/);
  });

  it('hands on plain JSON: the next step reads an array as it reads it on a retry (from the stored cursor)', async () => {
    // A one-commit push: `[]` kept commits an array, and the record showed one; yet the next step,
    // given jsonata's own sequence, unwrapped it — `{"blocks": commits}` sent an object on the first
    // attempt and an array on the retry.
    const first = compileTransformStep(def('{"commits": body.commits[].{"id": $substring(id, 0, 7)}}'));
    const output = ((await first.run({ body: { commits: [{ id: 'abcdef123' }] } }, ctx('t'))) as { output: { commits: unknown[] } }).output;
    expect(Object.keys(output.commits)).toEqual(['0']);
    const second = compileTransformStep(def('{"blocks": commits}'));
    const fromCursor = await second.run(JSON.parse(JSON.stringify(output)), ctx('t'));
    expect(fromCursor).toEqual({ status: 'completed', output: { blocks: [{ id: 'abcdef1' }] } });
    expect(await second.run(output, ctx('t'))).toEqual(fromCursor);
    // The same on the expression workers (a structured clone kept jsonata's marks).
    const workers = createExpressionWorkers({ size: 1 });
    try {
      const far = ((await compileTransformStep(def('{"commits": body.commits[].{"id": $substring(id, 0, 7)}}'), undefined, workers).run({ body: { commits: [{ id: 'abcdef123' }] } }, ctx('t'))) as { output: { commits: unknown[] } }).output;
      expect(Object.keys(far.commits)).toEqual(['0']);
      expect(await second.run(far, ctx('t'))).toEqual(fromCursor);
    } finally {
      await workers.close();
    }
  });

  it('an evaluation error in a multi-line expression (a YAML block) says its line and column', async () => {
    const source = '{\n  "id": body.order.id,\n  "total": $sum(body.order.items.sku)\n}';
    const err = await compileTransformStep(def(source)).run(message, ctx('t')).catch((e: unknown) => e);
    expect((err as StepFailure).message).toMatch(/\(T0412, position 41, line 3, column 16, token "sum"\)$/);
    // On the expression workers too (the path of what the inline subset does not decide).
    const workers = createExpressionWorkers({ size: 1 });
    try {
      const far = await compileTransformStep(def(source), undefined, workers).run(message, ctx('t')).catch((e: unknown) => e);
      expect((far as StepFailure).message).toMatch(/\(T0412, position 41, line 3, column 16, token "sum"\)$/);
    } finally {
      await workers.close();
    }
  });

  it('stops a runaway expression with the depth limit: not retryable', async () => {
    const step = compileTransformStep(def('($f := function($n) { $n = 0 ? 0 : 1 + $f($n - 1) }; $f(100000))'), { timeoutMs: 10_000, stack: 100 });
    const err = await step.run({}, ctx('t')).catch((e: unknown) => e);
    expect((err as StepFailure).retryable).toBe(false);
    expect((err as StepFailure).message).toMatch(/D1011/);
  });

  it('stops a long expression with the time limit: retryable, since evaluations share the clock under load', async () => {
    const step = compileTransformStep(def('($f := function($n) { $n > 0 ? $f($n - 1) + 1 : 0 }; [1..200000].($f(2)))'), { timeoutMs: 50, stack: 1_000 });
    const err = await step.run({}, ctx('t')).catch((e: unknown) => e);
    expect((err as StepFailure).retryable).toBe(true);
    expect((err as StepFailure).message).toMatch(/D1012/);
  });

  it('refuses a regular expression that can backtrack catastrophically (the time limit cannot stop one)', async () => {
    for (const source of ['$match(body.s, /(a+)+b/)', 'body.s ~> $replace(/(x+x+)+y/, "z")', '{ "m": $contains(body.s, /(\\w+\\s?)*$/) }']) {
      expect(() => compileExpression(source), source).toThrow(/regular expression \/.+\/ can take exponential time/);
    }
    expect(await compileExpression('$contains(body.s, /ab+c/i)').evaluate({ body: { s: 'xABBC' } })).toBe(true);
  });

  it('matches a regex with overlapping alternatives in linear time (V8 falls back from backtracking)', async () => {
    // safe-regex2 passes these (star height 1), yet a backtracking match takes 2^n steps: 27
    // characters took ≈ 7 s without the fallback on this machine.
    const s = `${'a'.repeat(27)}c`;
    for (const source of ['$match(body.s, /^(a|a)*b$/)', '$contains(body.s, /^(a|aa)*$/)']) {
      const t0 = performance.now();
      const result = await compileExpression(source).evaluate({ body: { s } });
      expect(performance.now() - t0, source).toBeLessThan(1_000);
      expect(result === undefined || result === false, source).toBe(true);
    }
  });

  it('evaluates one compiled expression concurrently without mixing inputs', async () => {
    const expr = compileExpression('($wait := $; body.n)');
    const results = await Promise.all(Array.from({ length: 50 }, (_, n) => expr.evaluate({ body: { n } })));
    expect(results).toEqual(Array.from({ length: 50 }, (_, n) => n));
  });

  it('compiles each expression once (cached by source)', async () => {
    const before = expressionCacheSize();
    const a = compileExpression('$uppercase(body.type) & "-cached"');
    const b = compileExpression('$uppercase(body.type) & "-cached"');
    expect(expressionCacheSize()).toBe(before + 1);
    await expect(b.evaluate(message)).resolves.toBe('ORDER.CREATED-cached');
    await expect(a.evaluate(message)).resolves.toBe('ORDER.CREATED-cached');
  });
});

describe('filter step', () => {
  const def = (expression: string): FilterStepDef => ({ id: 'f', type: 'filter', expression });

  it('passes the input through when true', async () => {
    const step = compileFilterStep(def('body.type = "order.created"'));
    await expect(step.run(message, ctx('f'))).resolves.toEqual({ status: 'completed', output: message });
  });

  it('filters when false', async () => {
    const step = compileFilterStep(def('body.type = "order.deleted"'));
    await expect(step.run(message, ctx('f'))).resolves.toEqual({ status: 'filtered' });
  });

  it('treats no match as false and casts like $boolean', async () => {
    await expect(compileFilterStep(def('body.missing')).run(message, ctx('f'))).resolves.toEqual({ status: 'filtered' });
    await expect(compileFilterStep(def('body.order.items')).run(message, ctx('f'))).resolves.toMatchObject({ status: 'completed' });
    expect([0, '', null, [], {}, [0, false], 1, 'x', [0, 1], { a: 1 }].map(jsonataBoolean)).toEqual([
      false, false, false, false, false, false, true, true, true, true,
    ]);
  });

  it('fails non-retryably on an evaluation error', async () => {
    const err = await compileFilterStep(def('$number("abc") > 1')).run(message, ctx('f')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StepFailure);
    expect((err as StepFailure).retryable).toBe(false);
  });
});

describe('log step', () => {
  it('logs the input with flow, request and step ids at the chosen level and passes it on', async () => {
    const { logger, lines } = capturingLogger('debug');
    const def: LogStepDef = { id: 'audit', type: 'log', level: 'warn', message: 'order seen' };
    const step = compileLogStep(def);
    const out = await step.run({ a: 1 }, { ...ctx('audit'), logger });
    expect(out).toEqual({ status: 'completed', output: { a: 1 } });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 40, msg: 'order seen', flowId: 'f1', requestId: 'r1', stepId: 'audit', input: { a: 1 } });
  });

  it('never logs credentials (any flow, any depth) nor an unbounded input; passes the input on as it is', async () => {
    const { logger, lines } = capturingLogger('debug');
    const input = {
      headers: { authorization: 'Bearer hdr-secret', cookie: 'session=c-secret', 'x-trace': 'keep' },
      query: { token: 'q-secret', page: '2' },
      body: { user: { password: 'pw-secret', name: 'ann' }, items: [{ api_key: 'k-secret' }] },
    };
    const out = await compileLogStep({ id: 'l', type: 'log' }).run(input, { ...ctx('l'), logger });
    expect(out).toEqual({ status: 'completed', output: input });
    const logged = JSON.stringify(lines[0]);
    for (const secret of ['hdr-secret', 'c-secret', 'q-secret', 'pw-secret', 'k-secret']) expect(logged).not.toContain(secret);
    expect(lines[0]).toMatchObject({ input: { headers: { 'x-trace': 'keep' }, query: { page: '2' }, body: { user: { name: 'ann' } } } });
    await compileLogStep({ id: 'l', type: 'log' }).run({ big: 'x'.repeat(100_000) }, { ...ctx('l'), logger });
    expect(lines[1]).toMatchObject({ input: { $truncated: true, bytes: 100_010 } });
    expect(JSON.stringify(lines[1]).length).toBeLessThan(20_000);
  });

  it('defaults to info', async () => {
    const { logger, lines } = capturingLogger('debug');
    await compileLogStep({ id: 'l', type: 'log' }).run('x', { ...ctx('l'), logger });
    expect(lines[0]).toMatchObject({ level: 30, input: 'x', stepId: 'l' });
  });
});

describe('flow compilation', () => {
  const flow = (steps: unknown[]) =>
    ({ id: 'f1', name: 'f1', status: 'started', trigger: { type: 'webhook' }, steps, createdAt: '', updatedAt: '' }) as never;

  it('compiles every step type', () => {
    const compiled = compileFlow(
      flow([
        { id: 'a', type: 'transform', expression: 'body' },
        { id: 'b', type: 'filter', expression: 'true' },
        { id: 'c', type: 'http', url: 'http://127.0.0.1:47/x' },
        { id: 'd', type: 'log' },
      ]),
    );
    expect(compiled.ok).toBe(true);
    if (compiled.ok) expect(compiled.steps.map((s) => [s.def.id, s.pure])).toEqual([['a', true], ['b', true], ['c', false], ['d', true]]);
  });

  it('lists every step that cannot run', () => {
    const problems = flowProblems(
      flow([
        { id: 'a', type: 'transform', expression: '{' },
        { id: 'b', type: 'http', url: 'ftp://x/y' },
        { id: 'c', type: 'http', url: 'http://x/y', method: 'GET', body: 'body' },
        { id: 'd', type: 'http', url: 'not a url' },
        { id: 'e', type: 'http', url: 'http://x/y', body: '$$$(' },
        { id: 'f', type: 'log' },
        { id: 'g', type: 'http', url: 'https://alice:s3cret@x/y?token=abc' },
        { id: 'h', type: 'http', url: 'http://127.0.0.1:10080/x' },
        { id: 'i', type: 'http', url: 'http://127.0.0.1:8080/x' },
      ]),
    );
    expect(problems).toHaveLength(7);
    expect(problems[6]).toMatch(/^\/steps\/7 \(http step "h"\): url port 10080 is one that fetch refuses to call/);
    expect(problems[5]).toMatch(/^\/steps\/6 \(http step "g"\): url must not contain credentials/);
    expect(problems[5]).not.toMatch(/s3cret|alice/);
    expect(problems[0]).toMatch(/^\/steps\/0 \(transform step "a"\): Invalid JSONata expression/);
    expect(problems[1]).toMatch(/^\/steps\/1 \(http step "b"\): url must be http or https/);
    expect(problems[2]).toMatch(/^\/steps\/2 \(http step "c"\): a GET request cannot have a body/);
    expect(problems[3]).toMatch(/^\/steps\/3 \(http step "d"\): invalid url/);
    expect(problems[4]).toMatch(/^\/steps\/4 \(http step "e"\): Invalid JSONata expression/);
  });
});

describe('$message: the message the flow received, in every step', () => {
  const message = { body: { id: 'ord-1', total: 250 }, headers: { 'x-shop': 'eu' } };
  const answer = { status: 200, body: { invoice: 'inv-9' } }; // an earlier http step's answer

  it('a transform and a filter read it beside their input; an expression without it is unchanged', async () => {
    const transform = compileTransformStep({ id: 't', type: 'transform', expression: '{ "order": $message.body.id, "invoice": body.invoice }' } as TransformStepDef);
    expect(await transform.run(answer, { ...ctx('t'), message })).toEqual({ status: 'completed', output: { order: 'ord-1', invoice: 'inv-9' } });
    const filter = compileFilterStep({ id: 'f', type: 'filter', expression: '$message.body.total > 100 and status = 200' } as FilterStepDef);
    expect(await filter.run(answer, { ...ctx('f'), message })).toMatchObject({ status: 'completed' });
    expect(await filter.run(answer, { ...ctx('f'), message: { body: { total: 5 } } })).toMatchObject({ status: 'filtered' });
    // Without a message (a step run on its own): $message is null, nothing matches.
    expect(await transform.run(answer, ctx('t'))).toEqual({ status: 'completed', output: { invoice: 'inv-9' } });
  });

  it('evaluated on the expression workers too (the message goes with the input)', async () => {
    const workers = createExpressionWorkers({ size: 1 });
    try {
      const expr = compileExpression('$uppercase($message.headers."x-shop") & "-" & body.invoice', undefined, workers);
      expect(await expr.evaluate(answer, message)).toBe('EU-inv-9');
    } finally {
      await workers.close();
    }
  });
});
