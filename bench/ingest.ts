import { createHmac } from 'node:crypto';
import path from 'node:path';
import { benchRabbitMq } from './ingest-rabbitmq.js';
import { api, arg, load, LOAD_GENERATOR, completedPerSecond, fmt, largestSizeDuring, type LoadResult, median, percentile, queueEmpty, ROOT, row, startHookd, startProcess } from './lib.js';

/**
 * npm run bench:ingest [-- --seconds 10 --connections 64 --rounds 1] [--auth hmac]
 *
 * Default: in one run, from a separate load process (autocannon, or wrk with `--load wrk`): (a) a bare node:http server
 * answering 200, and the same route behind fastify 5 (the framework's price), (b) a hand-made group
 * commit (node:http + a SQLite writer thread, FULL; no hookd features: the price of durability
 * alone), and the same behind fastify 5 (the ceiling of the prescribed stack), (c) hookd (SQLite, synchronous=FULL) with a started
 * flow, (d) the same hookd with its workers off (the ingest path alone). Prints req/s, p50/p99, the
 * server's CPU per request, the ratios, executions completed per second during the load, and
 * request → first step started (p50), unloaded and under load, and the largest hookd's WAL grew
 * during the load (--seconds 60 shows it stays bounded). --rounds N repeats (a)–(d) N times
 * in turn and prints the median of each round's ratios: on a noisy machine, one round can mislead.
 *
 * --message-cache 8mb: MESSAGE_CACHE of hookd with the flow; the run prints how many of its request
 * reads the cache served (a backlog larger than the cache reads the rest from SQLite).
 *
 * --auth hmac: hookd with and without an HMAC-SHA256 credential on the flow, same run, 1 KB body
 * (issue 4's figure: within 10 %).
 *
 * --backend rabbitmq: distributed mode (PostgreSQL + RabbitMQ) vs. fastify publishing to RabbitMQ
 * without confirms (bench/ingest-rabbitmq.ts).
 */
const seconds = Number(arg('seconds', '10'));
const rounds = Math.max(1, Number(arg('rounds', '1')));
const connections = Number(arg('connections', '64'));
const auth = arg('auth', 'none');
const backend = arg('backend', 'sqlite');
/** MESSAGE_CACHE of the hookd with the flow ('' = its default): smaller, a 40 s run outgrows it. */
const messageCache = arg('message-cache', '');
// 130 bytes of JSON, a typical small webhook.
const BODY = JSON.stringify({ event: 'order.created', id: 'ord_0123456789', total: 129.95, currency: 'EUR', customer: { id: 'cus_42', tier: 'gold' }, x: 'abc' });

/** Queue delays (request received → first step started) of a flow's executions, once `expected` completed. */
async function queueDelays(base: string, flowId: string, expected: number): Promise<number[]> {
  const deadline = Date.now() + 180_000;
  for (;;) {
    const delays: number[] = [];
    let before: string | undefined;
    let done = 0;
    for (;;) {
      const page = await api(base, 'GET', `/api/executions?flowId=${flowId}&limit=1000${before ? `&before=${before}` : ''}`);
      for (const e of page.items) {
        if (e.status === 'completed') done++;
        if (typeof e.queueDelayMs === 'number') delays.push(e.queueDelayMs);
      }
      if (!page.next) break;
      before = page.next;
    }
    if (done >= expected || Date.now() > deadline) return delays;
    await new Promise((r) => setTimeout(r, 500));
  }
}

const mean = (a: LoadResult, b: LoadResult): LoadResult => ({
  rps: (a.rps + b.rps) / 2,
  p50: (a.p50 + b.p50) / 2,
  p99: (a.p99 + b.p99) / 2,
  non2xx: a.non2xx + b.non2xx,
  errors: a.errors + b.errors,
  total: a.total + b.total,
});

interface Round {
  node: LoadResult;
  /** The same bare server behind a fastify 5 route: the framework's price. */
  fastify: LoadResult;
  ref: LoadResult;
  /** The reference's group commit behind a fastify 5 route: the prescribed stack's ceiling. */
  refFastify: LoadResult;
  hookd: LoadResult;
  ingestOnly: LoadResult;
  executed: number;
  loaded: number[];
  /** The largest the WAL grew to during the measured load (flow running). */
  walBytes: number;
  /** hookd_message_cache_* once the load's executions completed. */
  cache: CacheReads;
}

interface CacheReads {
  hit: number;
  miss: number;
  refused: number;
}

async function cacheReads(base: string): Promise<CacheReads> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const value = (re: RegExp): number => Number(re.exec(text)?.[1] ?? NaN);
  return {
    hit: value(/^hookd_message_cache_reads_total\{result="hit"\} (\d+)$/m),
    miss: value(/^hookd_message_cache_reads_total\{result="miss"\} (\d+)$/m),
    refused: value(/^hookd_message_cache_refused_total (\d+)$/m),
  };
}

async function benchIngest(): Promise<void> {
  console.log(`bench:ingest — ${connections} connections, ${seconds} s, ${Buffer.byteLength(BODY)}-byte JSON POST, load from a separate process (${LOAD_GENERATOR})${rounds > 1 ? `, ${rounds} rounds` : ''}\n`);

  const measure = async (script: string, env: Record<string, string> = {}): Promise<LoadResult> => {
    const server = await startProcess(process.execPath, [path.join(ROOT, script)], env, /LISTENING (\d+)/);
    try {
      const url = `http://127.0.0.1:${server.match[1]}/hook/bench`;
      await load({ url, connections, seconds: 2, body: BODY }); // warm-up
      return await load({ url, connections, seconds, body: BODY, ...(server.proc.pid ? { pid: server.proc.pid } : {}) });
    } finally {
      await server.stop();
    }
  };

  /** One round: every server in turn, so drift of the machine weighs on all of them alike. */
  const round = async (probeIdle: boolean): Promise<Round & { idle?: number[] }> => {
    const node = await measure('dist/bench/baseline-server.js');
    const fastify = await measure('dist/bench/baseline-server.js', { BASELINE_HTTP: 'fastify' });
    const ref = await measure('dist/bench/reference-group-commit.js');
    const refFastify = await measure('dist/bench/reference-group-commit.js', { REFERENCE_HTTP: 'fastify' });

    const hookd = await startHookd(messageCache ? { MESSAGE_CACHE: messageCache } : {});
    let b: LoadResult;
    let cache: CacheReads;
    let loaded: number[];
    let executed: number;
    let walBytes: number;
    let idle: number[] | undefined;
    try {
      await api(hookd.url, 'PUT', '/api/flows/bench', { steps: [{ id: 'shape', type: 'transform', expression: '{ "id": body.id, "total": body.total }' }] });
      await api(hookd.url, 'PUT', '/api/flows/warmup', { steps: [{ id: 'shape', type: 'transform', expression: 'body' }] });
      const w = await load({ url: `${hookd.url}/hook/warmup`, connections, seconds: 2, body: BODY });
      await queueDelays(hookd.url, 'warmup', w.total - w.non2xx); // start the measured run with an empty queue
      const from = Date.now();
      const measured = await largestSizeDuring(
        path.join(hookd.dataDir, 'hookd.db-wal'),
        load({ url: `${hookd.url}/hook/bench`, connections, seconds, body: BODY, ...(hookd.pid ? { pid: hookd.pid } : {}) }),
      );
      b = measured.result;
      walBytes = measured.largest;
      const to = Date.now();
      // The cache's counters once every execution of the load has read its request.
      await queueEmpty(hookd.url);
      cache = await cacheReads(hookd.url);
      loaded = await queueDelays(hookd.url, 'bench', b.total - b.non2xx);
      executed = await completedPerSecond(hookd.url, 'bench', from, to);
      if (probeIdle) {
        // Unloaded: one request at a time, the latency a lone webhook sees.
        await api(hookd.url, 'PUT', '/api/flows/probe', { steps: [{ id: 'shape', type: 'transform', expression: 'body' }] });
        for (let i = 0; i < 300; i++) {
          await fetch(`${hookd.url}/hook/probe`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: BODY });
          await new Promise((r) => setTimeout(r, 2));
        }
        idle = await queueDelays(hookd.url, 'probe', 300);
      }
    } finally {
      await hookd.stop();
    }

    // Ingest alone (workers off): what a burst meets while the queue absorbs it.
    const ingestOnly = await startHookd({ WORKER_CONCURRENCY: '0' });
    let c: LoadResult;
    try {
      await api(ingestOnly.url, 'PUT', '/api/flows/bench', { steps: [{ id: 'shape', type: 'transform', expression: '{ "id": body.id, "total": body.total }' }] });
      await load({ url: `${ingestOnly.url}/hook/bench`, connections, seconds: 2, body: BODY }); // warm-up
      c = await load({ url: `${ingestOnly.url}/hook/bench`, connections, seconds, body: BODY, ...(ingestOnly.pid ? { pid: ingestOnly.pid } : {}) });
    } finally {
      await ingestOnly.stop();
    }
    return { node, fastify, ref, refFastify, hookd: b, ingestOnly: c, executed, loaded, walBytes, cache, ...(idle ? { idle } : {}) };
  };

  const results: Round[] = [];
  let idle: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const one = await round(r === 0);
    if (one.idle) idle = one.idle;
    results.push(one);
    const width = 36;
    if (rounds > 1) console.log(`round ${r + 1}`);
    console.log(row('node:http (baseline)', one.node, width));
    console.log(row('fastify 5, same bare route', one.fastify, width));
    console.log(row('hand-made group commit (reference)', one.ref, width));
    console.log(row('the reference behind fastify 5', one.refFastify, width));
    console.log(row('hookd (sqlite, FULL)', one.hookd, width));
    console.log(row('hookd, ingest only (no workers)', one.ingestOnly, width));
    console.log(`executions completed during the load: ${fmt(one.executed)}/s (the flow runs in the same process; the queue absorbs the rest)`);
    console.log(`hookd's WAL during the load: at most ${fmt(one.walBytes / 1024 / 1024, 1)} MiB (restarted past 16 MiB; try --seconds 60)`);
    const reads = one.cache.hit + one.cache.miss;
    console.log(
      `message cache${messageCache ? ` (MESSAGE_CACHE=${messageCache})` : ''}: ${fmt((100 * one.cache.hit) / reads, 0)} % of ${fmt(reads)} request reads served from memory` +
        `${one.cache.refused > 0 ? `, ${fmt(one.cache.refused)} messages not kept (full)` : ''}\n`,
    );
  }

  // With several rounds: the median of each round's ratio (each ratio's two sides ran minutes apart at most).
  const med = (f: (r: Round) => number): number => median(results.map(f));
  const label = rounds > 1 ? ` (median of ${rounds} rounds)` : '';
  console.log(`ratio hookd ÷ node:http: ${fmt(med((r) => r.hookd.rps / r.node.rps), 2)}${label}   (target ≥ 0.50)`);
  console.log(`ratio hookd ingest only ÷ node:http: ${fmt(med((r) => r.ingestOnly.rps / r.node.rps), 2)}`);
  console.log(`ratio reference ÷ node:http: ${fmt(med((r) => r.ref.rps / r.node.rps), 2)}   (the issue's hand-made group commit: 0.47)`);
  console.log(`ratio fastify ÷ node:http: ${fmt(med((r) => r.fastify.rps / r.node.rps), 2)}   (the framework the issues prescribe, alone)`);
  console.log(`ratio reference behind fastify ÷ node:http: ${fmt(med((r) => r.refFastify.rps / r.node.rps), 2)}   (the ceiling of fastify + durable group commit, before any hookd feature)`);
  console.log(`ratio hookd ÷ reference: ${fmt(med((r) => r.hookd.rps / r.ref.rps), 2)}   (what hookd's features cost on top of durability)`);
  if (results.every((r) => r.hookd.cpuUs !== undefined && r.node.cpuUs !== undefined)) {
    console.log(`CPU per request, hookd ÷ node:http: ${fmt(med((r) => r.hookd.cpuUs! / r.node.cpuUs!), 1)}; ingest only ÷ node:http: ${fmt(med((r) => r.ingestOnly.cpuUs! / r.node.cpuUs!), 1)}; reference ÷ node:http: ${fmt(med((r) => r.ref.cpuUs! / r.node.cpuUs!), 1)}; reference behind fastify ÷ node:http: ${fmt(med((r) => r.refFastify.cpuUs! / r.node.cpuUs!), 1)}`);
  }
  console.log(`request → first step started, p50: ${fmt(percentile(idle, 50), 2)} ms unloaded (p99 ${fmt(percentile(idle, 99), 2)} ms, n=${idle.length}; target ≤ 2 ms)`);
  const loaded = results.flatMap((r) => r.loaded);
  console.log(`                                   ${fmt(percentile(loaded, 50), 0)} ms under the load above (n=${loaded.length})`);
}

async function benchAuth(): Promise<void> {
  const body = JSON.stringify({ event: 'order.created', pad: 'x'.repeat(1024 - 34) });
  const secret = 'bench-secret-0123456789abcdef';
  const signature = `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
  console.log(`bench:ingest --auth hmac — ${connections} connections, ${seconds} s per side, ${Buffer.byteLength(body)}-byte JSON POST\n`);
  // Workers off: this compares the ingest path with and without verification; executions would add
  // the same work to both sides, but their growing backlog makes an A/B comparison drift.
  const h = await startHookd({ WORKER_CONCURRENCY: '0' });
  const steps = [{ id: 'shape', type: 'transform', expression: '{ "event": body.event }' }];
  await api(h.url, 'PUT', '/api/flows/plain', { steps });
  await api(h.url, 'PUT', '/api/flows/signed', {
    steps,
    trigger: { type: 'webhook', auth: { type: 'hmac', algorithm: 'sha256', encoding: 'hex', header: 'x-signature', prefix: 'sha256=', secrets: [secret] } },
  });
  await load({ url: `${h.url}/hook/plain`, connections, seconds: 2, body }); // warm-up
  const signedHeaders = { 'x-signature': signature };
  // A-B-B-A, so drift (queue backlog, disk) weighs on both sides alike.
  const plain1 = await load({ url: `${h.url}/hook/plain`, connections, seconds: seconds / 2, body });
  const signed1 = await load({ url: `${h.url}/hook/signed`, connections, seconds: seconds / 2, body, headers: signedHeaders });
  const signed2 = await load({ url: `${h.url}/hook/signed`, connections, seconds: seconds / 2, body, headers: signedHeaders });
  const plain2 = await load({ url: `${h.url}/hook/plain`, connections, seconds: seconds / 2, body });
  await h.stop();
  const plain = mean(plain1, plain2);
  const signed = mean(signed1, signed2);
  if (signed.non2xx > 0) console.log(`WARNING: ${signed.non2xx} signed requests were refused`);
  console.log(row('hookd, no auth', plain));
  console.log(row('hookd, hmac sha256', signed));
  console.log(`\nratio hmac ÷ no auth: ${fmt(signed.rps / plain.rps, 2)}   (target ≥ 0.90)`);
}

(backend === 'rabbitmq'
  ? benchRabbitMq({ seconds, connections, body: BODY, rounds })
  : backend !== 'sqlite'
    ? Promise.reject(new Error(`--backend ${backend}: sqlite (default) or rabbitmq`))
    : auth === 'hmac'
      ? benchAuth()
      : auth === 'none'
        ? benchIngest()
        : Promise.reject(new Error(`--auth ${auth}: only hmac is benchmarked`))
).catch(
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
