import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { api, load, LOAD_GENERATOR, completedPerSecond, DATABASE_URL, deleteRabbitMq, distributedStorage, fmt, type LoadResult, median, RABBITMQ_URI, ROOT, row as rowOf, startHookd, startProcess } from './lib.js';

const row = (name: string, r: LoadResult) => rowOf(name, r, 34);

/**
 * npm run bench:ingest -- --backend rabbitmq [--seconds 10 --connections 64 --rounds 1]
 *
 * Distributed mode against its baseline, in one run, load from a separate process (autocannon, or wrk with `--load wrk`):
 * (a) a bare fastify server publishing each request to RabbitMQ without confirms (fire-and-forget,
 *     as the Open Integration Hub's webhook component does: a 200 can still be lost);
 * (b) hookd with DATABASE_URL + RABBITMQ_URI: request + outbox row committed in PostgreSQL, job
 *     published with confirms, 200 only after the broker's confirm; workers running the flow;
 * (a') the same server answering after the broker's confirm (the broker as the only record), and
 *     made durable the simplest way with the request record issue 6 asks for: the requests of a turn committed in one
 *     PostgreSQL statement, then published with confirms (the ceiling of a durable design);
 * (c) the same hookd with its workers off (WORKER_CONCURRENCY=0): the ingest path alone;
 * (d), (e) as (b) and (c) with RABBITMQ_ACCEPT=broker: the job carries the request, 200 after the
 *     broker's confirm alone, the request written to PostgreSQL by the worker (a fresh schema and
 *     prefix, so that no backlog of (b) and (c) is run meanwhile).
 * Prints req/s, p50/p99 and the ratios hookd ÷ baseline (target ≥ 0.80 for b), and hookd's mean time
 * from receipt to durable (its hookd_ingress_commit_seconds histogram). --rounds N repeats (a)–(c)
 * N times in turn and prints the medians of the rounds' ratios.
 *
 * Uses DATABASE_URL (default the local `test` database) and RABBITMQ_URI (default local guest);
 * each run works in its own PostgreSQL schema and RabbitMQ prefix and removes them afterwards.
 */

export interface RabbitMqBenchOptions {
  seconds: number;
  connections: number;
  /** The request body (JSON). */
  body: string;
  /** Rounds of all three servers in turn; the ratios printed are the medians of the rounds'. */
  rounds?: number;
}

/** RabbitMQ's and PostgreSQL's processes: their CPU per request is reported with each run. */
const SERVICES = ['beam.smp', 'postgres'] as const;

/** Executions of a flow in a given status (paging through the API). */
async function countExecutions(base: string, flowId: string, status: string): Promise<number> {
  let n = 0;
  let before: string | undefined;
  for (;;) {
    const page = await api(base, 'GET', `/api/executions?flowId=${flowId}&limit=1000${before ? `&before=${before}` : ''}`);
    for (const e of page.items) if (e.status === status) n++;
    if (!page.next) return n;
    before = page.next;
  }
}

/** Wait until the job backlog is gone (so a measured run does not pay for an earlier one). */
async function drained(base: string, flowId: string, expected: number, timeoutMs = 180_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await countExecutions(base, flowId, 'completed')) < expected) {
    if (Date.now() > deadline) throw new Error(`${flowId}: executions not completed within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/**
 * Sums and counts (ms) of hookd's hookd_ingress_commit_seconds (received → durable: PostgreSQL commit,
 * then the broker's confirm) and hookd_broker_confirm_seconds (publish → confirm).
 */
async function histograms(base: string): Promise<{ durable: { sum: number; count: number }; confirm: { sum: number; count: number } }> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const read = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  return {
    durable: { sum: read('hookd_ingress_commit_seconds_sum') * 1000, count: read('hookd_ingress_commit_seconds_count') },
    confirm: { sum: read('hookd_broker_confirm_seconds_sum') * 1000, count: read('hookd_broker_confirm_seconds_count') },
  };
}

/** Load a hookd URL and read, from its own histograms, the mean times from receipt to durable and from publish to confirm. */
async function loadHookd(url: string, flowUrl: string, o: RabbitMqBenchOptions, pid: number | undefined): Promise<Run> {
  const before = await histograms(url);
  const r = await load({ url: flowUrl, connections: o.connections, seconds: o.seconds, body: o.body, alsoCpuOf: SERVICES, ...(pid ? { pid } : {}) });
  const after = await histograms(url);
  const mean = (k: 'durable' | 'confirm') => (after[k].sum - before[k].sum) / (after[k].count - before[k].count);
  return { ...r, durableMs: mean('durable'), confirmMs: mean('confirm') };
}

interface Run extends LoadResult {
  /** Mean received → durable (commit + confirm), ms. */
  durableMs?: number;
  /** Mean publish → broker confirm, ms (the part of durableMs after the commit). */
  confirmMs?: number;
}

interface Round {
  base: LoadResult;
  /** The baseline with publisher confirms, no database (the broker as the only record). */
  confirmBase: LoadResult;
  /** The baseline made durable the simplest way (PostgreSQL commit, then a confirmed publish). */
  durableBase: LoadResult;
  hookd: Run;
  ingestOnly: Run;
  executed: number;
  /** RABBITMQ_ACCEPT=broker. */
  broker: Run;
  brokerIngestOnly: Run;
  brokerExecuted: number;
}

/** hookd on fresh storage, loaded with its workers running, then with them off (WORKER_CONCURRENCY=0). */
async function hookdRuns(o: RabbitMqBenchOptions, extraEnv: Record<string, string>): Promise<{ withFlow: Run; ingestOnly: Run; executed: number }> {
  const { connections, body } = o;
  const storage = await distributedStorage('ingest');
  const env = { ...storage.env, ...extraEnv };
  let withFlow: Run;
  let ingestOnly: Run;
  let executed = 0;
  try {
    const hookd = await startHookd(env);
    try {
      await api(hookd.url, 'PUT', '/api/flows/bench', { steps: [{ id: 'shape', type: 'transform', expression: '{ "id": body.id, "total": body.total }' }] });
      await api(hookd.url, 'PUT', '/api/flows/warmup', { steps: [{ id: 'shape', type: 'transform', expression: 'body' }] });
      const w = await load({ url: `${hookd.url}/hook/warmup`, connections, seconds: 2, body });
      await drained(hookd.url, 'warmup', w.total - w.non2xx);
      const from = Date.now();
      withFlow = await loadHookd(hookd.url, `${hookd.url}/hook/bench`, o, hookd.pid);
      executed = await completedPerSecond(hookd.url, 'bench', from, Date.now());
    } finally {
      await hookd.stop();
    }
    // Ingest alone: the same path without flow executions competing for the CPU.
    const only = await startHookd({ ...env, WORKER_CONCURRENCY: '0' });
    try {
      await load({ url: `${only.url}/hook/warmup`, connections, seconds: 2, body });
      ingestOnly = await loadHookd(only.url, `${only.url}/hook/bench`, o, only.pid);
    } finally {
      await only.stop();
    }
  } finally {
    await storage.remove();
  }
  return { withFlow, ingestOnly, executed };
}

async function round(o: RabbitMqBenchOptions): Promise<Round> {
  const { seconds, connections, body } = o;
  const basePrefix = `hookd_bench_base_${randomBytes(4).toString('hex')}`;

  // (a) The baseline, and the same made durable.
  const baseline = async (env: Record<string, string>): Promise<LoadResult> => {
    const base = await startProcess(process.execPath, [path.join(ROOT, 'dist/bench/baseline-rabbitmq-server.js')], { RABBITMQ_URI, DATABASE_URL, BASELINE_PREFIX: basePrefix, ...env }, /LISTENING (\d+)/);
    try {
      const baseUrl = `http://127.0.0.1:${base.match[1]}/hook/bench`;
      await load({ url: baseUrl, connections, seconds: 2, body }); // warm-up
      return await load({ url: baseUrl, connections, seconds, body, alsoCpuOf: SERVICES, ...(base.proc.pid ? { pid: base.proc.pid } : {}) });
    } finally {
      await base.stop();
      await deleteRabbitMq(basePrefix, [`${basePrefix}.work`]);
    }
  };
  const a = await baseline({});
  const confirmBase = await baseline({ BASELINE_DURABLE: 'confirm' });
  const durableBase = await baseline({ BASELINE_DURABLE: 'pg' });

  // (b) and (c): hookd, distributed mode; (d) and (e): the same with RABBITMQ_ACCEPT=broker.
  const outbox = await hookdRuns(o, {});
  const broker = await hookdRuns(o, { RABBITMQ_ACCEPT: 'broker' });
  return {
    base: a,
    confirmBase,
    durableBase,
    hookd: outbox.withFlow,
    ingestOnly: outbox.ingestOnly,
    executed: outbox.executed,
    broker: broker.withFlow,
    brokerIngestOnly: broker.ingestOnly,
    brokerExecuted: broker.executed,
  };
}

export async function benchRabbitMq(o: RabbitMqBenchOptions): Promise<void> {
  const rounds = Math.max(1, o.rounds ?? 1);
  console.log(
    `bench:ingest --backend rabbitmq — ${o.connections} connections, ${o.seconds} s, ${Buffer.byteLength(o.body)}-byte JSON POST, load from a separate process (${LOAD_GENERATOR})${rounds > 1 ? `, ${rounds} rounds` : ''}\n` +
      `PostgreSQL ${new URL(DATABASE_URL).host}, RabbitMQ ${new URL(RABBITMQ_URI).host}\n`,
  );
  const results: Round[] = [];
  for (let r = 0; r < rounds; r++) {
    const one = await round(o);
    results.push(one);
    if (rounds > 1) console.log(`round ${r + 1}`);
    console.log(row('fastify → RabbitMQ, no confirms', one.base));
    console.log(row('same, answer after confirm', one.confirmBase));
    console.log(row('same + PG commit + confirm', one.durableBase));
    const waits = (r: Run) => `   received → durable ${fmt(r.durableMs ?? NaN, 1)} ms (broker confirm ${fmt(r.confirmMs ?? NaN, 1)} of it)`;
    console.log(`${row('hookd (postgres + rabbitmq)', one.hookd)}${waits(one.hookd)}`);
    console.log(`${row('hookd, ingest only (no workers)', one.ingestOnly)}${waits(one.ingestOnly)}`);
    console.log(`executions completed during the load: ${fmt(one.executed)}/s (workers in the same process; the queue absorbs the rest)`);
    console.log(`${row('hookd, RABBITMQ_ACCEPT=broker', one.broker)}${waits(one.broker)}`);
    console.log(`${row('same, ingest only (no workers)', one.brokerIngestOnly)}${waits(one.brokerIngestOnly)}`);
    console.log(`executions completed during the load: ${fmt(one.brokerExecuted)}/s\n`);
  }
  const label = rounds > 1 ? ` (median of ${rounds} rounds)` : '';
  console.log(`ratio hookd ÷ baseline: ${fmt(median(results.map((r) => r.hookd.rps / r.base.rps)), 2)}${label}   (RABBITMQ_ACCEPT=outbox, the default; its workers on the same cores)`);
  console.log(`ratio baseline with confirms ÷ baseline: ${fmt(median(results.map((r) => r.confirmBase.rps / r.base.rps)), 2)}${label}   (the broker as the only record, no database at the ingress)`);
  console.log(`ratio baseline made durable ÷ baseline: ${fmt(median(results.map((r) => r.durableBase.rps / r.base.rps)), 2)}${label}   (PostgreSQL commit + confirmed publish, no hookd feature: the ceiling of a durable design)`);
  console.log(`ratio hookd ingest only ÷ baseline: ${fmt(median(results.map((r) => r.ingestOnly.rps / r.base.rps)), 2)}${label}`);
  console.log(`ratio hookd RABBITMQ_ACCEPT=broker, ingest only ÷ baseline: ${fmt(median(results.map((r) => r.brokerIngestOnly.rps / r.base.rps)), 2)}${label}   (target ≥ 0.80: the baseline's work, webhooks in and confirmed)`);
  console.log(`ratio hookd RABBITMQ_ACCEPT=broker ÷ baseline: ${fmt(median(results.map((r) => r.broker.rps / r.base.rps)), 2)}${label}   (its workers running the flow on the same cores, which the baseline has none of)`);
  const durable = median(results.map((r) => r.ingestOnly.durableMs ?? NaN));
  const confirm = median(results.map((r) => r.ingestOnly.confirmMs ?? NaN));
  // Little's law: with every connection waiting for its answer, requests/s ≤ connections ÷ latency.
  console.log(
    `ingest only: received → durable ${fmt(durable, 1)} ms (median; the broker's confirm ${fmt(confirm, 1)} ms of it, ` +
      `the PostgreSQL commit and the wait for it the rest), so ${o.connections} connections can get at most ` +
      `${fmt((o.connections * 1000) / durable)} answers/s from that wait alone`,
  );
  console.log('CPU per request: the server process; "services": RabbitMQ (beam.smp) + PostgreSQL, all on this machine.');
  console.log(
    '\nThe baseline answers 200 once the message is written to its socket (fire-and-forget: lost if the broker or the\n' +
      'connection fails before it is stored); hookd answers 200 after the PostgreSQL commit and the broker confirm.',
  );
  const refused = results.reduce((n, r) => n + r.hookd.non2xx + r.ingestOnly.non2xx + r.broker.non2xx + r.brokerIngestOnly.non2xx, 0);
  if (refused > 0) console.log(`WARNING: hookd answered ${refused} requests with a non-2xx status`);
}
