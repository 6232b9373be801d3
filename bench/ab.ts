import path from 'node:path';
import { api, arg, autocannon, fmt, median, ROOT, startHookd } from './lib.js';

/**
 * npm run bench:ab -- --base <checkout> [--rounds 4 --seconds 8 --workers 64]
 *
 * This build against another one (a checkout of an earlier commit, built: `git worktree add
 * /tmp/base <rev> && cd /tmp/base && npm ci && npm run build`), in turn: A-B, B-A, … so that the
 * machine's drift weighs on both alike. Each run: a fresh hookd with a one-step flow, 2 s of
 * warm-up, then `--seconds` of 64 connections (130-byte JSON). Prints req/s and CPU per request of
 * each run and the median of the pairs' ratios (this ÷ base): on a noisy machine, a pair measured a
 * minute apart says more than two runs an hour apart.
 */
const base = arg('base', '');
if (base === '') throw new Error('--base <checkout of the build to compare against> is required');
const rounds = Math.max(1, Number(arg('rounds', '4')));
const seconds = Number(arg('seconds', '8'));
const workers = arg('workers', '64');
const BODY = JSON.stringify({ event: 'order.created', id: 'ord_0123456789', total: 129.95, currency: 'EUR', customer: { id: 'cus_42', tier: 'gold' }, x: 'abc' });

async function run(root: string): Promise<{ rps: number; cpuUs: number }> {
  const hookd = await startHookd({ WORKER_CONCURRENCY: workers }, root);
  try {
    await api(hookd.url, 'PUT', '/api/flows/bench', { steps: [{ id: 'shape', type: 'transform', expression: '{ "id": body.id, "total": body.total }' }] });
    const url = `${hookd.url}/hook/bench`;
    await autocannon({ url, connections: 64, seconds: 2, body: BODY });
    const r = await autocannon({ url, connections: 64, seconds, body: BODY, ...(hookd.pid ? { pid: hookd.pid } : {}) });
    if (r.non2xx + r.errors > 0) throw new Error(`${root}: ${r.non2xx} non-2xx, ${r.errors} errors`);
    return { rps: r.rps, cpuUs: r.cpuUs ?? NaN };
  } finally {
    await hookd.stop();
  }
}

const self = ROOT;
const other = path.resolve(base);
console.log(`bench:ab — this build (${self}) vs ${other}, ${rounds} pairs, ${seconds} s each, WORKER_CONCURRENCY=${workers}\n`);
const cpu: number[] = [];
const rps: number[] = [];
for (let r = 0; r < rounds; r++) {
  const first = r % 2 === 0 ? other : self;
  const a = await run(first);
  const b = await run(first === self ? other : self);
  const [mine, theirs] = first === self ? [a, b] : [b, a];
  cpu.push(mine.cpuUs / theirs.cpuUs);
  rps.push(mine.rps / theirs.rps);
  console.log(`pair ${r + 1}: base ${fmt(theirs.rps)} req/s ${fmt(theirs.cpuUs)} µs/req   this ${fmt(mine.rps)} req/s ${fmt(mine.cpuUs)} µs/req`);
}
console.log(`\nthis ÷ base, median of the pairs: CPU per request ${fmt(median(cpu), 2)}, req/s ${fmt(median(rps), 2)}`);
