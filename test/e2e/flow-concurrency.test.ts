/**
 * A flow's `concurrency`: at most that many of its executions at once, through the whole app
 * (registry → runner → queue consumer), on every backend; other flows keep the free workers.
 * Needs the local PostgreSQL and RabbitMQ, as the distributed tests do (no skip).
 */
import http from 'node:http';
import pg from 'pg';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { everyBackend } from '../helpers/every-backend.js';
import { type RunningHookd, startHookd, waitFor } from '../helpers/hookd.js';

const { backends: BACKENDS, cleanUp } = everyBackend('fcc');

/** Calls in progress at the receiver, and the most at once, by path (= flow). */
const inProgress = new Map<string, number>();
const most = new Map<string, number>();
const receiver = http.createServer((req, res) => {
  const key = req.url ?? '';
  inProgress.set(key, (inProgress.get(key) ?? 0) + 1);
  most.set(key, Math.max(most.get(key) ?? 0, inProgress.get(key)!));
  req.resume();
  setTimeout(() => {
    inProgress.set(key, inProgress.get(key)! - 1);
    res.writeHead(200).end();
  }, 40);
});
let port = 0;

beforeAll(async () => {
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  port = (receiver.address() as AddressInfo).port;
});

afterAll(async () => {
  receiver.close();
  await cleanUp(['serial', 'parallel', 'held', 'feeder', 'shared', 'bal1', 'bal2', 'bal3', 'bal4', 'rated']);
});

describe.sequential.each(BACKENDS)('%s', (_name, env) => {
  let h: RunningHookd;
  beforeAll(async () => {
    h = await startHookd({ WORKER_CONCURRENCY: '8', ...env });
  });
  afterAll(() => h?.close());

  it("runs at most `concurrency` of a flow's executions at once, while another flow uses the other workers", async () => {
    inProgress.clear();
    most.clear();
    expect((await h.api('PUT', '/api/flows/serial', { concurrency: 0, steps: [] })).status).toBe(400);
    expect((await h.api('PUT', '/api/flows/serial', { concurrency: 1, steps: [{ id: 'call', type: 'http', url: `http://127.0.0.1:${port}/serial` }] })).status).toBe(201);
    expect((await h.api('GET', '/api/flows/serial')).body.concurrency).toBe(1);
    expect((await h.api('PUT', '/api/flows/parallel', { steps: [{ id: 'call', type: 'http', url: `http://127.0.0.1:${port}/parallel` }] })).status).toBe(201);
    const post = (flow: string) => fetch(`${h.url}/hook/${flow}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    const answers = await Promise.all([...Array.from({ length: 6 }, () => post('serial')), ...Array.from({ length: 6 }, () => post('parallel'))]);
    expect(answers.map((a) => a.status)).toEqual(Array(12).fill(200));
    const completed = async (flow: string) =>
      ((await h.api('GET', `/api/executions?flowId=${flow}&status=completed&limit=100`)).body.items as unknown[]).length;
    await waitFor(async () => (await completed('serial')) === 6 && (await completed('parallel')) === 6, 20_000);
    expect(most.get('/serial')).toBe(1);
    expect(most.get('/parallel')).toBeGreaterThanOrEqual(2);
  });
});

// A flow's executionRate: its executions start no faster than that, on every backend (RabbitMQ:
// one instance holds the flow, like a limited one), while other flows run at once.
describe.sequential.each(BACKENDS)('%s: an execution rate', (_name, env) => {
  let h: RunningHookd;
  beforeAll(async () => {
    h = await startHookd({ WORKER_CONCURRENCY: '8', FLOW_REFRESH: '200ms', ...env });
  });
  afterAll(() => h?.close());

  it('starts at most `perSecond` of the flow\'s executions a second, after its burst', async () => {
    const calls: number[] = [];
    const seen = (req: http.IncomingMessage) => {
      if (req.url === '/rated') calls.push(Date.now());
    };
    receiver.on('request', seen);
    try {
      expect((await h.api('PUT', '/api/flows/rated', { executionRate: { perSecond: 0 }, steps: [] })).status).toBe(400);
      const put = await h.api('PUT', '/api/flows/rated', { executionRate: { perSecond: 10, burst: 2 }, steps: [{ id: 'call', type: 'http', url: `http://127.0.0.1:${port}/rated` }] });
      expect(put.status).toBe(201);
      expect(put.body.executionRate).toEqual({ perSecond: 10, burst: 2 });
      if (env.RABBITMQ_URI !== undefined) {
        // Held by this instance (the only one): its queue is consumed here.
        const held = async () => Number(/^hookd_flows_held (\d+)$/m.exec(await (await fetch(`${h.url}/metrics`)).text())?.[1]);
        await waitFor(async () => (await held()) >= 1, 5_000);
      }
      const answers = await Promise.all(Array.from({ length: 12 }, () => fetch(`${h.url}/hook/rated`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })));
      expect(answers.map((a) => a.status)).toEqual(Array(12).fill(200));
      await waitFor(async () => ((await h.api('GET', '/api/executions?flowId=rated&status=completed&limit=100')).body.items as unknown[]).length === 12, 20_000);
      expect(calls).toHaveLength(12);
      // When each execution started its step (the receiver's clock adds each call's own latency).
      const items = (await h.api('GET', '/api/executions?flowId=rated&status=completed&limit=100')).body.items as Array<{ steps: Array<{ startedAt: string }> }>;
      const starts = items.map((e) => Date.parse(e.steps[0]!.startedAt)).sort((a, b) => a - b);
      // Two at once, then one every 100 ms: twelve starts over about a second (each start is seen a
      // little after its token, by a varying delay: the queue conformance suite checks the spacing)…
      expect(starts[11]! - starts[0]!).toBeGreaterThanOrEqual(800);
      console.log(`${_name}: 12 starts at 10/s, burst 2: first to last ${starts[11]! - starts[0]!} ms`);
      // …and not much more (each waits for its start, not for a sweep).
      expect(starts[11]! - starts[0]!).toBeLessThan(2_500);
    } finally {
      receiver.off('request', seen);
    }
  });
});

describe.sequential.each(BACKENDS)('%s: a stopped flow with a limit', (_name, env) => {
  let h: RunningHookd;
  beforeAll(async () => {
    h = await startHookd({ WORKER_CONCURRENCY: '4', ...env });
  });
  afterAll(() => h?.close());

  it('leaves its jobs in the queue (not claimed and put back, again and again) and runs them once started', async () => {
    inProgress.clear();
    most.clear();
    expect((await h.api('PUT', '/api/flows/held', { status: 'stopped', concurrency: 1, steps: [{ id: 'call', type: 'http', url: `http://127.0.0.1:${port}/held` }] })).status).toBe(201);
    // Jobs of the stopped flow: replays of a request of another flow, into it.
    expect((await h.api('PUT', '/api/flows/feeder', { steps: [] })).status).toBe(201);
    const res = await fetch(`${h.url}/hook/feeder`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    const { requestId } = (await res.json()) as { requestId: string };
    for (let i = 0; i < 20; i++) expect((await h.api('POST', `/api/requests/${requestId}/replay`, { flowId: 'held' })).status).toBe(202);
    await new Promise((r) => setTimeout(r, 1_500));
    expect((await h.api('GET', '/api/queue')).body).toMatchObject({ ready: 20, inFlight: 0, delayed: 0 });
    expect(most.get('/held')).toBeUndefined();
    expect((await h.api('POST', '/api/flows/held/start')).status).toBe(200);
    await waitFor(async () => ((await h.api('GET', '/api/executions?flowId=held&status=completed&limit=100')).body.items as unknown[]).length === 20, 20_000);
    expect(most.get('/held')).toBe(1);
  });
});


// Several instances on one database: the limit holds for all of them together (PostgreSQL's claims
// count every instance's leases; with RabbitMQ one instance at a time holds the limited flow).
describe.sequential.each(BACKENDS.filter(([, env]) => env.DATABASE_URL !== undefined))('%s: two instances', (_name, env) => {
  const instances: RunningHookd[] = [];
  beforeAll(async () => {
    for (let i = 0; i < 2; i++) instances.push(await startHookd({ WORKER_CONCURRENCY: '4', FLOW_REFRESH: '200ms', ...env }));
  });
  afterAll(() => Promise.all(instances.map((h) => h.close())));

  it('run at most `concurrency` of the flow\'s executions at once between them; when one stops, the other runs the flow', async () => {
    inProgress.clear();
    most.clear();
    const [a, b] = instances as [RunningHookd, RunningHookd];
    expect((await a.api('PUT', '/api/flows/shared', { concurrency: 1, steps: [{ id: 'call', type: 'http', url: `http://127.0.0.1:${port}/shared` }] })).status).toBe(201);
    await waitFor(async () => (await b.api('GET', '/api/flows/shared')).status === 200 && b.app.registry.get('shared') !== undefined, 5_000);
    const post = (h: RunningHookd) => fetch(`${h.url}/hook/shared`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    const completed = async () => ((await a.api('GET', '/api/executions?flowId=shared&status=completed&limit=100')).body.items as unknown[]).length;
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => post(i % 2 ? a : b)));
    expect(answers.map((r) => r.status)).toEqual(Array(12).fill(200));
    await waitFor(async () => (await completed()) === 12, 20_000);
    expect(most.get('/shared')).toBe(1);
    if (env.RABBITMQ_URI !== undefined) {
      // Stopped, the flow stays held by its holder (not consumed): an instance whose flow list is
      // a refresh behind cannot take it and run its waiting jobs meanwhile.
      const holder = await ownerOf(env, 'shared');
      expect(holder).toBeDefined();
      // Each instance says how many limited flows it holds: between them, every limited flow of
      // the schema (the earlier tests' too) once.
      const held = async (h: RunningHookd) => Number(/^hookd_flows_held (\d+)$/m.exec(await (await fetch(`${h.url}/metrics`)).text())?.[1]);
      const limited = [...a.app.registry.values()].filter((f) => f.concurrency !== undefined || f.executionRate !== undefined).length;
      expect(limited).toBeGreaterThanOrEqual(1);
      expect((await held(a)) + (await held(b))).toBe(limited);
      expect((await a.api('POST', '/api/flows/shared/stop')).status).toBe(200);
      await new Promise((r) => setTimeout(r, 800));
      expect(await ownerOf(env, 'shared')).toBe(holder);
      expect((await a.api('POST', '/api/flows/shared/start')).status).toBe(200);
      await waitFor(async () => (await b.api('GET', '/api/flows/shared')).body.status === 'started' && b.app.registry.get('shared')?.status === 'started', 5_000);
    }
    // The first instance stops (its hold, if it had one, given up): the other runs the flow's jobs.
    await a.close();
    instances.shift();
    const more = await Promise.all(Array.from({ length: 4 }, () => post(b)));
    expect(more.map((r) => r.status)).toEqual(Array(4).fill(200));
    const completedOnB = async () => ((await b.api('GET', '/api/executions?flowId=shared&status=completed&limit=100')).body.items as unknown[]).length;
    await waitFor(async () => (await completedOnB()) === 16, 10_000);
    expect(most.get('/shared')).toBe(1);
  });
});

// RabbitMQ: the holds spread over the instances. One instance alone takes every limited flow; a
// second one started under load gets its share, each flow moving only once its jobs on the first
// ended — never run by both at once.
describe.sequential.each(BACKENDS.filter(([, env]) => env.RABBITMQ_URI !== undefined))('%s: holds balanced over the instances', (_name, env) => {
  const instances: RunningHookd[] = [];
  afterAll(() => Promise.all(instances.map((h) => h.close())));

  it('an instance started later takes its share of the limited flows, handed over without a flow running on both', async () => {
    inProgress.clear();
    most.clear();
    const a = await startHookd({ WORKER_CONCURRENCY: '4', FLOW_REFRESH: '200ms', ...env });
    instances.push(a);
    const flows = ['bal1', 'bal2', 'bal3', 'bal4'];
    for (const id of flows) {
      expect((await a.api('PUT', `/api/flows/${id}`, { concurrency: 1, steps: [{ id: 'call', type: 'http', url: `http://127.0.0.1:${port}/${id}` }] })).status).toBe(201);
    }
    const limited = [...a.app.registry.values()].filter((f) => f.concurrency !== undefined || f.executionRate !== undefined).length;
    const held = async (h: RunningHookd) => Number(/^hookd_flows_held (\d+)$/m.exec(await (await fetch(`${h.url}/metrics`)).text())?.[1]);
    await waitFor(async () => (await held(a)) === limited, 5_000);
    // Load on every flow, then the second instance starts while it runs.
    const post = (id: string) => fetch(`${a.url}/hook/${id}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    const answers = await Promise.all(flows.flatMap((id) => Array.from({ length: 40 }, () => post(id))));
    expect(answers.map((r) => r.status)).toEqual(Array(160).fill(200));
    const b = await startHookd({ WORKER_CONCURRENCY: '4', FLOW_REFRESH: '200ms', ...env });
    instances.push(b);
    const share = Math.ceil(limited / 2);
    await waitFor(async () => {
      const [ha, hb] = [await held(a), await held(b)];
      return ha + hb === limited && ha <= share && hb <= share;
    }, 10_000);
    const completed = async (id: string) => ((await a.api('GET', `/api/executions?flowId=${id}&status=completed&limit=100`)).body.items as unknown[]).length;
    console.log('balanced with', await Promise.all(flows.map(completed)), 'of 40 completed');
    await waitFor(async () => (await Promise.all(flows.map(completed))).every((n) => n === 40), 20_000);
    // Now both run flows; more jobs, spread over both instances' ingress.
    const more = await Promise.all(flows.flatMap((id, i) => Array.from({ length: 4 }, () => fetch(`${(i % 2 ? a : b).url}/hook/${id}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }))));
    expect(more.map((r) => r.status)).toEqual(Array(16).fill(200));
    await waitFor(async () => (await Promise.all(flows.map(completed))).every((n) => n === 44), 20_000);
    for (const id of flows) expect(most.get(`/${id}`)).toBe(1);
  });
});

/** The holder of a limited flow (RabbitMQ mode): its row in flow_owners, if any. */
async function ownerOf(env: Record<string, string>, flowId: string): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: env.DATABASE_URL });
  await client.connect();
  try {
    const { rows } = await client.query(`SELECT owner FROM "${env.DATABASE_SCHEMA}".flow_owners WHERE flow_id = $1`, [flowId]);
    return (rows[0] as { owner: string } | undefined)?.owner;
  } finally {
    await client.end();
  }
}
