import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { shareOf } from '../src/queue/fair-claim.js';
import { api, arg, load, cpuSeconds, cpuSecondsOf, DATABASE_URL, fmt, median, pgExec, queueEmpty, startHookd } from './lib.js';

/**
 * npm run bench:drain [-- --jobs 30000 --rounds 3 --prefetch N --flows N --backend sqlite|postgres]
 *
 * How fast a backlog drains: what a queue meets after an outage or a burst. Per drain, a hookd with
 * its workers off receives `--jobs` webhooks for a one-step flow (autocannon, 64 connections); then
 * hookd starts again on that data with its workers on and runs the backlog dry, once with
 * WORKER_PREFETCH=0 (the baseline: claims only for free slots) and once with the default prefetch
 * (or --prefetch N), A-B then B-A. Prints executions/s and CPU per execution (hookd's threads, and
 * PostgreSQL's processes with --backend postgres), and the medians of the rounds' ratios. No HTTP
 * load while draining: this measures the queue and the runner alone.
 *
 * --flows N: the backlog spread evenly over N one-step flows, their requests arriving interleaved
 * (64 at once, flow after flow in turn), so that claims take turns among N flows with due jobs
 * (queue/fair-claim.ts). --clustered: filled flow by flow instead (all of one flow's jobs, then
 * the next's): the worst case for taking turns, whose claims and acks then touch pages all over
 * the jobs table instead of a few at its start.
 *
 * --backend postgres: DATABASE_URL (default the local `test` database), a schema per drain,
 * dropped afterwards; the PostgreSQL queue (no RabbitMQ).
 */
const jobs = Number(arg('jobs', '30000'));
const rounds = Math.max(1, Number(arg('rounds', '3')));
/** WORKER_PREFETCH of the measured side; empty: hookd's default. */
const prefetch = arg('prefetch', '');
const backend = arg('backend', 'sqlite');
const flows = Math.max(1, Number(arg('flows', '1')));
const clustered = process.argv.includes('--clustered');

/** `jobs` POSTs, 64 at once, the i-th to flow i mod flows. */
async function fillInterleaved(url: string, ids: readonly string[]): Promise<void> {
  let next = 0;
  let failed = 0;
  const lane = async (): Promise<void> => {
    for (let i = next++; i < jobs; i = next++) {
      const res = await fetch(`${url}/hook/${ids[i % ids.length]}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: BODY });
      await res.arrayBuffer();
      if (res.status !== 200) failed++;
    }
  };
  await Promise.all(Array.from({ length: 64 }, lane));
  if (failed > 0) throw new Error(`filling the backlog: ${failed} non-200`);
}
const BODY = JSON.stringify({ event: 'order.created', id: 'ord_0123456789', total: 129.95, currency: 'EUR', customer: { id: 'cus_42', tier: 'gold' }, x: 'abc' });

interface Drain {
  perSecond: number;
  cpuUs: number;
  /** PostgreSQL's CPU per execution (--backend postgres). */
  dbCpuUs?: number;
}

/** Where one drain keeps its data: a DATA_DIR, and a PostgreSQL schema with --backend postgres. */
async function storage(): Promise<{ env: Record<string, string>; remove(): Promise<void> }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'hookd-drain-'));
  if (backend !== 'postgres') return { env: { DATA_DIR: dir }, remove: async () => rmSync(dir, { recursive: true, force: true }) };
  const schema = `hookd_bench_drain_${randomBytes(4).toString('hex')}`;
  await pgExec(`CREATE SCHEMA "${schema}"`);
  return {
    env: { DATA_DIR: dir, DATABASE_URL, DATABASE_SCHEMA: schema, HOOKD_SECRET_KEY: randomBytes(32).toString('hex') },
    remove: async () => {
      await pgExec(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Fill a backlog with the workers off, then start hookd with `env` and wait until its queue is empty. */
async function drain(env: Record<string, string>): Promise<Drain> {
  const where = await storage();
  try {
    const filler = await startHookd({ ...where.env, WORKER_CONCURRENCY: '0' });
    try {
      const ids = flows === 1 ? ['bench'] : Array.from({ length: flows }, (_, f) => `bench-${f}`);
      for (const id of ids) {
        await api(filler.url, 'PUT', `/api/flows/${id}`, { steps: [{ id: 'shape', type: 'transform', expression: '{ "id": body.id, "total": body.total }' }] });
      }
      if (flows > 1 && !clustered) await fillInterleaved(filler.url, ids);
      else {
        for (const [f, id] of ids.entries()) {
          const amount = shareOf(jobs, flows, f);
          const r = await load({ url: `${filler.url}/hook/${id}`, connections: Math.min(64, amount), seconds: 60, amount, body: BODY });
          if (r.non2xx + r.errors > 0) throw new Error(`filling the backlog: ${r.non2xx} non-2xx, ${r.errors} errors`);
        }
      }
    } finally {
      await filler.stop();
    }
    const h = await startHookd({ ...where.env, ...env });
    try {
      // Measured from the first look at the queue: whatever ran during start-up is not counted.
      const first = await api(h.url, 'GET', '/api/queue');
      const from = performance.now();
      const cpuFrom = cpuSeconds(h.pid) ?? NaN;
      const dbFrom = backend === 'postgres' ? (cpuSecondsOf(['postgres']) ?? NaN) : NaN;
      const left = first.ready + first.inFlight;
      const last = await queueEmpty(h.url, 50);
      if (last.dead > 0) throw new Error(`${last.dead} jobs dead-lettered while draining`);
      const seconds = (performance.now() - from) / 1000;
      const d: Drain = { perSecond: left / seconds, cpuUs: (((cpuSeconds(h.pid) ?? NaN) - cpuFrom) * 1e6) / left };
      if (backend === 'postgres') d.dbCpuUs = (((cpuSecondsOf(['postgres']) ?? NaN) - dbFrom) * 1e6) / left;
      return d;
    } finally {
      await h.stop();
    }
  } finally {
    await where.remove();
  }
}

async function main(): Promise<void> {
  if (backend !== 'sqlite' && backend !== 'postgres') throw new Error(`--backend ${backend}: sqlite (default) or postgres`);
  console.log(`bench:drain — ${backend}, a backlog of ${fmt(jobs)} jobs (${flows === 1 ? 'one-step transform flow' : `${fmt(flows)} one-step transform flows, filled ${clustered ? 'flow by flow' : 'interleaved'}`}), drained ${rounds} times each way\n`);
  const row = (name: string, d: Drain) =>
    `${name.padEnd(34)} ${fmt(d.perSecond).padStart(7)} executions/s   CPU ${fmt(d.cpuUs).padStart(4)} µs per execution` +
    (d.dbCpuUs === undefined ? '' : ` (+ PostgreSQL ${fmt(d.dbCpuUs)})`);
  const ratios: number[] = [];
  const cpuRatios: number[] = [];
  for (let i = 0; i < rounds; i++) {
    // A-B, then B-A: drift of the machine weighs on both alike.
    const order = i % 2 === 0 ? (['base', 'prefetch'] as const) : (['prefetch', 'base'] as const);
    const got: Partial<Record<'base' | 'prefetch', Drain>> = {};
    for (const which of order) got[which] = await drain(which === 'base' ? { WORKER_PREFETCH: '0' } : prefetch ? { WORKER_PREFETCH: prefetch } : {});
    const base = got.base!;
    const pre = got.prefetch!;
    console.log(`round ${i + 1}`);
    console.log(row('claims for free slots only (0)', base));
    console.log(row(`prefetch (${prefetch || 'default'})`, pre));
    ratios.push(pre.perSecond / base.perSecond);
    cpuRatios.push((pre.cpuUs + (pre.dbCpuUs ?? 0)) / (base.cpuUs + (base.dbCpuUs ?? 0)));
  }
  console.log(`\nratio prefetch ÷ baseline: ${fmt(median(ratios), 2)} executions/s, ${fmt(median(cpuRatios), 2)} CPU per execution (medians of ${rounds} rounds)`);
}

await main();
