import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { Connection } from 'rabbitmq-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminCall, type ChildHookd, spawnHookd, tempDir, waitFor } from '../helpers/hookd.js';

/**
 * Distributed mode, black box: three hookd processes (compiled dist/, as `npm start` runs them) on
 * one PostgreSQL schema and one RabbitMQ prefix, load spread round-robin over them, and then the
 * failures an operator sees: an instance SIGKILLed, the broker stopped, PostgreSQL restarted. The
 * promise checked each time: every request that got a 200 ends with exactly one completed
 * execution; while a backend is down the answer is 503 with Retry-After and /readyz is 503; service
 * comes back within 5 s of the backend.
 *
 * Needs a local PostgreSQL (DATABASE_URL, default the `test` database, superuser: it creates and
 * drops a schema, and restarts the cluster with pg_ctlcluster) and a local RabbitMQ (RABBITMQ_URI;
 * it runs rabbitmqctl stop_app/start_app). No skip: a missing service fails the tests. It stops
 * shared services, so it must not run alongside other test files (see vitest.config.ts).
 */
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const RABBITMQ_URI = process.env.RABBITMQ_URI ?? process.env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const RUN = randomBytes(4).toString('hex');
const SCHEMA = `hookd_e2e_${RUN}`;
const PREFIX = `hookd_e2e_${RUN}`;
const TOKEN = 'distributed-token';
/** Shared by all instances: credential secrets sealed by one must open on the others. */
const SECRET_KEY = randomBytes(32).toString('hex');
const STEPS = [
  { id: 'shape', type: 'transform', expression: '{ "order": body.order, "double": body.total * 2 }' },
  { id: 'keep', type: 'filter', expression: 'double > 0' },
  { id: 'note', type: 'log', level: 'debug' },
];

const execFileAsync = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// The instances

interface Instance {
  name: string;
  dataDir: string;
  /** Fixed after the first start, so a restarted instance comes back on the same address. */
  port: number;
  child: ChildHookd | undefined;
}

const instances: Instance[] = ['a', 'b', 'c'].map((name) => ({ name, dataDir: tempDir(`hookd-dist-${name}-`), port: 0, child: undefined }));

const urlOf = (i: Instance) => `http://127.0.0.1:${i.port}`;

/** RABBITMQ_ACCEPT of the instances started from now on (the last describe restarts them with 'broker'). */
let acceptMode: 'outbox' | 'broker' = 'outbox';

async function startInstance(i: Instance): Promise<void> {
  i.child = await spawnHookd({
    DATA_DIR: i.dataDir,
    LISTEN_PORT: String(i.port),
    HOOKD_ADMIN_TOKEN: TOKEN,
    HOOKD_SECRET_KEY: SECRET_KEY,
    DATABASE_URL,
    DATABASE_SCHEMA: SCHEMA,
    RABBITMQ_URI,
    RABBITMQ_PREFIX: PREFIX,
    RABBITMQ_ACCEPT: acceptMode,
    LOG_LEVEL: 'info',
    // Short, so the test sees a deleted flow's queue go (default 65 min: above the longest delay level).
    DELETED_FLOW_GRACE: '8s',
  });
  i.port = Number(new URL(i.child.url).port);
}

async function stopInstance(i: Instance): Promise<void> {
  const child = i.child;
  if (!child) return;
  i.child = undefined;
  if (child.proc.exitCode !== null || child.proc.signalCode !== null) return;
  child.proc.kill('SIGTERM');
  const t = setTimeout(() => child.proc.kill('SIGKILL'), 15_000);
  await child.exited;
  clearTimeout(t);
}

const api = (i: Instance, method: string, p: string, body?: unknown) => adminCall(urlOf(i), TOKEN, method, p, body);

async function readyz(i: Instance): Promise<{ status: number; retryAfter: string | null }> {
  try {
    const res = await fetch(`${urlOf(i)}/readyz`, { signal: AbortSignal.timeout(5_000) });
    await res.arrayBuffer();
    return { status: res.status, retryAfter: res.headers.get('retry-after') };
  } catch {
    return { status: 0, retryAfter: null };
  }
}

// ---------------------------------------------------------------------------------------------
// Load: POSTs round-robin over the instances, as a load balancer would spread them

interface Outcome {
  instance: number;
  sentId: string;
  /** 0: no HTTP answer (connection refused or reset). */
  status: number;
  retryAfter: string | undefined;
  requestId: string | undefined;
  start: number;
  end: number;
}

interface Load {
  readonly outcomes: Outcome[];
  acked(): string[];
  /** Stop issuing; resolves once every request in flight has its answer. */
  stop(): Promise<void>;
}

/**
 * Keep `concurrency` POSTs in flight to /hook/<flowId>, round-robin over the instances, until
 * stop(). Each request carries its own x-request-id (what a careful sender does), so refused ones
 * can be traced too. An instance whose connection fails is skipped for 200 ms (a balancer's
 * health check); requests to it are not retried: the sender decides that, not the test.
 */
function startLoad(flowId: string, concurrency: number): Load {
  const outcomes: Outcome[] = [];
  const agents = instances.map(() => new http.Agent({ keepAlive: true, maxSockets: concurrency }));
  const skipUntil = instances.map(() => 0);
  let running = true;
  let seq = 0;
  let rr = 0;
  const pick = (): number | undefined => {
    for (let k = 0; k < instances.length; k++) {
      const n = rr++ % instances.length;
      if (skipUntil[n]! <= performance.now() && instances[n]!.port !== 0) return n;
    }
    return undefined;
  };
  const one = (n: number, i: number) =>
    new Promise<void>((resolve) => {
      const sentId = `${RUN}-${flowId}-${i}`;
      const body = JSON.stringify({ order: i, total: (i % 500) + 1, note: 'distributed test payload' });
      const start = performance.now();
      const done = (o: Omit<Outcome, 'instance' | 'sentId' | 'start' | 'end'>) => {
        outcomes.push({ instance: n, sentId, start, end: performance.now(), ...o });
        resolve();
      };
      const req = http.request(
        {
          host: '127.0.0.1',
          port: instances[n]!.port,
          path: `/hook/${flowId}`,
          method: 'POST',
          agent: agents[n],
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-request-id': sentId },
        },
        (res) => {
          let text = '';
          res.on('data', (d) => (text += d));
          res.on('end', () => {
            let requestId: string | undefined;
            if (res.statusCode === 200) requestId = (JSON.parse(text) as { requestId: string }).requestId;
            const ra = res.headers['retry-after'];
            done({ status: res.statusCode ?? 0, retryAfter: Array.isArray(ra) ? ra[0] : ra, requestId });
          });
          res.on('error', () => done({ status: 0, retryAfter: undefined, requestId: undefined }));
        },
      );
      req.on('error', () => {
        skipUntil[n] = performance.now() + 200;
        done({ status: 0, retryAfter: undefined, requestId: undefined });
      });
      req.end(body);
    });
  const worker = async () => {
    while (running) {
      const n = pick();
      if (n === undefined) await sleep(20);
      else await one(n, seq++);
    }
  };
  const workers = Promise.all(Array.from({ length: concurrency }, worker));
  return {
    outcomes,
    acked: () => outcomes.filter((o) => o.status === 200).map((o) => o.requestId!),
    async stop() {
      running = false;
      await workers;
      for (const a of agents) a.destroy();
    },
  };
}

const countAcked = (load: Load) => load.outcomes.reduce((n, o) => n + (o.status === 200 ? 1 : 0), 0);

/** Latency of the 200s and of the refusals: p50 / p99 / max, ms. */
function latencies(outcomes: readonly Outcome[]): string {
  const stats = (xs: number[]) => {
    if (xs.length === 0) return '-';
    xs.sort((a, b) => a - b);
    const at = (p: number) => Math.round(xs[Math.min(xs.length - 1, Math.floor(p * xs.length))]!);
    return `${at(0.5)}/${at(0.99)}/${Math.round(xs[xs.length - 1]!)}`;
  };
  const ok = outcomes.filter((o) => o.status === 200).map((o) => o.end - o.start);
  const refused = outcomes.filter((o) => o.status !== 200).map((o) => o.end - o.start);
  return `latency p50/p99/max ms: 200s ${stats(ok)}, others ${stats(refused)}`;
}

function statusCounts(outcomes: readonly Outcome[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const o of outcomes) counts[String(o.status)] = (counts[String(o.status)] ?? 0) + 1;
  return counts;
}

// ---------------------------------------------------------------------------------------------
// Executions, through the API of any instance that answers

type ExecutionsByRequest = Map<string, Array<{ id: string; status: string }>>;

async function executionsOf(flowId: string): Promise<ExecutionsByRequest> {
  for (const i of instances) {
    if (!i.child) continue;
    try {
      const out: ExecutionsByRequest = new Map();
      let before: string | undefined;
      for (;;) {
        const q = `/api/executions?flowId=${flowId}&limit=1000${before ? `&before=${encodeURIComponent(before)}` : ''}`;
        const page = await api(i, 'GET', q);
        if (page.status !== 200) throw new Error(`GET ${q}: ${page.status}`);
        for (const e of page.body.items as Array<{ id: string; requestId: string; status: string }>) {
          const list = out.get(e.requestId) ?? [];
          list.push({ id: e.id, status: e.status });
          out.set(e.requestId, list);
        }
        if (!page.body.next) break;
        before = page.body.next;
      }
      return out;
    } catch {
      // the next instance
    }
  }
  throw new Error('no instance answered /api/executions');
}

/** Dead letters of a flow (requestId → why), through any instance. */
async function deadLettersOf(flowId: string): Promise<Map<string, string>> {
  for (const i of instances) {
    if (!i.child) continue;
    const res = await api(i, 'GET', `/api/dead-letters?flowId=${flowId}&limit=1000`).catch(() => undefined);
    if (res?.status !== 200) continue;
    return new Map((res.body.items as Array<{ requestId: string; lastError?: string }>).map((d) => [d.requestId, d.lastError ?? '']));
  }
  throw new Error('no instance answered /api/dead-letters');
}

const FINAL = new Set(['completed', 'filtered', 'dead']);

/**
 * Wait until every acknowledged request's execution is final (or a job of the flow was
 * dead-lettered: no point waiting then); return those that do not have exactly one completed
 * execution, with the dead letter's reason when there is one.
 */
async function unfinished(flowId: string, acked: readonly string[], timeoutMs = 60_000): Promise<string[]> {
  let executions: ExecutionsByRequest = new Map();
  let dead = new Map<string, string>();
  await waitFor(
    async () => {
      try {
        executions = await executionsOf(flowId);
        if (acked.every((id) => executions.get(id)?.some((e) => FINAL.has(e.status)))) return true;
        dead = await deadLettersOf(flowId);
        return dead.size > 0;
      } catch {
        return false;
      }
    },
    timeoutMs,
    500,
  ).catch(() => undefined);
  await sleep(500); // a duplicate delivery still on its way would show up as a second execution
  executions = await executionsOf(flowId);
  dead = await deadLettersOf(flowId);
  const bad: string[] = [];
  for (const id of acked) {
    const list = executions.get(id) ?? [];
    if (list.length !== 1 || list[0]!.status !== 'completed') bad.push(`${id}: ${JSON.stringify(list)}${dead.has(id) ? ` dead letter: ${dead.get(id)}` : ''}`);
  }
  return bad;
}

// ---------------------------------------------------------------------------------------------
// Services: PostgreSQL and RabbitMQ, always restored

let brokerStopped = false;
let brokerRestarted = false;
let pgStopped = false;

async function rabbitmqctl(...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync('rabbitmqctl', args, { timeout: 60_000 });
  return stdout;
}

async function deadLetterSupervisorRunning(): Promise<boolean> {
  return (await rabbitmqctl('eval', 'is_pid(whereis(rabbit_fifo_dlx_sup)).')).trim() === 'true';
}

async function rawRabbit(): Promise<Connection> {
  const conn = new Connection({ url: RABBITMQ_URI, retryLow: 100, retryHigh: 500 });
  conn.on('error', () => {});
  await conn.onConnect(5_000);
  return conn;
}

/** The PostgreSQL cluster behind DATABASE_URL (Debian's pg_lsclusters: "15 main 5432 online …"). */
async function pgCluster(): Promise<{ version: string; name: string }> {
  const port = new URL(DATABASE_URL).port || '5432';
  const { stdout } = await execFileAsync('pg_lsclusters', ['-h'], { timeout: 10_000 });
  for (const line of stdout.split('\n')) {
    const [version, name, p] = line.trim().split(/\s+/);
    if (version && name && p === port) return { version, name };
  }
  throw new Error(`no PostgreSQL cluster on port ${port} in pg_lsclusters:\n${stdout}`);
}

async function pgctl(action: 'start' | 'stop'): Promise<void> {
  const c = await pgCluster();
  const args = ['--skip-systemctl-redirect', c.version, c.name, action, ...(action === 'stop' ? ['-m', 'fast'] : [])];
  if (action === 'stop') pgStopped = true;
  await execFileAsync('pg_ctlcluster', args, { timeout: 60_000 });
  if (action === 'start') pgStopped = false;
}

async function pgQuery<R extends object = Record<string, unknown>>(sql: string): Promise<R[]> {
  const client = new pg.Client({ connectionString: DATABASE_URL, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    return (await client.query<R>(sql)).rows;
  } finally {
    await client.end();
  }
}

/** Wait until PostgreSQL accepts a connection and a query; resolves with that moment. */
async function pgAcceptsConnections(timeoutMs = 30_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await pgQuery('SELECT 1');
      return performance.now();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(25);
    }
  }
}

/**
 * Delete this run's queues and exchange. After a broker restart, RabbitMQ 3.10 can lose its
 * at-least-once dead-letter supervisor if such queues are deleted while still recovering: first a
 * confirmed publish into each (each has a leader again), plus a margin.
 */
async function deleteTopology(): Promise<void> {
  const queues = (await rabbitmqctl('-q', 'list_queues', 'name'))
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith(`${PREFIX}.`));
  const conn = await rawRabbit();
  try {
    if (brokerRestarted) {
      const ch = await conn.acquire();
      await ch.confirmSelect();
      for (const queue of queues) await ch.basicPublish({ routingKey: queue, durable: true }, 'probe');
      await ch.close();
      await sleep(1_500);
    }
    for (const queue of queues) await conn.queueDelete({ queue });
    await conn.exchangeDelete({ exchange: PREFIX });
    await conn.exchangeDelete({ exchange: `${PREFIX}.delay` });
  } finally {
    await conn.close();
  }
}

// ---------------------------------------------------------------------------------------------

beforeAll(async () => {
  // Fail, never skip, when a service is missing.
  await pgQuery(`CREATE SCHEMA "${SCHEMA}"`);
  const conn = await rawRabbit();
  await conn.close();
  expect(await deadLetterSupervisorRunning(), 'RabbitMQ rabbit_fifo_dlx_sup is down: rabbitmqctl stop_app && rabbitmqctl start_app').toBe(true);
  await pgCluster();

  // A first, and the flows of the load tests created through it before B and C start: these tests
  // do not depend on how fast a flow created elsewhere reaches an instance (that has its own test).
  await startInstance(instances[0]!);
  for (const id of ['spread', 'broker', 'pgdown']) {
    const res = await api(instances[0]!, 'PUT', `/api/flows/${id}`, { steps: STEPS });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
  }
  await Promise.all(instances.slice(1).map(startInstance));
}, 60_000);

afterAll(async () => {
  const errors: unknown[] = [];
  const attempt = async (f: () => Promise<unknown>) => {
    try {
      await f();
    } catch (err) {
      errors.push(err);
    }
  };
  // Never leave a shared service down.
  if (brokerStopped) await attempt(() => rabbitmqctl('start_app').then(() => (brokerStopped = false)));
  if (pgStopped) await attempt(() => pgctl('start'));
  await Promise.all(instances.map((i) => attempt(() => stopInstance(i))));
  await attempt(() => pgAcceptsConnections());
  await attempt(() => pgQuery(`DROP SCHEMA IF EXISTS "${SCHEMA}" CASCADE`));
  await attempt(() => deleteTopology());
  for (const i of instances) rmSync(i.dataDir, { recursive: true, force: true });
  await attempt(async () => {
    expect(await deadLetterSupervisorRunning(), 'RabbitMQ rabbit_fifo_dlx_sup stopped by this run').toBe(true);
    const left = `${await rabbitmqctl('-q', 'list_queues', 'name')}\n${await rabbitmqctl('-q', 'list_exchanges', 'name')}`
      .split('\n')
      .filter((l) => l.includes(PREFIX));
    expect(left).toEqual([]);
  });
  if (errors.length > 0) throw errors[0];
}, 120_000);

describe.sequential('distributed mode: three instances on PostgreSQL + RabbitMQ', () => {
  it('a flow created through one instance is served and run by all of them', { timeout: 30_000 }, async () => {
    const [a, b, c] = instances as [Instance, Instance, Instance];
    const created = await api(a, 'PUT', '/api/flows/late', { steps: STEPS });
    expect(created.status).toBe(201);
    // Called at once on A: the jobs go to whichever instance's worker the broker picks.
    const ids: string[] = [];
    const statuses: Record<string, number> = {};
    const post = async (i: Instance, n: number) => {
      const t0 = performance.now();
      const res = await fetch(`${urlOf(i)}/hook/late`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ order: n, total: 5 }) });
      const key = `${i.name} ${res.status}${performance.now() - t0 > 1_000 ? ' after > 1 s' : ''}`;
      statuses[key] = (statuses[key] ?? 0) + 1;
      if (res.status === 200) ids.push(((await res.json()) as { requestId: string }).requestId);
      else await res.arrayBuffer();
    };
    await Promise.all(Array.from({ length: 30 }, (_, n) => post(a, n)));
    // B and C serve it within a few seconds…
    for (const i of [b, c]) {
      await waitFor(async () => (await fetch(`${urlOf(i)}/hook/late`, { method: 'HEAD' })).status === 200, 5_000, 100);
      await Promise.all(Array.from({ length: 10 }, (_, n) => post(i, 100 + n)));
    }
    expect.soft(statuses).toEqual({ 'a 200': 30, 'b 200': 10, 'c 200': 10 });
    // A published the jobs of its 30 requests itself and timed the broker's confirms.
    const metricsA = await (await fetch(`${urlOf(a)}/metrics`)).text();
    const confirms = Number(/^hookd_broker_confirm_seconds_count (\d+)$/m.exec(metricsA)?.[1]);
    expect(confirms).toBeGreaterThanOrEqual(30);
    expect(Number(/^hookd_broker_confirm_seconds_sum (\S+)$/m.exec(metricsA)?.[1])).toBeGreaterThan(0);
    expect(metricsA).not.toContain('hookd_store_wal_sync_seconds'); // embedded mode only
    // …and every request ran once, wherever its job was consumed.
    expect.soft(await unfinished('late', ids, 20_000)).toEqual([]);
    // A request received by A, replayed through B: a new request, confirmed and run once.
    const replay = await api(b, 'POST', `/api/requests/${ids[0]}/replay`);
    expect(replay).toMatchObject({ status: 202, body: { replayOf: ids[0], flowId: 'late' } });
    expect.soft(await unfinished('late', [replay.body.requestId], 20_000)).toEqual([]);
    // The flow has a queue of its own, and every instance's workers consume it (B and C learnt the
    // flow from the database, not from a publish of their own).
    const consumersOf = async (queue: string) =>
      Number(
        (await rabbitmqctl('-q', 'list_queues', 'name', 'consumers'))
          .split('\n')
          .map((l) => l.trim().split(/\s+/))
          .find(([name]) => name === queue)?.[1],
      );
    await waitFor(async () => (await consumersOf(`${PREFIX}.flow.late`)) === 3, 10_000, 500);
    // Stopping it on B stops it everywhere.
    expect((await api(b, 'POST', '/api/flows/late/stop')).status).toBeLessThan(300);
    for (const i of [a, c]) await waitFor(async () => (await fetch(`${urlOf(i)}/hook/late`, { method: 'HEAD' })).status === 404, 5_000, 100);
    // …and no instance consumes its queue any more (jobs of a stopped flow wait there).
    await waitFor(async () => (await consumersOf(`${PREFIX}.flow.late`)) === 0, 10_000, 500);
  });

  it('API writes through one instance see what another did a moment before (no stale copy overwritten)', { timeout: 30_000 }, async () => {
    const [a, b] = instances as [Instance, Instance, Instance];
    expect((await api(a, 'POST', '/api/flows', { id: 'raced', name: 'first', steps: STEPS })).status).toBe(201);
    // At once on B, well within its FLOW_REFRESH: the flow exists there too.
    const again = await api(b, 'POST', '/api/flows', { id: 'raced', name: 'second', steps: STEPS });
    expect(again.status).toBe(409);
    expect((await api(b, 'GET', '/api/flows/raced')).body.name).toBe('first');
    // A rename on A, then a stop on B: the stop keeps the rename.
    expect((await api(a, 'PUT', '/api/flows/raced', { name: 'renamed', steps: STEPS })).status).toBe(200);
    expect((await api(b, 'POST', '/api/flows/raced/stop')).body).toMatchObject({ name: 'renamed', status: 'stopped' });
    // Deleted on A, then started on B: not brought back.
    expect((await api(a, 'DELETE', '/api/flows/raced')).status).toBe(204);
    expect((await api(b, 'POST', '/api/flows/raced/start')).status).toBe(404);
    expect((await api(a, 'GET', '/api/flows/raced')).status).toBe(404);
  });

  it("a deleted flow's jobs end as dead letters, its queue is removed after DELETED_FLOW_GRACE, and the flow can be created again", { timeout: 90_000 }, async () => {
    const [a, b, c] = instances as [Instance, Instance, Instance];
    // A grace this short lets a retry outlive the queue: every instance said so at start.
    for (const i of instances) expect(i.child!.output()).toContain('DELETED_FLOW_GRACE is shorter than the longest retry delay');
    const queue = `${PREFIX}.flow.doomed`;
    const queueListed = async () => (await rabbitmqctl('-q', 'list_queues', 'name')).split('\n').some((l) => l.trim() === queue);
    // Its one step fails (nothing listens on port 9): every job goes round the retry delay queues.
    const failing = { steps: [{ id: 'call', type: 'http', url: 'http://127.0.0.1:47/refused', timeoutMs: 1_000 }], retry: { maxAttempts: 50, backoffMs: 500 } };
    expect((await api(a, 'PUT', '/api/flows/doomed', failing)).status).toBe(201);
    for (const i of [b, c]) await waitFor(async () => (await fetch(`${urlOf(i)}/hook/doomed`, { method: 'HEAD' })).status === 200, 5_000, 100);
    const ids: string[] = [];
    for (const [n, i] of [a, b, c, a, b, c].entries()) {
      const res = await fetch(`${urlOf(i)}/hook/doomed`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ n }) });
      expect(res.status).toBe(200);
      ids.push(((await res.json()) as { requestId: string }).requestId);
    }
    await sleep(1_500); // failing and retrying
    expect(await queueListed()).toBe(true);
    expect((await api(b, 'DELETE', '/api/flows/doomed')).status).toBe(204);
    const deletedAt = Date.now();

    // Each job, coming back from its delay, is dead-lettered: the flow no longer exists.
    const deadOf = async () => ((await api(c, 'GET', '/api/dead-letters?flowId=doomed&limit=100')).body as { items: Array<{ requestId: string; lastError: string }> }).items;
    await waitFor(async () => (await deadOf()).length >= ids.length, 20_000, 500);
    const dead = await deadOf();
    expect(dead.map((d) => d.requestId).sort()).toEqual([...ids].sort());
    for (const d of dead) expect(d.lastError).toMatch(/doomed does not exist \(deleted\)/);
    // Retrying one while its flow is deleted is refused (it would only be dead-lettered again).
    expect((await api(a, 'POST', `/api/dead-letters/${(dead[0] as unknown as { id: string }).id}/retry`)).status).toBe(409);

    // The queue goes once the grace has passed, and its deletion record with it; no instance
    // declares it again.
    await waitFor(async () => !(await queueListed()), 30_000, 500);
    expect(Date.now() - deletedAt).toBeGreaterThanOrEqual(8_000);
    expect(await pgQuery(`SELECT flow_id FROM "${SCHEMA}".flow_deletions WHERE flow_id = 'doomed'`)).toEqual([]);
    await sleep(3_000);
    expect(await queueListed()).toBe(false);

    // Created again: an ordinary flow, served and run by every instance.
    expect((await api(c, 'PUT', '/api/flows/doomed', { steps: STEPS })).status).toBe(201);
    for (const i of [a, b]) await waitFor(async () => (await fetch(`${urlOf(i)}/hook/doomed`, { method: 'HEAD' })).status === 200, 5_000, 100);
    const again: string[] = [];
    for (const i of [a, b, c]) {
      const res = await fetch(`${urlOf(i)}/hook/doomed`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ order: 1, total: 5 }) });
      expect(res.status).toBe(200);
      again.push(((await res.json()) as { requestId: string }).requestId);
    }
    // (Its old dead letters stay: unfinished() would stop waiting at them, so wait here.)
    await waitFor(async () => {
      const ex = await executionsOf('doomed');
      return again.every((id) => ex.get(id)?.some((e) => e.status === 'completed'));
    }, 20_000, 500);
    expect(await queueListed()).toBe(true);
  });

  it('an id PostgreSQL cannot hold (U+0000) is a 404 from the API, not a 500', { timeout: 30_000 }, async () => {
    const [a] = instances as [Instance, Instance, Instance];
    for (const p of ['/api/requests/%00', '/api/executions/%00', '/api/requests/%00/raw']) {
      const res = await api(a, 'GET', p);
      expect(res.status, p).toBe(404);
    }
    expect((await api(a, 'GET', '/api/requests?before=%00')).status).toBe(400);
    expect((await api(a, 'GET', '/api/requests?limit=1')).status).toBe(200);
  });

  it("a flow's rate limit holds for the cluster: each instance enforces its share", { timeout: 30_000 }, async () => {
    const [a, b, c] = instances as [Instance, Instance, Instance];
    // Each instance has counted the three (its share is a third)…
    for (const i of instances) {
      await waitFor(async () => /^hookd_cluster_instances 3$/m.test(await (await fetch(`${urlOf(i)}/metrics`)).text()), 10_000, 200);
    }
    // …and serves the flow: 30 at once, then 1 every 10 s — 10 at once and 1 every 30 s per instance.
    const trigger = { type: 'webhook', rateLimit: { perSecond: 0.1, burst: 30 } };
    expect((await api(a, 'PUT', '/api/flows/limited', { steps: STEPS, trigger })).status).toBe(201);
    // The HEAD that first finds the flow on B and C takes no token (probes never do).
    for (const i of [b, c]) await waitFor(async () => (await fetch(`${urlOf(i)}/hook/limited`, { method: 'HEAD' })).status === 200, 5_000, 100);
    const statuses: Record<string, number> = {};
    await Promise.all(
      instances.flatMap((i) =>
        Array.from({ length: 30 }, async (_, n) => {
          const res = await fetch(`${urlOf(i)}/hook/limited`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ order: n, total: 1 }) });
          await res.arrayBuffer();
          const key = `${i.name} ${res.status}`;
          statuses[key] = (statuses[key] ?? 0) + 1;
        }),
      ),
    );
    // The cluster admits the configured burst (30), not three times it.
    expect(statuses).toEqual({ 'a 200': 10, 'a 429': 20, 'b 200': 10, 'b 429': 20, 'c 200': 10, 'c 429': 20 });
  });

  it('a component outside hookd gets each request in its job message, as the API returns it (jobMessage.includeRequest)', { timeout: 30_000 }, async () => {
    const [a, b] = instances as [Instance, Instance, Instance];
    expect((await api(a, 'PUT', '/api/flows/tap.eu', { steps: STEPS, jobMessage: { includeRequest: true } })).status).toBe(201);
    expect((await api(a, 'PUT', '/api/flows/tap.us', { steps: STEPS })).status).toBe(201);
    const conn = await rawRabbit();
    const tap = `${PREFIX}.component`;
    try {
      // What an external component does (docs/external-consumers.md): its own queue, bound to the flows.
      await conn.queueDeclare({ queue: tap, durable: true, arguments: { 'x-queue-type': 'quorum' } });
      await conn.queueBind({ queue: tap, exchange: PREFIX, routingKey: 'flow-tap~eu.#' });
      await conn.queueBind({ queue: tap, exchange: PREFIX, routingKey: 'flow-tap~us.#' });
      // A flow that does not ask for it: the job alone.
      const plain = await fetch(`${urlOf(a)}/hook/tap.us`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"order":3,"total":5}' });
      expect(plain.status).toBe(200);
      const plainId = ((await plain.json()) as { requestId: string }).requestId;
      const small = await fetch(`${urlOf(a)}/hook/tap.eu/orders?src=test`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-note': 'héllo' },
        body: JSON.stringify({ order: 1, total: 5, text: 'ünïcode' }),
      });
      expect(small.status).toBe(200);
      const smallId = ((await small.json()) as { requestId: string }).requestId;
      // Over RABBITMQ_JOB_PAYLOAD (64 KiB by default): the job goes without it; the component reads the API.
      const large = await fetch(`${urlOf(a)}/hook/tap.eu`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ order: 2, total: 5, pad: 'x'.repeat(70 * 1024) }),
      });
      expect(large.status).toBe(200);
      const largeId = ((await large.json()) as { requestId: string }).requestId;

      const got = new Map<string, Record<string, unknown>>();
      await waitFor(async () => {
        const m = await conn.basicGet({ queue: tap, noAck: true });
        if (m !== undefined) {
          const body = m.body as Record<string, unknown>;
          got.set(body.requestId as string, body);
        }
        return got.size === 3;
      }, 10_000, 20);
      const viaApi = (await api(b, 'GET', `/api/requests/${smallId}`)).body as Record<string, unknown>;
      delete viaApi.executionId;
      expect(got.get(smallId)!.message).toEqual(viaApi);
      expect(got.get(smallId)!.message).toMatchObject({ path: '/orders', query: { src: 'test' }, body: { order: 1, total: 5, text: 'ünïcode' } });
      expect((got.get(smallId)!.message as { headers: Record<string, string> }).headers['x-note']).toBe('héllo');
      expect(got.get(largeId)).toBeDefined();
      expect(got.get(largeId)!.message).toBeUndefined();
      expect(got.get(plainId)).toBeDefined();
      expect(got.get(plainId)!.message).toBeUndefined();
      // hookd's own workers ran them all, from the store.
      expect.soft(await unfinished('tap.eu', [smallId, largeId], 20_000)).toEqual([]);
      expect.soft(await unfinished('tap.us', [plainId], 20_000)).toEqual([]);
    } finally {
      await conn.queueDelete({ queue: tap }).catch(() => {});
      await conn.close();
    }
  });

  it('a file received by one instance is served by the others (attachments in PostgreSQL)', { timeout: 30_000 }, async () => {
    const [a, b, c] = instances as [Instance, Instance, Instance];
    const file = randomBytes(3 * 1024 * 1024 + 17); // several chunks
    const form = new FormData();
    form.append('note', 'invoice attached');
    form.append('invoice', new Blob([file], { type: 'application/pdf' }), 'invoice.pdf');
    const res = await fetch(`${urlOf(a)}/hook/spread`, { method: 'POST', body: form });
    expect(res.status).toBe(200);
    const { requestId } = (await res.json()) as { requestId: string };
    for (const i of [b, c]) {
      const m = await api(i, 'GET', `/api/requests/${requestId}`);
      expect(m.status).toBe(200);
      const ref = (m.body.attachments as Array<{ id: string; filename: string; size: number; sha256: string }>)[0]!;
      expect(ref).toMatchObject({ filename: 'invoice.pdf', size: file.length, sha256: createHash('sha256').update(file).digest('hex') });
      const got = await fetch(`${urlOf(i)}/api/requests/${requestId}/attachments/${ref.id}`, { headers: { authorization: `Bearer ${TOKEN}` } });
      expect(got.status).toBe(200);
      expect(Buffer.from(await got.arrayBuffer()).equals(file)).toBe(true);
      // A range crossing a chunk boundary (1 MiB).
      const part = await fetch(`${urlOf(i)}/api/requests/${requestId}/attachments/${ref.id}`, {
        headers: { authorization: `Bearer ${TOKEN}`, range: 'bytes=1048570-1048585' },
      });
      expect(part.status).toBe(206);
      expect(Buffer.from(await part.arrayBuffer()).equals(file.subarray(1048570, 1048586))).toBe(true);
    }
  });

  it('instances started without HOOKD_ADMIN_TOKEN share one admin token; one with another HOOKD_SECRET_KEY refuses to start', { timeout: 60_000 }, async () => {
    const schema = `${SCHEMA}_token`;
    await pgQuery(`CREATE SCHEMA "${schema}"`);
    const dirs = [tempDir('hookd-token-a-'), tempDir('hookd-token-b-')];
    const started: ChildHookd[] = [];
    try {
      // PostgreSQL alone (its own queue): the token does not depend on the broker.
      const env = (dataDir: string) => ({ DATA_DIR: dataDir, LISTEN_PORT: '0', HOOKD_SECRET_KEY: SECRET_KEY, DATABASE_URL, DATABASE_SCHEMA: schema, LOG_LEVEL: 'info' });
      started.push(await spawnHookd(env(dirs[0]!)));
      started.push(await spawnHookd(env(dirs[1]!)));
      const token = readFileSync(path.join(dirs[0]!, 'admin-token'), 'utf8').trim();
      expect(started[0]!.output()).toContain(token); // printed once by the instance that made it
      expect(existsSync(path.join(dirs[1]!, 'admin-token'))).toBe(false);
      expect(started[1]!.output()).not.toContain(token);
      for (const child of started) {
        expect((await adminCall(child.url, token, 'GET', '/api/flows')).status).toBe(200);
        expect((await adminCall(child.url, 'hkd_wrong', 'GET', '/api/flows')).status).toBe(401);
      }
      // An instance given another HOOKD_SECRET_KEY refuses to start (it could not open their secrets).
      const stray = tempDir('hookd-token-c-');
      dirs.push(stray);
      const refused = await spawnHookd({ ...env(stray), HOOKD_SECRET_KEY: randomBytes(32).toString('hex') }).then(
        (child) => {
          child.proc.kill('SIGKILL');
          return 'started';
        },
        (err: Error) => err.message,
      );
      expect(refused).toMatch(/HOOKD_SECRET_KEY differs from the key of the other instances/);
    } finally {
      for (const child of started) {
        child.proc.kill('SIGTERM');
        await child.exited;
      }
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
      await pgQuery(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    }
  });

  it('every 200 ends with exactly one completed execution when an instance is SIGKILLed under load', { timeout: 120_000 }, async () => {
    await killUnderLoad('spread');
  });

  it('broker outage under load: 503 + Retry-After while down, no acknowledged loss, back within 5 s of start_app', { timeout: 120_000 }, async () => {
    await brokerOutageUnderLoad('broker');
  });

  it('PostgreSQL restart under load: 503 + Retry-After while down, no acknowledged loss, back within 5 s', { timeout: 120_000 }, async () => {
    await outageUnderLoad({
      flowId: 'pgdown',
      // A restart with a pause in the middle, so that the outage can be observed: stop -m fast
      // (open transactions aborted, connections dropped), then start.
      what: 'pg_ctlcluster stop -m fast',
      stop: () => pgctl('stop'),
      async start() {
        if (pgStopped) await pgctl('start');
        return pgAcceptsConnections();
      },
    });
  });
});

describe.sequential('RABBITMQ_ACCEPT=broker: the broker holds each request until a worker records it', () => {
  beforeAll(async () => {
    await Promise.all(instances.map(stopInstance));
    acceptMode = 'broker';
    await startInstance(instances[0]!);
    for (const id of ['b-spread', 'b-broker', 'b-pgdown', 'b-once', 'b-other']) {
      const res = await api(instances[0]!, 'PUT', `/api/flows/${id}`, { steps: STEPS });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
    }
    await Promise.all(instances.slice(1).map(startInstance));
  }, 60_000);

  it("answers once the broker confirmed; a worker records and runs it; a sender's retry through another instance runs once; another flow's id gets the flow's own", { timeout: 60_000 }, async () => {
    const id = `${RUN}-once`;
    const post = async (i: Instance, flowId: string, body: unknown, requestId = id) => {
      const res = await fetch(`${urlOf(i)}/hook/${flowId}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-request-id': requestId },
        body: JSON.stringify(body),
      });
      return { status: res.status, body: (await res.json()) as { requestId: string } };
    };
    expect(await post(instances[0]!, 'b-once', { order: 1, total: 10 })).toEqual({ status: 200, body: { requestId: id, message: 'thank you' } });
    // The sender did not get that answer and sends again, through another instance of the balancer.
    expect(await post(instances[1]!, 'b-once', { order: 1, total: 10 })).toMatchObject({ status: 200, body: { requestId: id } });
    expect(await unfinished('b-once', [id])).toEqual([]);
    const stored = await api(instances[2]!, 'GET', `/api/requests/${id}`);
    expect(stored.status).toBe(200);
    expect(stored.body).toMatchObject({ id, flowId: 'b-once', body: { order: 1, total: 10 } });
    await sleep(1_000);
    expect((await executionsOf('b-once')).get(id)).toHaveLength(1);
    // The workers say so in their metrics: one recorded, one duplicate acked unrun.
    const carried = async (outcome: string): Promise<number> => {
      let n = 0;
      for (const i of instances) {
        const text = await (await fetch(`${urlOf(i)}/metrics`)).text();
        n += Number(new RegExp(`^hookd_carried_request_deliveries_total\\{outcome="${outcome}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
      }
      return n;
    };
    expect(await carried('duplicate')).toBe(1);
    expect(await carried('recorded')).toBeGreaterThanOrEqual(1);

    // The same x-request-id sent to another flow: the ingress cannot know it is taken (it answers
    // with the sender's id); the worker records the request under the flow's own id for it.
    expect(await post(instances[2]!, 'b-other', { order: 2, total: 20 })).toMatchObject({ status: 200, body: { requestId: id } });
    let scoped: string | undefined;
    await waitFor(async () => {
      const page = await api(instances[0]!, 'GET', '/api/executions?flowId=b-other&limit=10');
      const done = (page.body.items as Array<{ requestId: string; status: string }>).find((e) => e.status === 'completed');
      scoped = done?.requestId;
      return scoped !== undefined;
    }, 20_000, 100);
    expect(scoped).toMatch(/^rid-/);
    expect((await api(instances[1]!, 'GET', `/api/requests/${scoped}`)).body).toMatchObject({ flowId: 'b-other', body: { order: 2, total: 20 } });
    expect((await api(instances[1]!, 'GET', `/api/requests/${id}`)).body).toMatchObject({ flowId: 'b-once', body: { order: 1, total: 10 } });

    // A replay (an admin's action, not a sender's webhook) goes the outbox way: readable at once.
    const replay = await api(instances[1]!, 'POST', `/api/requests/${id}/replay`, {});
    expect(replay.status, JSON.stringify(replay.body)).toBe(202);
    expect((await api(instances[2]!, 'GET', `/api/requests/${replay.body.requestId as string}`)).body).toMatchObject({ flowId: 'b-once', body: { order: 1, total: 10 } });

    // A body over the carried limit (256 KiB) goes the outbox way: readable as soon as it is answered.
    const big = await post(instances[0]!, 'b-once', { order: 3, total: 30, pad: 'x'.repeat(300 * 1024) }, `${RUN}-big`);
    expect(big.status).toBe(200);
    expect((await api(instances[1]!, 'GET', `/api/requests/${RUN}-big`)).status).toBe(200);
    expect(await unfinished('b-once', [id, `${RUN}-big`, replay.body.requestId as string])).toEqual([]);
  });

  it('every 200 ends with exactly one completed execution when an instance is SIGKILLed under load', { timeout: 120_000 }, async () => {
    await killUnderLoad('b-spread');
  });

  it('broker outage under load: 503 + Retry-After while down, no acknowledged loss, back within 5 s of start_app', { timeout: 120_000 }, async () => {
    await brokerOutageUnderLoad('b-broker');
  });

  it('PostgreSQL down under load: webhooks still answered 200 (the broker holds them), /readyz stays 200, and every one runs once when it is back', { timeout: 180_000 }, async () => {
    const flowId = 'b-pgdown';
    const load = startLoad(flowId, 24);
    let stoppedAt = 0;
    let startCalledAt = 0;
    let upAt = 0;
    const readyWhileDown: Array<{ status: number }> = [];
    try {
      await waitFor(() => countAcked(load) >= 300, 30_000, 5);
      await pgctl('stop');
      stoppedAt = performance.now();
      await sleep(3_000);
      readyWhileDown.push(...(await Promise.all(instances.map(readyz))));
    } finally {
      startCalledAt = performance.now();
      if (pgStopped) await pgctl('start');
      upAt = await pgAcceptsConnections();
    }
    try {
      await waitFor(() => load.outcomes.filter((x) => x.status === 200 && x.start >= upAt).length >= 100, 15_000, 10);
    } finally {
      await load.stop();
    }
    const down = load.outcomes.filter((x) => x.start >= stoppedAt && x.end <= startCalledAt);
    console.log(
      `${flowId}: PostgreSQL down for ${Math.round(startCalledAt - stoppedAt)} ms; load answers while down: ${JSON.stringify(statusCounts(down))}; ` +
        `all: ${JSON.stringify(statusCounts(load.outcomes))}, ${latencies(load.outcomes)}`,
    );
    for (const r of readyWhileDown) expect(r.status).toBe(200);
    expect(down.length).toBeGreaterThan(100);
    expect(statusCounts(down)).toEqual({ 200: down.length });
    const acked = load.acked();
    expect(new Set(acked).size).toBe(acked.length);
    expect(await unfinished(flowId, acked, 120_000)).toEqual([]);
  });
});

/**
 * One instance SIGKILLed in the middle of a load over the three (requests and executions in flight
 * on it), and started again: every 200 ends with exactly one completed execution, and the others
 * barely notice.
 */
async function killUnderLoad(flowId: string): Promise<void> {
  const TOTAL = 3000;
  const victim = 1;
  const v = instances[victim]!;
  const load = startLoad(flowId, 48);
  let killedAt = 0;
  let restartedAt = 0;
  let exitSignal: string | null = null;
  try {
    // Kill somewhere in the middle, while requests and executions are in flight on it.
    const killAt = Math.floor(TOTAL * (0.3 + 0.3 * Math.random()));
    await waitFor(() => countAcked(load) >= killAt, 60_000, 5);
    const child = v.child!;
    child.proc.kill('SIGKILL');
    killedAt = performance.now();
    await child.exited;
    exitSignal = child.proc.signalCode;
    v.child = undefined;
    await startInstance(v); // same port, same DATA_DIR: back in the rotation
    restartedAt = performance.now();
    // Go on until enough were acknowledged overall and the restarted instance took its share.
    await waitFor(
      () => countAcked(load) >= TOTAL && load.outcomes.filter((o) => o.instance === victim && o.status === 200 && o.start > restartedAt).length >= 100,
      60_000,
      20,
    );
  } finally {
    await load.stop();
  }
  expect(exitSignal).toBe('SIGKILL');
  const acked = load.acked();
  console.log(
    `kill test: ${load.outcomes.length} POSTs, ${acked.length} acknowledged, statuses ${JSON.stringify(statusCounts(load.outcomes))}, ` +
      `victim restarted in ${Math.round(restartedAt - killedAt)} ms; ${latencies(load.outcomes)}`,
  );
  expect(acked.length).toBeGreaterThanOrEqual(TOTAL);
  expect(load.outcomes.some((o) => o.instance === victim && o.status === 200 && o.end < killedAt)).toBe(true);
  // Killing one instance barely disturbs the others. The one refusal they may give: a request
  // whose outbox row the victim's relay had claimed when it died cannot be confirmed before that
  // claim's lease ends — the survivor answers 503 (not acknowledged; the job is still published
  // later, at-least-once). Never anything but a 503, and only a handful.
  const survivorsFailed = load.outcomes.filter((o) => o.instance !== victim && o.status !== 200);
  const counts = statusCounts(survivorsFailed);
  expect(Object.keys(counts).filter((k) => k !== '503'), `survivors' refusals (${latencies(survivorsFailed)})`).toEqual([]);
  expect(survivorsFailed.length).toBeLessThanOrEqual(Math.ceil(0.01 * load.outcomes.length));
  expect(new Set(acked).size).toBe(acked.length);
  expect(await unfinished(flowId, acked)).toEqual([]);
}

/** outageUnderLoad with the broker stopped (rabbitmqctl stop_app) and started again. */
function brokerOutageUnderLoad(flowId: string): Promise<void> {
  return outageUnderLoad({
    flowId,
    what: 'rabbitmqctl stop_app',
    async stop() {
      brokerStopped = brokerRestarted = true;
      await rabbitmqctl('stop_app');
    },
    async start() {
      if (brokerStopped) {
        await rabbitmqctl('start_app');
        brokerStopped = false;
      }
      return performance.now(); // the broker is up when start_app returns
    },
  });
}

/**
 * One backend outage under load, from the senders' side: load over the three instances; the backend
 * stopped; while it is down, /readyz is 503 on every instance, fresh requests get 503 with
 * Retry-After at once, and so do the load's requests; then the backend comes back, and a 200
 * follows within 5 s. Every request that got a 200 — before, during, after — must end with exactly
 * one completed execution.
 */
async function outageUnderLoad(o: { flowId: string; what: string; stop(): Promise<void>; start(): Promise<number> }): Promise<void> {
  const DOWN_MS = 1_500;
  const load = startLoad(o.flowId, 24);
  let stopCalledAt = 0;
  let stoppedAt = 0;
  let startCalledAt = 0;
  let upAt = 0;
  const readyWhileDown: Array<{ status: number; retryAfter: string | null }> = [];
  const probes: Array<{ id: string; status: number; retryAfter: string | null; ms: number }> = [];
  let senderRetry: { id: string; status: number } | undefined;
  try {
    await waitFor(() => countAcked(load) >= 300, 30_000, 5);
    stopCalledAt = performance.now();
    await o.stop();
    stoppedAt = performance.now();
    // /readyz of every instance turns 503…
    await waitFor(async () => (await Promise.all(instances.map(readyz))).every((r) => r.status === 503), 5_000, 50);
    // …new requests are refused at once, with Retry-After (3 per instance, fresh connections)…
    probes.push(
      ...(await Promise.all(
        instances.flatMap((i, k) =>
          [0, 1, 2].map(async (j) => {
            const id = `${RUN}-${o.flowId}-probe-${k}-${j}`;
            const t0 = performance.now();
            try {
              const res = await fetch(`${urlOf(i)}/hook/${o.flowId}`, {
                method: 'POST',
                headers: { 'content-type': 'application/json', 'x-request-id': id, connection: 'close' },
                body: JSON.stringify({ order: -1, total: 1 }),
                signal: AbortSignal.timeout(3_000),
              });
              await res.arrayBuffer();
              return { id, status: res.status, retryAfter: res.headers.get('retry-after'), ms: performance.now() - t0 };
            } catch {
              return { id, status: 0, retryAfter: null, ms: performance.now() - t0 }; // no answer within 3 s
            }
          }),
        ),
      )),
    );
    // …and it stays so while the load goes on.
    await sleep(DOWN_MS);
    readyWhileDown.push(...(await Promise.all(instances.map(readyz))));
    // A sender retrying a refused request with the same x-request-id, still during the outage.
    const refused = load.outcomes.find((x) => x.status === 503 && x.start > stoppedAt) ?? probes.find((p) => p.status === 503);
    if (refused) {
      const id = 'sentId' in refused ? refused.sentId : refused.id;
      senderRetry = { id, status: 0 };
      const res = await fetch(`${urlOf(instances[0]!)}/hook/${o.flowId}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-request-id': id },
        body: JSON.stringify({ order: -1000, total: 1 }),
        signal: AbortSignal.timeout(3_000),
      }).catch(() => undefined);
      if (res) {
        await res.arrayBuffer();
        senderRetry.status = res.status;
      }
    }
  } finally {
    startCalledAt = performance.now();
    upAt = await o.start();
  }
  let firstOk: Outcome | undefined;
  try {
    await waitFor(() => (firstOk = load.outcomes.find((x) => x.status === 200 && x.start >= upAt)), 15_000, 10);
    await waitFor(() => load.outcomes.filter((x) => x.status === 200 && x.start >= upAt).length >= 100, 15_000, 10);
  } finally {
    await load.stop();
  }
  const recoveryMs = firstOk!.end - upAt;
  const down = load.outcomes.filter((x) => x.start >= stoppedAt && x.end <= startCalledAt);
  const inFlightAtStop = load.outcomes.filter((x) => x.start < stoppedAt && x.end > stopCalledAt);
  const ms = (t: number) => Math.round(t);
  console.log(
    `${o.flowId}: ${o.what} took ${ms(stoppedAt - stopCalledAt)} ms; down for ${ms(startCalledAt - stoppedAt)} ms; back ${ms(upAt - startCalledAt)} ms after the start command; ` +
      `first 200 ${ms(recoveryMs)} ms after that.\n  probes while down: ${JSON.stringify(probes.map((p) => [p.status, p.retryAfter, ms(p.ms)]))}\n` +
      `  load answers while down: ${JSON.stringify(statusCounts(down))}; in flight at the stop: ${JSON.stringify(statusCounts(inFlightAtStop))} ` +
      `(${latencies(inFlightAtStop)})\n  all: ${JSON.stringify(statusCounts(load.outcomes))}, ${latencies(load.outcomes)}; ` +
      `sender retry of a refused id during the outage → ${senderRetry?.status}`,
  );

  for (const r of readyWhileDown) expect(r).toMatchObject({ status: 503, retryAfter: expect.stringMatching(/^[1-9]\d*$/) });
  expect(probes.length).toBe(9);
  for (const p of probes) {
    expect(p).toMatchObject({ status: 503, retryAfter: expect.stringMatching(/^[1-9]\d*$/) });
    expect(p.ms).toBeLessThan(2_000);
  }
  expect(statusCounts(down)).toEqual(down.length === 0 ? {} : { 503: down.length });
  for (const x of down) expect(Number(x.retryAfter)).toBeGreaterThan(0);
  expect(recoveryMs).toBeLessThan(5_000);

  // No acknowledged loss: every 200 (load, probes, sender retry) ends with exactly one completed execution.
  const acked = new Set(load.acked());
  for (const p of probes) if (p.status === 200) acked.add(p.id);
  if (senderRetry?.status === 200) acked.add(senderRetry.id);
  expect(await unfinished(o.flowId, [...acked])).toEqual([]);
  await waitFor(async () => (await Promise.all(instances.map(readyz))).every((r) => r.status === 200), 10_000, 100);

  // A request refused with 503 may still run later (its outbox row was committed): at-least-once,
  // reported for the record.
  const executions = await executionsOf(o.flowId);
  const refusedIds = [...load.outcomes.filter((x) => x.status !== 200).map((x) => x.sentId), ...probes.filter((p) => p.status !== 200).map((p) => p.id)];
  console.log(`${o.flowId}: ${refusedIds.filter((id) => executions.has(id)).length} of ${refusedIds.length} refused requests ran anyway`);
}
