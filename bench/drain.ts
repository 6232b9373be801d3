import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { api, arg, autocannon, cpuSeconds, fmt, startHookd } from './lib.js';

/**
 * npm run bench:drain [-- --jobs 30000 --rounds 3 --prefetch N]
 *
 * How fast a backlog drains: what a queue meets after an outage or a burst. A hookd with its workers
 * off receives `--jobs` webhooks for a one-step flow (autocannon, 64 connections); then, per round,
 * hookd starts on a copy of that data twice, once with WORKER_PREFETCH=0 (the baseline: claims only
 * for free slots) and once with the default prefetch (or --prefetch N), in alternating order, and runs the backlog
 * dry. Prints executions/s and CPU per execution (all threads, from /proc) of each, and the median
 * of the rounds' ratios. No HTTP load while draining: this measures the queue and the runner alone.
 */
const jobs = Number(arg('jobs', '30000'));
const rounds = Math.max(1, Number(arg('rounds', '3')));
/** WORKER_PREFETCH of the measured side; empty: hookd's default. */
const prefetch = arg('prefetch', '');
const BODY = JSON.stringify({ event: 'order.created', id: 'ord_0123456789', total: 129.95, currency: 'EUR', customer: { id: 'cus_42', tier: 'gold' }, x: 'abc' });

interface Drain {
  perSecond: number;
  cpuUs: number;
}

/** Start hookd on a copy of `source` and wait until its queue is empty. */
async function drain(source: string, env: Record<string, string>): Promise<Drain> {
  const dir = mkdtempSync(path.join(tmpdir(), 'hookd-drain-run-'));
  cpSync(source, dir, { recursive: true });
  const h = await startHookd({ ...env, DATA_DIR: dir });
  try {
    // Measured from the first look at the queue: whatever ran during start-up is not counted.
    const first = await api(h.url, 'GET', '/api/queue');
    const from = performance.now();
    const cpuFrom = cpuSeconds(h.pid);
    const left0 = first.ready + first.inFlight;
    for (;;) {
      const q = await api(h.url, 'GET', '/api/queue');
      if (q.dead > 0) throw new Error(`${q.dead} jobs dead-lettered while draining`);
      if (q.ready + q.inFlight === 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const seconds = (performance.now() - from) / 1000;
    const cpu = (cpuSeconds(h.pid) ?? NaN) - (cpuFrom ?? NaN);
    return { perSecond: left0 / seconds, cpuUs: (cpu * 1e6) / left0 };
  } finally {
    await h.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((x, y) => x - y);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

async function main(): Promise<void> {
  console.log(`bench:drain — a backlog of ${fmt(jobs)} jobs (one-step transform flow), drained ${rounds} times each way\n`);
  const source = mkdtempSync(path.join(tmpdir(), 'hookd-drain-'));
  try {
    const filler = await startHookd({ DATA_DIR: source, WORKER_CONCURRENCY: '0' });
    try {
      await api(filler.url, 'PUT', '/api/flows/bench', { steps: [{ id: 'shape', type: 'transform', expression: '{ "id": body.id, "total": body.total }' }] });
      const r = await autocannon({ url: `${filler.url}/hook/bench`, connections: 64, seconds: 60, amount: jobs, body: BODY });
      if (r.non2xx + r.errors > 0) throw new Error(`filling the backlog: ${r.non2xx} non-2xx, ${r.errors} errors`);
    } finally {
      await filler.stop();
    }
    const row = (name: string, d: Drain) => `${name.padEnd(34)} ${fmt(d.perSecond).padStart(7)} executions/s   CPU ${fmt(d.cpuUs).padStart(4)} µs per execution`;
    const ratios: number[] = [];
    const cpuRatios: number[] = [];
    for (let i = 0; i < rounds; i++) {
      // A-B, then B-A: drift of the machine weighs on both alike.
      const order = i % 2 === 0 ? (['base', 'prefetch'] as const) : (['prefetch', 'base'] as const);
      const got: Partial<Record<'base' | 'prefetch', Drain>> = {};
      for (const which of order) got[which] = await drain(source, which === 'base' ? { WORKER_PREFETCH: '0' } : prefetch ? { WORKER_PREFETCH: prefetch } : {});
      const base = got.base!;
      const pre = got.prefetch!;
      console.log(`round ${i + 1}`);
      console.log(row('claims for free slots only (0)', base));
      console.log(row(`prefetch (${prefetch || 'default'})`, pre));
      ratios.push(pre.perSecond / base.perSecond);
      cpuRatios.push(pre.cpuUs / base.cpuUs);
    }
    console.log(`\nratio prefetch ÷ baseline: ${fmt(median(ratios), 2)} executions/s, ${fmt(median(cpuRatios), 2)} CPU per execution (medians of ${rounds} rounds)`);
  } finally {
    rmSync(source, { recursive: true, force: true });
  }
}

await main();
