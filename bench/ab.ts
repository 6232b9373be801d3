import path from 'node:path';
import { api, arg, load, fmt, median, ROOT, startHookd } from './lib.js';

/**
 * npm run bench:ab -- --base <checkout> [--rounds 4 --seconds 8 --workers 64 --env K=V,K=V]
 *
 * This build against another one (a checkout of an earlier commit, built: `git worktree add
 * /tmp/base <rev> && cd /tmp/base && npm ci && npm run build`), in turn: A-B, B-A, … so that the
 * machine's drift weighs on both alike. Each run: a fresh hookd with a one-step flow, 2 s of
 * warm-up, then `--seconds` of 64 connections (130-byte JSON). Prints req/s and CPU per request of
 * each run and the median of the pairs' ratios (this ÷ base): on a noisy machine, a pair measured a
 * minute apart says more than two runs an hour apart.
 * `--env` sets variables for this build's runs only; with `--base .` it compares two settings of one
 * build (e.g. `--env NODE_OPTIONS=--max-semi-space-size=32`). `--base-env` sets the base's: for the
 * distributed mode, give each its own schema and prefix (a newer build's migrations would stop the
 * older one), e.g. `--env DATABASE_URL=…,RABBITMQ_URI=…,DATABASE_SCHEMA=ab_this,RABBITMQ_PREFIX=ab_this
 * --base-env DATABASE_URL=…,RABBITMQ_URI=…,DATABASE_SCHEMA=ab_base,RABBITMQ_PREFIX=ab_base`.
 */
const base = arg('base', '');
if (base === '') throw new Error('--base <checkout of the build to compare against> is required');
const rounds = Math.max(1, Number(arg('rounds', '4')));
const seconds = Number(arg('seconds', '8'));
const workers = arg('workers', '64');
/** K=V,K=V as variables. */
const envArg = (name: string): Record<string, string> =>
  Object.fromEntries(
    arg(name, '')
      .split(',')
      .filter((kv) => kv.includes('='))
      .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
  );
/** Variables for this build's runs only. */
const thisEnv = envArg('env');
/** Variables for the base's runs only. */
const baseEnv = envArg('base-env');
const BODY = JSON.stringify({ event: 'order.created', id: 'ord_0123456789', total: 129.95, currency: 'EUR', customer: { id: 'cus_42', tier: 'gold' }, x: 'abc' });

async function run(root: string, env: Record<string, string> = {}): Promise<{ rps: number; cpuUs: number }> {
  const hookd = await startHookd({ WORKER_CONCURRENCY: workers, ...env }, root);
  try {
    await api(hookd.url, 'PUT', '/api/flows/bench', { steps: [{ id: 'shape', type: 'transform', expression: '{ "id": body.id, "total": body.total }' }] });
    const url = `${hookd.url}/hook/bench`;
    await load({ url, connections: 64, seconds: 2, body: BODY });
    const r = await load({ url, connections: 64, seconds, body: BODY, ...(hookd.pid ? { pid: hookd.pid } : {}) });
    if (r.non2xx + r.errors > 0) throw new Error(`${root}: ${r.non2xx} non-2xx, ${r.errors} errors`);
    return { rps: r.rps, cpuUs: r.cpuUs ?? NaN };
  } finally {
    await hookd.stop();
  }
}

const self = ROOT;
const other = path.resolve(base);
const envNote = Object.keys(thisEnv).length > 0 ? `; this build with ${Object.entries(thisEnv).map(([k, v]) => `${k}=${v}`).join(' ')}` : '';
console.log(`bench:ab — this build (${self}) vs ${other}, ${rounds} pairs, ${seconds} s each, WORKER_CONCURRENCY=${workers}${envNote}\n`);
const cpu: number[] = [];
const rps: number[] = [];
for (let r = 0; r < rounds; r++) {
  const baseFirst = r % 2 === 0;
  const a = baseFirst ? await run(other, baseEnv) : await run(self, thisEnv);
  const b = baseFirst ? await run(self, thisEnv) : await run(other, baseEnv);
  const [mine, theirs] = baseFirst ? [b, a] : [a, b];
  cpu.push(mine.cpuUs / theirs.cpuUs);
  rps.push(mine.rps / theirs.rps);
  console.log(`pair ${r + 1}: base ${fmt(theirs.rps)} req/s ${fmt(theirs.cpuUs)} µs/req   this ${fmt(mine.rps)} req/s ${fmt(mine.cpuUs)} µs/req`);
}
console.log(`\nthis ÷ base, median of the pairs: CPU per request ${fmt(median(cpu), 2)}, req/s ${fmt(median(rps), 2)}`);
