import { PerformanceObserver } from 'node:perf_hooks';
import jsonata from 'jsonata';
import { compileExpression, DEFAULT_EXPRESSION_LIMITS } from '../src/flow/expression.js';
import { createExpressionWorkers } from '../src/flow/expression-workers.js';
import { arg, fmt, median } from './lib.js';

/**
 * npm run bench:expressions [-- --evals 200000 --rounds 5]
 *
 * The JSONata fast path (src/flow/expression-fast-path.ts) against jsonata itself, same process,
 * same inputs, A-B rounds: µs per evaluation and garbage-collection time per 1,000 evaluations, for
 * the expressions flows use most (a mapping and a filter over a message view) and one outside the
 * fast path (a function call), which must cost what jsonata costs. Then that last one on the
 * worker threads hookd evaluates it on by default (EXPRESSION_WORKERS=2): the round trip, one at a
 * time and 16 at once, against the same on the main thread.
 */
const evals = Number(arg('evals', '200000'));
const rounds = Math.max(1, Number(arg('rounds', '5')));

const view = {
  id: '01a243ba-2c03-756f-915a-1ebd3de33fea',
  flowId: 'bench',
  receivedAt: new Date().toISOString(),
  method: 'POST',
  path: '',
  query: {},
  headers: { host: '127.0.0.1:3000', 'content-type': 'application/json', 'content-length': '130' },
  contentType: 'application/json',
  body: { event: 'order.created', id: 'ord_0123456789', total: 129.95, currency: 'EUR', customer: { id: 'cus_42', tier: 'gold' }, x: 'abc' },
  clientIp: '127.0.0.1',
};

const EXPRESSIONS = ['{ "id": body.id, "total": body.total }', 'body.total > 100', '$sum([body.total, 1])'];

let gcMs = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcMs += e.duration;
}).observe({ entryTypes: ['gc'] });

async function measure(evaluate: (input: unknown) => Promise<unknown>, n = evals, atOnce = 1): Promise<{ us: number; gcPerK: number }> {
  for (let i = 0; i < Math.min(10_000, n); i++) await evaluate(view); // warm-up
  const gcBefore = gcMs;
  const t0 = performance.now();
  for (let i = 0; i < n; i += atOnce) await Promise.all(Array.from({ length: atOnce }, () => evaluate(view)));
  const ms = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 50)); // let the observer report
  return { us: (ms * 1000) / n, gcPerK: ((gcMs - gcBefore) * 1000) / n };
}

console.log(`bench:expressions — ${fmt(evals)} evaluations per measurement, ${rounds} A-B rounds, over a message view\n`);
for (const source of EXPRESSIONS) {
  const plain = jsonata(source);
  const viaJsonata = (input: unknown) => plain.evaluate(input, {});
  const viaHookd = compileExpression(source).evaluate;
  const ratios: number[] = [];
  const rows: string[] = [];
  for (let r = 0; r < rounds; r++) {
    // A-B, then B-A: drift of the machine weighs on both sides alike.
    let base: { us: number; gcPerK: number };
    let fast: { us: number; gcPerK: number };
    if (r % 2 === 0) {
      base = await measure(viaJsonata);
      fast = await measure(viaHookd);
    } else {
      fast = await measure(viaHookd);
      base = await measure(viaJsonata);
    }
    ratios.push(fast.us / base.us);
    rows.push(`  jsonata ${fmt(base.us, 2)} µs (GC ${fmt(base.gcPerK, 2)} ms per 1k)   hookd ${fmt(fast.us, 2)} µs (GC ${fmt(fast.gcPerK, 2)} ms per 1k)`);
  }
  console.log(source);
  for (const row of rows) console.log(row);
  console.log(`  ratio hookd ÷ jsonata (time per evaluation, median): ${fmt(median(ratios), 3)}\n`);
}

{
  const source = EXPRESSIONS[EXPRESSIONS.length - 1]!;
  const workers = createExpressionWorkers({ size: 2 });
  const inline = compileExpression(source).evaluate;
  const isolated = compileExpression(source, DEFAULT_EXPRESSION_LIMITS, workers).evaluate;
  const n = Math.max(1_000, Math.floor(evals / 10));
  console.log(`${source} on the main thread vs on 2 worker threads (${fmt(n)} evaluations, wall time per evaluation)`);
  for (const atOnce of [1, 16]) {
    const ratios: number[] = [];
    const rows: string[] = [];
    for (let r = 0; r < rounds; r++) {
      const [a, b] = r % 2 === 0 ? [await measure(inline, n, atOnce), await measure(isolated, n, atOnce)] : [undefined, await measure(isolated, n, atOnce)];
      const main = a ?? (await measure(inline, n, atOnce));
      ratios.push(b.us / main.us);
      rows.push(`  main thread ${fmt(main.us, 2)} µs   workers ${fmt(b.us, 2)} µs`);
    }
    console.log(`${atOnce} at a time`);
    for (const row of rows) console.log(row);
    console.log(`  ratio workers ÷ main thread (median): ${fmt(median(ratios), 2)}\n`);
  }
  await workers.close();
}
