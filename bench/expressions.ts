import { PerformanceObserver } from 'node:perf_hooks';
import jsonata from 'jsonata';
import { compileExpression } from '../src/flow/expression.js';
import { arg, fmt, median } from './lib.js';

/**
 * npm run bench:expressions [-- --evals 200000 --rounds 5]
 *
 * The JSONata fast path (src/flow/expression-fast-path.ts) against jsonata itself, same process,
 * same inputs, A-B rounds: µs per evaluation and garbage-collection time per 1,000 evaluations, for
 * the expressions flows use most (a mapping and a filter over a message view) and one outside the
 * fast path (a function call), which must cost what jsonata costs.
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

async function measure(evaluate: (input: unknown) => Promise<unknown>): Promise<{ us: number; gcPerK: number }> {
  for (let i = 0; i < 10_000; i++) await evaluate(view); // warm-up
  const gcBefore = gcMs;
  const t0 = performance.now();
  for (let i = 0; i < evals; i++) await evaluate(view);
  const ms = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 50)); // let the observer report
  return { us: (ms * 1000) / evals, gcPerK: ((gcMs - gcBefore) * 1000) / evals };
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
