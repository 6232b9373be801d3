import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { compileExpression, DEFAULT_EXPRESSION_LIMITS, ExpressionError } from '../../src/flow/expression.js';
import { createExpressionWorkers, type ExpressionWorkers, HARD_LIMIT_GRACE_MS } from '../../src/flow/expression-workers.js';

const opened: ExpressionWorkers[] = [];
const workers = (size = 1) => {
  const w = createExpressionWorkers({ size });
  opened.push(w);
  return w;
};
afterEach(() => Promise.all(opened.splice(0).map((w) => w.close())));

/** The main thread's timers firing during `p`: how often a 10 ms interval got a turn. */
async function ticksDuring<T>(p: Promise<T>): Promise<{ ticks: number; ms: number; result: PromiseSettledResult<T> }> {
  let ticks = 0;
  const t0 = Date.now();
  const timer = setInterval(() => ticks++, 10);
  const [result] = await Promise.allSettled([p]);
  clearInterval(timer);
  return { ticks, ms: Date.now() - t0, result: result! };
}

const message = { body: { order: { id: 7, items: [{ qty: 2, sku: 'a' }, { qty: 3, sku: 'b' }] }, type: 'x' }, headers: { 'x-event': 'push' } };

describe('expression workers', () => {
  it('give the results and errors jsonata gives on the main thread', async () => {
    const w = workers(2);
    const sources = [
      '{ "total": $sum(body.order.items.qty), "skus": body.order.items.sku }',
      '$count(body.order.items)',
      'body.order.items[qty > 2].sku',
      'body.missing',
      '$uppercase(type) & "-" & $string(body.order.id)',
      'body.type + 1',
      '$sum(body.order.items.(qty * 2))',
    ];
    for (const source of sources) {
      const inline = compileExpression(source);
      const isolated = compileExpression(source, DEFAULT_EXPRESSION_LIMITS, w);
      const [a, b] = await Promise.allSettled([inline.evaluate(message), isolated.evaluate(message)]);
      if (a.status === 'fulfilled') {
        expect(b.status, source).toBe('fulfilled');
        // What JSON keeps of it is what executions record and the next step gets.
        expect(JSON.stringify((b as PromiseFulfilledResult<unknown>).value), source).toBe(JSON.stringify(a.value));
      } else {
        expect(b.status, source).toBe('rejected');
        const [ea, eb] = [a.reason as ExpressionError, (b as PromiseRejectedResult).reason as ExpressionError];
        expect(eb).toBeInstanceOf(ExpressionError);
        expect(eb.message, source).toBe(ea.message);
        expect(eb.code, source).toBe(ea.code);
      }
    }
  });

  it("keep the main thread free while jsonata runs to its time limit (on the main thread it is held throughout)", async () => {
    const source = '$count([1..10000000].($ * 2))';
    const limits = { timeoutMs: 600, stack: 1_000 };
    const inline = await ticksDuring(compileExpression(source, limits).evaluate({}));
    expect(inline.result.status).toBe('rejected');
    expect(inline.ticks).toBeLessThanOrEqual(2);
    const isolated = await ticksDuring(compileExpression(source, limits, workers()).evaluate({}));
    expect(isolated.result.status).toBe('rejected');
    expect(((isolated.result as PromiseRejectedResult).reason as ExpressionError).code).toBe('D1012');
    expect(isolated.ticks).toBeGreaterThan(isolated.ms / 10 / 3);
  });

  it('terminate an evaluation that runs past its limit and grace inside native calls; the next one gets a new thread', async () => {
    const w = workers();
    const limits = { timeoutMs: 200, stack: 1_000 };
    // Its time goes into $split and $join over 20 million items: jsonata's own check comes too late.
    const source = '$length($join($split($pad("", 20000000, "ab"), ""), ","))';
    const inline = Date.now();
    await compileExpression(source, limits).evaluate({}).catch(() => undefined);
    const inlineMs = Date.now() - inline;
    console.log(`the runaway expression on the main thread: ${inlineMs} ms with a ${limits.timeoutMs} ms limit`);
    expect(inlineMs).toBeGreaterThan(limits.timeoutMs + HARD_LIMIT_GRACE_MS + 300);
    const runaway = compileExpression(source, limits, w);
    const t0 = Date.now();
    const err = await runaway.evaluate({}).then(() => undefined, (e: unknown) => e as ExpressionError);
    const took = Date.now() - t0;
    expect(err).toBeInstanceOf(ExpressionError);
    expect(err!.code).toBe('D1012');
    expect(err!.message).toMatch(/stopped after 700 ms/);
    expect(took).toBeGreaterThanOrEqual(limits.timeoutMs + HARD_LIMIT_GRACE_MS - 20);
    expect(took).toBeLessThan(limits.timeoutMs + HARD_LIMIT_GRACE_MS + 1_000);
    expect(await compileExpression('$sum(body.order.items.qty)', limits, w).evaluate(message)).toBe(5);
  });

  it('a thread still starting does not use up the time limit: the hard limit runs from when it can evaluate', async () => {
    const w = workers(1);
    const limits = { ...DEFAULT_EXPRESSION_LIMITS, timeoutMs: 50 };
    // A fresh pool: the thread starts now. The main thread is busy longer than the limit + grace
    // (a loaded machine), so that the thread's start and the timer are both due when it looks again.
    const answer = w.evaluate('$sum([1, 2])', limits, {});
    const until = Date.now() + 50 + HARD_LIMIT_GRACE_MS + 300;
    while (Date.now() < until) {
      // busy
    }
    await expect(answer).resolves.toBe(3);
  });

  it('a result that cannot cross to the main thread (a lambda) comes back as null, not as a failure', async () => {
    const w = workers();
    expect(await compileExpression('function($x) { $x }', DEFAULT_EXPRESSION_LIMITS, w).evaluate(message)).toBeNull();
    expect(await compileExpression('{ "f": function($x) { $x }, "n": 1 }', DEFAULT_EXPRESSION_LIMITS, w).evaluate(message)).toEqual({ n: 1 });
  });

  it('run evaluations beyond their threads in turn, each one answered; close fails those waiting', async () => {
    const w = workers(2);
    const e = compileExpression('$sum(body.order.items.(qty * $n))', DEFAULT_EXPRESSION_LIMITS, {
      evaluate: (source, limits, input) => w.evaluate(source, limits, input),
    });
    const inputs = Array.from({ length: 20 }, (_, n) => ({ ...message, n }));
    // $n is unbound: the bindings are empty; every answer is its own evaluation's.
    const results = await Promise.all(inputs.map((i) => e.evaluate(i)));
    expect(results).toHaveLength(20);
    const slow = compileExpression('$count([1..10000000].($ * 2))', { timeoutMs: 300, stack: 1_000 }, w);
    const running = [slow.evaluate({}), slow.evaluate({})].map((p) => p.catch((x: unknown) => x));
    const queued = compileExpression('$count(body.order.items)', DEFAULT_EXPRESSION_LIMITS, w).evaluate(message).catch((x: unknown) => x);
    await w.close();
    expect(((await queued) as Error).message).toMatch(/closed/);
    for (const r of await Promise.all(running)) expect((r as Error).message).toMatch(/closed/);
  });
});

describe('expression workers: sharing', () => {
  it("one expression's evaluations leave a worker to the others' once they wait (all but one of the workers at most)", async () => {
    const w = workers(2);
    const heavy = compileExpression('$count([1..10000000].($ * 2))', { timeoutMs: 400, stack: 1_000 }, w);
    const light = compileExpression('$sum(body.order.items.qty)', DEFAULT_EXPRESSION_LIMITS, w);
    const t0 = Date.now();
    // Four heavy ones queued first: both workers take one at once (nothing else waits yet).
    const heavies = Array.from({ length: 4 }, () => heavy.evaluate({}).catch(() => Date.now() - t0));
    const lights = Array.from({ length: 10 }, () => light.evaluate(message).then((v) => ({ v, at: Date.now() - t0 })));
    const done = await Promise.all(lights);
    expect(done.every((d) => d.v === 5)).toBe(true);
    // The first worker to free up serves the light ones; the heavy ones wait for the other: all
    // ten are done long before the four heavy ones (two rounds of ~400 ms on one worker after the first).
    const lastLight = Math.max(...done.map((d) => d.at));
    const heavyEnds = (await Promise.all(heavies)) as number[];
    expect(lastLight).toBeLessThan(Math.max(...heavyEnds) - 300);
  });
});

describe('expression workers: overflow', () => {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const limits = (timeoutMs: number) => ({ timeoutMs, stack: 1_000 });
  /** A different expression for each n, each running to its time limit. */
  const heavy = (n: number) => `$count([1..10000000].($ * ${n + 2}))`;
  const light = (w: ExpressionWorkers) => w.evaluate('$sum([1,2])', DEFAULT_EXPRESSION_LIMITS, {});
  /** Started and warm, as in a running process: their first evaluation is done. */
  const warm = async (w: ExpressionWorkers, size: number) => {
    await Promise.all(Array.from({ length: size }, (_, n) => w.evaluate(`$sum([${n}])`, DEFAULT_EXPRESSION_LIMITS, {})));
    expect(w.threads()).toBe(size);
  };
  /** The most threads seen (every 5 ms) until `p` settles. */
  const peakThreads = async (w: ExpressionWorkers, p: Promise<unknown>) => {
    let peak = w.threads();
    const timer = setInterval(() => (peak = Math.max(peak, w.threads())), 5);
    await p;
    clearInterval(timer);
    return Math.max(peak, w.threads());
  };

  it('light evaluations behind heavy ones of other expressions on every worker get an extra thread', async () => {
    const w = workers(2);
    await warm(w, 2);
    const t0 = Date.now();
    // Heavy ones of 2 s: room for an overflow thread's start on a loaded machine (one test run
    // beside others took over 400 ms to start it), the lights still done long before them.
    const heavies = [0, 1].map((n) => w.evaluate(heavy(n), limits(2_000), {}).then(() => Date.now() - t0, () => Date.now() - t0));
    await sleep(300); // both workers well into theirs
    const sent = Date.now();
    const lights = await Promise.all(Array.from({ length: 10 }, () => light(w).then((v) => ({ v, ms: Date.now() - sent }))));
    const slowest = Math.max(...lights.map((l) => l.ms));
    expect(w.threads()).toBe(3);
    const heavyEnds = await Promise.all(heavies);
    console.log(`10 light evaluations sent 300 ms into 2 heavy ones on 2 workers: all done ${slowest} ms later; the heavy ones ended ${heavyEnds.map((e) => e - (sent - t0)).join(' and ')} ms later`);
    expect(lights.every((l) => l.v === 3)).toBe(true);
    expect(slowest).toBeLessThan(1_000);
    expect(Math.min(...heavyEnds)).toBeGreaterThan(sent - t0 + slowest + 300);
  });

  it('an overflow thread stays while every worker is busy long, and ends once idle after that', async () => {
    const w = createExpressionWorkers({ size: 2, overflowIdleMs: 200 });
    opened.push(w);
    await warm(w, 2);
    const t0 = Date.now();
    const heavies = Promise.all([0, 1].map((n) => w.evaluate(heavy(n), limits(1_000), {}).then(() => Date.now() - t0, () => Date.now() - t0)));
    await sleep(300);
    expect(await light(w)).toBe(3);
    expect(w.threads()).toBe(3);
    await sleep(800 - (Date.now() - t0)); // idle for more than 200 ms, the heavy ones still running (1 s limit)
    expect(w.threads()).toBe(3);
    expect(Math.max(...(await heavies))).toBeGreaterThan(900);
    // Stopped past their grace, the heavy ones' threads are started again by the next evaluations.
    await Promise.all([light(w), light(w)]);
    let threads = w.threads();
    for (let waited = 0; threads > 2 && waited < 1_000; waited += 20) {
      await sleep(20);
      threads = w.threads();
    }
    expect(threads).toBe(2);
    expect(await light(w)).toBe(3); // the pool goes on
  });

  it('a flood of one heavy expression does not take the overflow thread: light ones do', async () => {
    const w = workers(2);
    await warm(w, 2);
    const flood = Promise.all(Array.from({ length: 8 }, () => w.evaluate(heavy(0), limits(300), {}).then(() => 'done', (e: ExpressionError) => e.code)));
    // Alone, it leaves the overflow thread idle: had it taken it, a second would have started, and so on.
    const alone = await peakThreads(w, sleep(1_000));
    const sent = Date.now();
    expect(await light(w)).toBe(3);
    const lightMs = Date.now() - sent;
    const peak = await peakThreads(w, flood);
    expect(await flood).toEqual(Array(8).fill('D1012'));
    console.log(`8 evaluations of one heavy expression on 2 workers: ${alone} threads at most for 1 s; a light one sent then done in ${lightMs} ms; ${peak} threads at most after it`);
    expect(alone).toBeLessThanOrEqual(3);
    expect(lightMs).toBeLessThan(400);
    expect(peak).toBeLessThanOrEqual(4);
  });

  it('many different heavy expressions: twice the workers at most', async () => {
    const w = workers(2);
    await warm(w, 2);
    const all = Promise.all(Array.from({ length: 8 }, (_, n) => w.evaluate(heavy(n), limits(300), {}).then(() => 'done', (e: ExpressionError) => e.code)));
    const peak = await peakThreads(w, all);
    expect(await all).toEqual(Array(8).fill('D1012'));
    console.log(`8 different heavy expressions on 2 workers: at most ${peak} threads`);
    expect(peak).toBeLessThanOrEqual(4);
  });

  it('an idle pool with overflow threads does not keep the process alive', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'hookd-expr-'));
    const script = path.join(dir, 'child.mts');
    const module = path.resolve(import.meta.dirname, '../../src/flow/expression-workers.ts');
    await writeFile(
      script,
      `import { createExpressionWorkers } from ${JSON.stringify(module)};
const w = createExpressionWorkers({ size: 1 });
await w.evaluate('$sum([1])', { timeoutMs: 1000, stack: 1000 }, {});
const heavy = w.evaluate('$count([1..10000000].($ * 2))', { timeoutMs: 300, stack: 1000 }, {}).catch(() => undefined);
await new Promise((r) => setTimeout(r, 200));
await w.evaluate('$sum([1,2])', { timeoutMs: 1000, stack: 1000 }, {});
const threads = w.threads(); // the worker (still on the heavy one) and the overflow thread
await heavy;
console.log(threads);
`,
    );
    try {
      const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: path.resolve(import.meta.dirname, '../..'), stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      let printed = 0;
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        printed ||= Date.now();
      });
      const code = await new Promise<number | null>((r) => child.on('exit', r));
      const lingered = Date.now() - printed;
      console.log(`process with an idle overflow thread exited ${lingered} ms after its last evaluation (threads: ${out.trim()})`);
      expect(code).toBe(0);
      expect(out.trim()).toBe('2');
      expect(lingered).toBeLessThan(1_000); // the overflow thread's idle time is 5 s
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
