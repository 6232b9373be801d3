import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { FINAL_STATUSES, MESSAGE_INPUT, type Execution } from '../../src/core/execution.js';
import { withMessageInputs } from '../../src/api/message-inputs.js';
import type { Flow, StepDef } from '../../src/core/flow.js';
import type { ReceivedMessage } from '../../src/core/message.js';
import { preciseNow } from '../../src/core/clock.js';
import { createFlowRunner, type FlowRunner, type FlowRunnerOptions, type StepStartedEvent } from '../../src/flow/runner.js';
import { isTruncated } from '../../src/flow/truncate.js';
import type { Backend } from '../../src/store/backend.js';
import type { ExecutionStore, RequestStore } from '../../src/store/contracts.js';
import type { Consumer, Delivery, JobHandler, Queue } from '../../src/queue/contract.js';
import { unavailable } from '../../src/core/errors.js';
import { openSqliteBackend } from '../../src/store/sqlite/index.js';

// ---------------------------------------------------------------------------------------------
// A real receiver on loopback: each path has its own behaviour; every call is recorded.

interface Call {
  path: string;
  method: string;
  headers: IncomingHttpHeaders;
  body: string;
  at: number;
}

type Behaviour = (call: Call, res: ServerResponse, nth: number) => void;

let receiver: Server;
let base: string;
const calls = new Map<string, Call[]>();
const behaviours = new Map<string, Behaviour>();

const ok: Behaviour = (call, res) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ received: call.body.length }));
};
const failTimes =
  (n: number): Behaviour =>
  (call, res, nth) => {
    if (nth <= n) {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`failure ${nth}`);
    } else ok(call, res, nth);
  };
/** Answers as `then` does, once open() was called: the test acts while the call is in flight. */
function held(then: Behaviour): { behaviour: Behaviour; open(): void } {
  let release!: () => void;
  const opened = new Promise<void>((r) => (release = r));
  return { behaviour: (call, res, nth) => void opened.then(() => then(call, res, nth)), open: () => release() };
}
const slow =
  (ms: number): Behaviour =>
  (call, res, nth) => {
    setTimeout(() => ok(call, res, nth), ms);
  };

beforeAll(async () => {
  receiver = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '/';
      const call: Call = { path, method: req.method ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), at: preciseNow() };
      const list = calls.get(path) ?? [];
      list.push(call);
      calls.set(path, list);
      (behaviours.get(path) ?? ok)(call, res, list.length);
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
});

afterAll(async () => {
  receiver.closeAllConnections();
  await new Promise<void>((resolve) => receiver.close(() => resolve()));
});

// ---------------------------------------------------------------------------------------------
// One backend (SQLite file in a temp dir) and one runner per test.

interface Harness {
  backend: Backend;
  flows: Map<string, Flow>;
  runner: FlowRunner;
  started: StepStartedEvent[];
  newRunner(overrides?: Partial<FlowRunnerOptions>): FlowRunner;
}

const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

let pathSeq = 0;
/** A receiver path unique to the calling test. */
function receiverPath(name: string, behaviour: Behaviour = ok): { url: string; path: string; calls: () => Call[] } {
  const path = `/${name}-${++pathSeq}`;
  behaviours.set(path, behaviour);
  return { url: `${base}${path}`, path, calls: () => calls.get(path) ?? [] };
}

async function setupBackend(overrides: Partial<FlowRunnerOptions> = {}): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'hookd-runner-'));
  const backend = await openSqliteBackend({ path: join(dir, 'hookd.db'), leaseMs: 5_000 });
  const flows = new Map<string, Flow>();
  const started: StepStartedEvent[] = [];
  const runners: FlowRunner[] = [];
  const newRunner = (more: Partial<FlowRunnerOptions> = {}): FlowRunner => {
    const runner = createFlowRunner({
      requests: backend.requests,
      executions: backend.executions,
      queue: backend.queue,
      getFlow: (id) => flows.get(id),
      logger: pino({ level: process.env.LOG_LEVEL ?? 'silent' }),
      concurrency: 4,
      executionDataLimit: 16_384,
      defaultMaxAttempts: 5,
      defaultBackoffMs: 50,
      maxBackoffMs: 1_000,
      onStepStarted: (e) => started.push(e),
      ...overrides,
      ...more,
    });
    runners.push(runner);
    return runner;
  };
  const runner = newRunner();
  cleanups.push(async () => {
    for (const r of runners) await r.stop({ graceMs: 0 });
    await backend.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { backend, flows, runner, started, newRunner };
}

function flow(
  id: string,
  steps: Array<{ type: StepDef['type']; id?: string; [key: string]: unknown }>,
  extra: Partial<Flow> = {},
): Flow {
  const now = new Date().toISOString();
  return {
    id,
    name: id,
    status: 'started',
    trigger: { type: 'webhook' },
    steps: steps.map((s, i) => ({ ...s, id: s.id ?? `step-${i + 1}` }) as StepDef),
    createdAt: now,
    updatedAt: now,
    ...extra,
  };
}

function message(flowId: string, body: unknown): ReceivedMessage {
  const raw = Buffer.from(JSON.stringify(body));
  return {
    id: uuidv7(),
    flowId,
    receivedAt: preciseNow(),
    method: 'POST',
    path: '',
    query: {},
    headers: { 'content-type': 'application/json' },
    contentType: 'application/json',
    body,
    rawBody: raw,
    clientIp: '127.0.0.1',
  };
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function finalExecution(h: Harness, requestId: string, timeoutMs?: number): Promise<Execution> {
  return waitFor(
    `a final execution of ${requestId}`,
    async () => {
      const e = await h.backend.executions.getByRequest(requestId);
      return e !== undefined && FINAL_STATUSES.has(e.status) ? e : undefined;
    },
    timeoutMs,
  );
}

/** The flow's dead letters, once there are some. */
function deadLetters(h: Harness, flowId: string) {
  return waitFor(`dead letters of ${flowId}`, async () => {
    const list = await h.backend.queue.deadLetters({ flowId, limit: 10 });
    return list.length > 0 ? list : undefined;
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------

describe.each([
  { writes: 'chained', orderedWrites: false },
  { writes: 'pipelined', orderedWrites: true },
])('flow runner on the SQLite backend ($writes writes)', ({ orderedWrites }) => {
  const setup = (overrides: Partial<FlowRunnerOptions> = {}) => setupBackend({ orderedWrites, ...overrides });

  it('runs transform → http → log and records every step', async () => {
    const h = await setup({ executionDataLimit: 4_096 });
    const target = receiverPath('orders');
    h.flows.set(
      'orders',
      flow('orders', [
        { id: 'shape', type: 'transform', expression: '{ "orderId": body.order.id, "total": $sum(body.order.items.price), "note": body.note }' },
        { id: 'send', type: 'http', url: target.url, headers: { 'x-shop': 'demo' } },
        { id: 'audit', type: 'log', message: 'order forwarded' },
      ]),
    );
    const note = 'n'.repeat(10_000); // larger than executionDataLimit
    const m = message('orders', { order: { id: 42, items: [{ price: 5 }, { price: 7.5 }] }, note });
    await expect(h.backend.requests.accept(m, { maxAttempts: 5 })).resolves.toEqual({ kind: 'stored' });
    h.runner.start();

    const e = await finalExecution(h, m.id);
    expect(e.status).toBe('completed');
    expect(e.flowId).toBe('orders');
    expect(e.attempts).toBe(1);
    expect(e.error).toBeUndefined();
    expect(e.finishedAt).toBeGreaterThanOrEqual(e.createdAt);
    expect(e.queueDelayMs).toBeGreaterThanOrEqual(0);
    expect(e.queueDelayMs).toBeLessThan(5_000);
    expect(e.steps.map((s) => [s.stepId, s.type, s.status, s.attempt])).toEqual([
      ['shape', 'transform', 'completed', 1],
      ['send', 'http', 'completed', 1],
      ['audit', 'log', 'completed', 1],
    ]);
    for (const s of e.steps) expect(s.finishedAt).toBeGreaterThanOrEqual(s.startedAt);
    // Sub-millisecond precision survives the store. One time can be a whole millisecond by chance
    // (an epoch double has ≈ 0.24 µs steps: 1 in 4096; CI met it once); all three, practically never.
    expect(e.steps.some((s) => s.startedAt % 1 !== 0)).toBe(true);
    expect(e.steps[1]!.startedAt).toBeGreaterThanOrEqual(e.steps[0]!.finishedAt);

    // Records are truncated to the limit (marked), the receiver still got the full value.
    const [shape, send, audit] = e.steps as [Execution['steps'][number], Execution['steps'][number], Execution['steps'][number]];
    // The first input is the message itself: stored once, with the request, and derived for the
    // API, truncated like any record.
    expect(shape.input).toBe(MESSAGE_INPUT);
    const [shown] = await withMessageInputs([e], h.backend.requests, 4_096);
    const shownInput = shown!.steps[0]!.input;
    expect(isTruncated(shownInput)).toBe(true);
    expect(Buffer.byteLength(shownInput!)).toBeLessThanOrEqual(4_096);
    expect(JSON.parse(shownInput!)).toMatchObject({ $truncated: true, preview: expect.stringContaining(`"id":"${m.id}"`) });
    expect(shown!.steps.slice(1)).toEqual(e.steps.slice(1));
    expect(isTruncated(shape.output)).toBe(true);
    expect(JSON.parse(send.output!)).toMatchObject({ status: 200, body: { received: expect.any(Number) } });
    expect(audit.input).toBe(send.output);

    const received = target.calls();
    expect(received).toHaveLength(1);
    expect(received[0]!.method).toBe('POST');
    expect(received[0]!.headers['idempotency-key']).toBe(`${m.id}:send`);
    expect(received[0]!.headers['content-type']).toBe('application/json');
    expect(received[0]!.headers['x-shop']).toBe('demo');
    expect(JSON.parse(received[0]!.body)).toEqual({ orderId: 42, total: 12.5, note });

    // The step-start hook saw the first step, with the request's receive time.
    const first = h.started.find((s) => s.requestId === m.id && s.stepIndex === 0)!;
    expect(first.stepId).toBe('shape');
    expect(first.receivedAt).toBe(m.receivedAt);
    expect(first.startedAt - first.receivedAt).toBeCloseTo(e.queueDelayMs!, 6);

    await waitFor('an empty queue', async () => {
      const st = await h.backend.queue.stats();
      return st.ready + st.inFlight + st.delayed === 0 ? st : undefined;
    });
  });

  it('ends a filtered message as filtered and lets a matching one through', async () => {
    const h = await setup();
    const target = receiverPath('filtered');
    h.flows.set(
      'only-paid',
      flow('only-paid', [
        { id: 'paid?', type: 'filter', expression: 'body.status = "paid"' },
        { id: 'send', type: 'http', url: target.url, body: 'body' },
      ]),
    );
    const dropped = message('only-paid', { status: 'pending' });
    const kept = message('only-paid', { status: 'paid', amount: 3 });
    await h.backend.requests.accept(dropped, { maxAttempts: 5 });
    await h.backend.requests.accept(kept, { maxAttempts: 5 });
    h.runner.start();

    const d = await finalExecution(h, dropped.id);
    expect(d.status).toBe('filtered');
    expect(d.steps.map((s) => [s.stepId, s.status])).toEqual([['paid?', 'filtered']]);
    expect(d.steps[0]!.output).toBeUndefined();
    expect(d.finishedAt).toBeDefined();

    const k = await finalExecution(h, kept.id);
    expect(k.status).toBe('completed');
    expect(k.steps.map((s) => [s.stepId, s.status])).toEqual([
      ['paid?', 'completed'],
      ['send', 'completed'],
    ]);
    expect(target.calls().map((c) => JSON.parse(c.body) as unknown)).toEqual([{ status: 'paid', amount: 3 }]);
    expect(await h.backend.queue.deadLetters({ limit: 10 })).toEqual([]);
  });

  it('retries a failing http step with growing backoff and resumes after the completed steps', async () => {
    const h = await setup({ random: () => 0.5 }); // no jitter: delays of exactly 100 and 200 ms
    const target = receiverPath('flaky', failTimes(2));
    h.flows.set(
      'flaky',
      flow(
        'flaky',
        [
          { id: 'shape', type: 'transform', expression: '{ "n": body.n }' },
          { id: 'send', type: 'http', url: target.url },
        ],
        { retry: { backoffMs: 100, maxBackoffMs: 5_000 } },
      ),
    );
    const m = message('flaky', { n: 1 });
    await h.backend.requests.accept(m, { maxAttempts: 5 });
    h.runner.start();

    const e = await finalExecution(h, m.id);
    expect(e.status).toBe('completed');
    expect(e.attempts).toBe(3);
    expect(e.error).toBeUndefined();
    // The transform ran once: redeliveries resumed at the cursor (the http step).
    expect(e.steps.map((s) => [s.stepId, s.status, s.attempt])).toEqual([
      ['shape', 'completed', 1],
      ['send', 'failed', 1],
      ['send', 'failed', 2],
      ['send', 'completed', 3],
    ]);
    expect(e.steps[1]!.error).toMatch(/^step "send" \(http\): POST .* answered 500 .*failure 1$/);
    expect(e.steps[2]!.error).toMatch(/failure 2$/);

    const received = target.calls();
    expect(received).toHaveLength(3);
    expect(new Set(received.map((c) => c.headers['idempotency-key']))).toEqual(new Set([`${m.id}:send`]));
    expect(received.every((c) => c.body === '{"n":1}')).toBe(true);
    const gap1 = received[1]!.at - received[0]!.at;
    const gap2 = received[2]!.at - received[1]!.at;
    // Each at least its nominal delay (100 ms, then 200 ms: growing). Not gap2 > gap1: on a busy
    // machine the first redelivery can come late by more than the second's extra 100 ms.
    expect(gap1).toBeGreaterThanOrEqual(99);
    expect(gap2).toBeGreaterThanOrEqual(199);
    expect(await h.backend.queue.deadLetters({ limit: 10 })).toEqual([]);
  });

  it('dead-letters after maxAttempts and marks the execution dead', async () => {
    const h = await setup();
    const target = receiverPath('down', failTimes(Infinity));
    h.flows.set('down', flow('down', [{ id: 'send', type: 'http', url: target.url }], { retry: { backoffMs: 20 } }));
    const m = message('down', { n: 2 });
    await h.backend.requests.accept(m, { maxAttempts: 3 });
    h.runner.start();

    const e = await finalExecution(h, m.id);
    expect(e.status).toBe('dead');
    expect(e.attempts).toBe(3);
    expect(e.error).toMatch(/^step "send" \(http\): POST .* answered 500 .*failure 3$/);
    expect(e.finishedAt).toBeDefined();
    expect(e.steps.map((s) => [s.status, s.attempt])).toEqual([
      ['failed', 1],
      ['failed', 2],
      ['failed', 3],
    ]);
    expect(target.calls()).toHaveLength(3);

    const dead = await deadLetters(h, 'down');
    expect(dead).toHaveLength(1);
    expect(dead[0]).toMatchObject({ flowId: 'down', requestId: m.id, attempts: 3, maxAttempts: 3 });
    expect(dead[0]!.lastError).toMatch(/failure 3/);
    await sleep(150);
    expect(target.calls()).toHaveLength(3); // nothing more after death
  });

  it('a retrying execution says which attempt failed and when the next one is due (and a Retry-After that set it)', async () => {
    const h = await setup({ random: () => 0.5 }); // no jitter
    const retrying = (requestId: string) =>
      waitFor(`a retrying execution of ${requestId}`, async () => {
        const e = await h.backend.executions.getByRequest(requestId);
        return e?.status === 'retrying' ? e : undefined;
      });
    const down = receiverPath('later', failTimes(Infinity));
    h.flows.set('later', flow('later', [{ id: 'send', type: 'http', url: down.url }], { retry: { backoffMs: 90_000, maxBackoffMs: 3_600_000 } }));
    const limited = receiverPath('limited', (_call, res) => {
      res.writeHead(429, { 'retry-after': '7200', 'content-type': 'text/plain' });
      res.end('slow down');
    });
    h.flows.set('limited', flow('limited', [{ id: 'send', type: 'http', url: limited.url }], { retry: { backoffMs: 1_000, maxBackoffMs: 3_600_000 } }));
    const a = message('later', { n: 1 });
    const b = message('limited', { n: 2 });
    await h.backend.requests.accept(a, { maxAttempts: 5 });
    await h.backend.requests.accept(b, { maxAttempts: 5 });
    h.runner.start();
    const ea = await retrying(a.id);
    expect(ea.error).toMatch(/^step "send" \(http\): POST .* answered 500 .*failure 1 — attempt 1 of 5 failed; next attempt in 1m 30s$/);
    // The step's own record keeps the failure alone, and as its output the request sent and the answer.
    expect(ea.steps[0]!.error).toMatch(/failure 1$/);
    expect(JSON.parse(ea.steps[0]!.output!)).toMatchObject({ request: { method: 'POST', url: down.url }, status: 500, body: 'failure 1' });
    const eb = await retrying(b.id);
    expect(eb.error).toMatch(/answered 429 Too Many Requests: slow down — attempt 1 of 5 failed; next attempt in 1h \(the answer's Retry-After, 2h, capped at maxBackoffMs\)$/);
  });

  it('dead-letters at once on an expression error (no retry can fix it)', async () => {
    const h = await setup();
    const target = receiverPath('never');
    h.flows.set(
      'broken',
      flow('broken', [
        { id: 'math', type: 'transform', expression: 'body.name + 1' },
        { id: 'send', type: 'http', url: target.url },
      ]),
    );
    const m = message('broken', { name: 'ada' });
    await h.backend.requests.accept(m, { maxAttempts: 5 });
    h.runner.start();

    const e = await finalExecution(h, m.id);
    expect(e.status).toBe('dead');
    expect(e.attempts).toBe(1);
    expect(e.error).toMatch(/^step "math" \(transform\): JSONata evaluation failed: .*T2001/);
    expect(e.steps.map((s) => [s.stepId, s.status])).toEqual([['math', 'failed']]);
    // The execution is marked dead first, then the job is dead-lettered.
    const dead = await deadLetters(h, 'broken');
    expect(dead.map((d) => [d.requestId, d.attempts])).toEqual([[m.id, 1]]);
    expect(target.calls()).toHaveLength(0);
  });

  it('a retried dead letter of a flow of pure steps resumes at the failed step: its records kept, earlier steps not run again', async () => {
    const h = await setup();
    h.flows.set(
      'pure',
      flow('pure', [
        { id: 'a', type: 'transform', expression: '{"v": body.x}' },
        { id: 'b', type: 'transform', expression: '$number(v) + 1' },
      ]),
    );
    const m = message('pure', { x: 'abc' });
    await h.backend.requests.accept(m, { maxAttempts: 5 });
    h.runner.start();
    const dead = await finalExecution(h, m.id);
    expect(dead.status).toBe('dead');
    expect(dead.steps.map((s) => [s.stepId, s.status, s.attempt])).toEqual([['a', 'completed', 1], ['b', 'failed', 1]]);
    // Fixed (same step ids), then retried.
    h.flows.set('pure', flow('pure', [{ id: 'a', type: 'transform', expression: '{"v": body.x}' }, { id: 'b', type: 'transform', expression: '{"w": v}' }]));
    const [job] = await deadLetters(h, 'pure');
    await h.backend.flows.put(h.flows.get('pure')!); // a dead letter is retried while its flow exists in the store
    expect(await h.backend.queue.retryDead(job!.id)).toBe(true);
    const e = await waitFor('the resumed execution', async () => {
      const x = await h.backend.executions.getByRequest(m.id);
      return x?.status === 'completed' ? x : undefined;
    });
    expect(e.id).toBe(dead.id);
    expect(e.steps.map((s) => [s.stepId, s.status, s.attempt])).toEqual([['a', 'completed', 1], ['b', 'failed', 1], ['b', 'completed', 1]]);
    expect(e.error).toBeUndefined();
    // Only the first delivery is one (the queue-delay metric counts those): not the retried dead letter.
    expect(h.started.filter((x) => x.requestId === m.id).map((x) => [x.stepId, x.firstDelivery])).toEqual([['a', true], ['b', true], ['b', false]]);
  });

  it('dead-letters at once when a step does not compile, naming the step', async () => {
    const h = await setup();
    h.flows.set('syntax', flow('syntax', [{ id: 'log', type: 'log' }, { id: 'bad', type: 'transform', expression: '{ "a": ' }]));
    const m = message('syntax', {});
    await h.backend.requests.accept(m, { maxAttempts: 5 });
    h.runner.start();
    const e = await finalExecution(h, m.id);
    expect(e.status).toBe('dead');
    expect(e.error).toMatch(/^flow syntax cannot run: step "bad" \(transform\): Invalid JSONata expression/);
    expect(e.steps.map((s) => [s.stepId, s.status])).toEqual([['bad', 'failed']]);
    expect(await deadLetters(h, 'syntax')).toHaveLength(1);
  });

  it('dead-letters the jobs of a deleted flow with a clear error', async () => {
    const h = await setup();
    const m = message('gone', { a: 1 });
    await h.backend.requests.accept(m, { maxAttempts: 5 });
    h.runner.start();
    const dead = await deadLetters(h, 'gone');
    expect(dead[0]).toMatchObject({ requestId: m.id });
    expect(dead[0]!.lastError).toMatch(/flow gone does not exist/);
    expect(await h.backend.executions.getByRequest(m.id)).toBeUndefined();
  });

  it('keeps the messages of a stopped flow, past maxAttempts, and runs them once it is started', async () => {
    const h = await setup({ stoppedFlowRecheckMs: 30 });
    const target = receiverPath('paused');
    const def = flow('paused', [{ id: 'send', type: 'http', url: target.url }], { status: 'stopped', retry: { backoffMs: 10 } });
    h.flows.set('paused', def);
    const m = message('paused', { later: true });
    await h.backend.requests.accept(m, { maxAttempts: 2 });
    h.runner.start();

    await sleep(400); // many recheck cycles: more deliveries than maxAttempts
    expect(target.calls()).toHaveLength(0);
    expect(await h.backend.executions.getByRequest(m.id)).toBeUndefined();
    expect(await h.backend.queue.deadLetters({ limit: 10 })).toEqual([]);
    const st = await h.backend.queue.stats();
    expect(st.ready + st.delayed + st.inFlight).toBe(1);

    h.flows.set('paused', { ...def, status: 'started', updatedAt: new Date().toISOString() });
    const e = await finalExecution(h, m.id);
    expect(e.status).toBe('completed');
    expect(target.calls()).toHaveLength(1);
  });

  it('gives a job back without spending an attempt while the store is unavailable', async () => {
    const h = await setup();
    await h.runner.stop({ graceMs: 0 });
    // The store's reads fail with 503 twice (a database outage) for a job with one attempt.
    let failures = 2;
    const requests = Object.create(h.backend.requests) as RequestStore;
    requests.getForExecution = async (id) => {
      if (failures-- > 0) throw unavailable('store', new Error('connection refused'));
      return h.backend.requests.getForExecution(id);
    };
    const target = receiverPath('outage');
    h.flows.set('outage', flow('outage', [{ id: 'send', type: 'http', url: target.url }]));
    const m = message('outage', { n: 1 });
    await h.backend.requests.accept(m, { maxAttempts: 1 });
    const t0 = Date.now();
    h.newRunner({ requests }).start();

    const e = await finalExecution(h, m.id, 15_000);
    expect(e).toMatchObject({ status: 'completed', attempts: 1 });
    expect(failures).toBeLessThan(0);
    // Each 503 held its slot for the error's Retry-After (1 s) before giving the job back.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2_000);
    expect(target.calls()).toHaveLength(1);
    expect(await h.backend.queue.deadLetters({ limit: 10 })).toEqual([]);
  });

  it('dead-letters a delivery the queue calls exhausted (a job that keeps killing its worker) without running it, and ends its execution dead', async () => {
    const h = await setup();
    await h.runner.stop({ graceMs: 0 });
    const target = receiverPath('poison');
    h.flows.set('poison', flow('poison', [{ id: 'send', type: 'http', url: target.url }]));
    const m = message('poison', { n: 1 });
    await h.backend.requests.accept(m, { maxAttempts: 5 });
    // Its execution was begun by an earlier delivery that took its worker down.
    await h.backend.executions.begin({ requestId: m.id, flowId: 'poison', attempt: 1, now: Date.now() });
    const why = 'delivered 21 times without being settled (its worker crashed or lost its channel each time)';
    const queue = Object.create(h.backend.queue) as Queue;
    queue.consume = (handler, options) => h.backend.queue.consume((d) => handler(Object.assign(Object.create(d) as Delivery, { exhausted: why })), options);
    h.newRunner({ queue }).start();
    const e = await finalExecution(h, m.id, 10_000);
    expect(e).toMatchObject({ status: 'dead', error: why });
    expect(target.calls()).toHaveLength(0);
    const dead = await h.backend.queue.deadLetters({ limit: 10 });
    expect(dead.map((x) => [x.requestId, x.lastError])).toEqual([[m.id, why]]);
  });

  it('holds the job of a flow with a concurrency limit through a store outage and handles it again in place: it keeps its turn', async () => {
    const h = await setup();
    await h.runner.stop({ graceMs: 0 });
    const target = receiverPath('ordered');
    h.flows.set('ordered', flow('ordered', [{ id: 'send', type: 'http', url: target.url }], { concurrency: 1 }));
    const first = message('ordered', { n: 1 });
    const second = message('ordered', { n: 2 });
    await h.backend.requests.accept(first, { maxAttempts: 1 });
    await h.backend.requests.accept(second, { maxAttempts: 1 });
    // The first job's request cannot be read twice (a database outage).
    let failures = 2;
    const requests = Object.create(h.backend.requests) as RequestStore;
    requests.getForExecution = async (id, job) => {
      if (id === first.id && failures-- > 0) throw unavailable('store', new Error('connection refused'));
      return h.backend.requests.getForExecution(id, job);
    };
    h.newRunner({ requests, flowLimits: () => new Map([['ordered', 1]]) }).start();
    expect(await finalExecution(h, second.id, 15_000)).toMatchObject({ status: 'completed', attempts: 1 });
    expect(await finalExecution(h, first.id, 1_000)).toMatchObject({ status: 'completed', attempts: 1 });
    expect(failures).toBeLessThan(0);
    // Given back, the first would have gone behind the second (its turn is its run_at, now later).
    const sent = target.calls().map((c) => JSON.parse(c.body) as { n?: number; body?: { n: number } });
    expect(sent.map((b) => b.n ?? b.body?.n)).toEqual([1, 2]);
  });

  it('a step after an http call reads the message the flow received as $message (its input is the answer)', async () => {
    const h = await setup();
    const target = receiverPath('message-after-call', (_call, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ invoice: 'inv-9' }));
    });
    const second = receiverPath('message-second-call');
    h.flows.set(
      'message-binding',
      flow('message-binding', [
        { id: 'create', type: 'http', url: target.url },
        { id: 'shape', type: 'transform', expression: '{ "order": $message.body.n, "invoice": body.invoice }' },
        { id: 'notify', type: 'http', url: second.url, body: '$merge([$, { "shop": $message.headers."x-shop" }])' },
      ]),
    );
    const m = message('message-binding', { n: 7 });
    m.headers = { ...m.headers, 'x-shop': 'eu' };
    await h.backend.requests.accept(m, { maxAttempts: 3 });
    h.runner.start();
    const e = await finalExecution(h, m.id);
    expect(e.status).toBe('completed');
    expect(JSON.parse(e.steps[1]!.output!)).toEqual({ order: 7, invoice: 'inv-9' });
    expect(second.calls().map((c) => JSON.parse(c.body) as unknown)).toEqual([{ order: 7, invoice: 'inv-9', shop: 'eu' }]);
  });

  it('does not ack a job once one of its execution writes failed; the redelivery completes it', async () => {
    const h = await setup();
    await h.runner.stop({ graceMs: 0 });
    // The first step record fails (a disk error, say); the writes behind it are skipped.
    let failures = 1;
    const executions = Object.create(h.backend.executions) as ExecutionStore;
    executions.recordStep = async (...args) => {
      if (failures-- > 0) throw new Error('SQLITE_IOERR: disk I/O error');
      return h.backend.executions.recordStep(...args);
    };
    const target = receiverPath('write-fails');
    h.flows.set('write-fails', flow('write-fails', [{ id: 'send', type: 'http', url: target.url }, { id: 'note', type: 'log' }]));
    const m = message('write-fails', { n: 1 });
    await h.backend.requests.accept(m, { maxAttempts: 3 });
    h.newRunner({ executions }).start();

    const e = await finalExecution(h, m.id);
    expect(e.status).toBe('completed');
    expect(e.attempts).toBe(2);
    expect(e.steps.map((st) => st.stepId)).toEqual(['send', 'note']);
  });

  it('resumes a redelivered job at its cursor and never creates a second execution', async () => {
    const h = await setup();
    const target = receiverPath('slow', slow(400));
    h.flows.set(
      'resume',
      flow('resume', [
        { id: 'shape', type: 'transform', expression: '{ "v": body.v * 2 }' },
        { id: 'send', type: 'http', url: target.url },
        { id: 'done', type: 'log' },
      ]),
    );
    const m = message('resume', { v: 21 });
    await h.backend.requests.accept(m, { maxAttempts: 5 });
    h.runner.start();

    // The http call is in flight: stop without grace, the job is released mid-step.
    await waitFor('the first call', async () => (target.calls().length > 0 ? true : undefined));
    await h.runner.stop({ graceMs: 0 });
    const mid = await h.backend.executions.getByRequest(m.id);
    expect(mid?.status).toBe('running');
    expect(mid?.steps.map((s) => [s.stepId, s.status])).toEqual([['shape', 'completed']]);
    expect(mid?.cursor).toEqual({ nextStep: 1, nextStepId: 'send', input: { v: 42 } });

    // A second runner (another process, after a restart) gets the job again.
    const second = h.newRunner();
    second.start();
    const e = await finalExecution(h, m.id);
    expect(e.status).toBe('completed');
    expect(e.id).toBe(mid!.id);
    expect(e.steps.map((s) => s.stepId)).toEqual(['shape', 'send', 'done']); // shape not re-run
    expect(e.steps[1]!.attempt).toBeGreaterThanOrEqual(1);
    // At-least-once: the interrupted call was made again, with the same idempotency key.
    const received = target.calls();
    expect(received).toHaveLength(2);
    expect(received.map((c) => c.headers['idempotency-key'])).toEqual([`${m.id}:send`, `${m.id}:send`]);
    expect(received.map((c) => c.body)).toEqual(['{"v":42}', '{"v":42}']);

    // A repeat delivery of the finished request (replayed job) is acknowledged without a new run.
    await h.backend.queue.enqueue({ flowId: 'resume', requestId: m.id, maxAttempts: 5 });
    await waitFor('the repeat to be consumed', async () => {
      const st = await h.backend.queue.stats();
      return st.ready + st.inFlight + st.delayed === 0 ? st : undefined;
    });
    const executions = await h.backend.executions.list({ flowId: 'resume', limit: 10 });
    expect(executions.map((x) => x.id)).toEqual([e.id]);
    expect((await h.backend.executions.getByRequest(m.id))?.status).toBe('completed');
    expect(target.calls()).toHaveLength(2);
  });

  it('lets running executions finish within the stop grace period', async () => {
    const h = await setup();
    const target = receiverPath('graceful', slow(200));
    h.flows.set('graceful', flow('graceful', [{ id: 'send', type: 'http', url: target.url }]));
    const m = message('graceful', { a: 1 });
    await h.backend.requests.accept(m, { maxAttempts: 5 });
    h.runner.start();
    await waitFor('the call', async () => (target.calls().length > 0 ? true : undefined));
    await h.runner.stop({ graceMs: 5_000 });
    const e = await h.backend.executions.getByRequest(m.id);
    expect(e?.status).toBe('completed');
    const st = await h.backend.queue.stats();
    expect(st.ready + st.inFlight + st.delayed + st.dead).toBe(0);
    expect(target.calls()).toHaveLength(1);
  });

  it('a flow edited while an execution waits resumes it at the same step by id; a removed step is a dead letter, never a skip', async () => {
    const h = await setup();
    const a = receiverPath('edit-a');
    /**
     * Flow `id` of steps A then `second` (failing once): while the call to `second` is held, the
     * flow is replaced by `edit(steps)`; the call then fails and the job waits for its retry.
     */
    const editedWhileWaiting = async (id: string, second: string, edit: (steps: StepDef[]) => Array<{ type: StepDef['type']; id?: string; [key: string]: unknown }>) => {
      const gate = held(failTimes(1));
      const target = receiverPath(`edit-${second}`, gate.behaviour);
      const steps = [
        { id: 'A', type: 'http' as const, url: a.url },
        { id: second, type: 'http' as const, url: target.url },
      ] as StepDef[];
      h.flows.set(id, flow(id, steps, { retry: { backoffMs: 400 } }));
      const m = message(id, { id });
      await h.backend.requests.accept(m, { maxAttempts: 5 });
      h.runner.start();
      await waitFor(`the call of ${second}`, async () => (target.calls().length === 1 ? true : undefined));
      h.flows.set(id, flow(id, edit(steps), { retry: { backoffMs: 400 } }));
      gate.open();
      return { execution: await finalExecution(h, m.id), target };
    };

    // A step put in front: the retry runs B, not A again.
    const edited = await editedWhileWaiting('edited', 'B', (steps) => [{ id: 'X', type: 'transform', expression: '{ "x": true }' }, ...steps]);
    expect(edited.execution.status).toBe('completed');
    expect(a.calls()).toHaveLength(1);
    expect(edited.target.calls()).toHaveLength(2);
    expect(edited.execution.steps.map((st) => [st.stepId, st.status])).toEqual([['A', 'completed'], ['B', 'failed'], ['B', 'completed']]);

    // The waiting step removed: a dead letter that says why (it was marked completed, C never delivered).
    const shrunk = await editedWhileWaiting('shrunk', 'C', (steps) => [steps[0]!]);
    expect(shrunk.execution.status).toBe('dead');
    expect(shrunk.execution.error).toMatch(/step "C", where this execution was to resume, no longer exists/);
    expect(shrunk.target.calls()).toHaveLength(1);
  });

  it('stop() lets the running step finish and starts no further step: the job is handed back at the next one, no attempt spent', async () => {
    const h = await setup();
    const firstHeld = held(ok);
    const first = receiverPath('stop-first', firstHeld.behaviour);
    const second = receiverPath('stop-second');
    h.flows.set('stopping', flow('stopping', [
      { id: 'one', type: 'http', url: first.url },
      { id: 'two', type: 'http', url: second.url },
    ]));
    const m = message('stopping', { n: 1 });
    await h.backend.requests.accept(m, { maxAttempts: 5 });
    h.runner.start();
    await waitFor('the first call', async () => (first.calls().length === 1 ? true : undefined));
    // Stopping while step one is in flight; it finishes within the grace.
    const stopping = h.runner.stop({ graceMs: 5_000 });
    firstHeld.open();
    await stopping;
    expect(second.calls()).toHaveLength(0);
    const mid = await h.backend.executions.getByRequest(m.id);
    expect(mid?.steps.map((st) => [st.stepId, st.status])).toEqual([['one', 'completed']]);
    expect(mid?.cursor?.nextStepId).toBe('two');
    expect(await h.backend.queue.stats()).toMatchObject({ ready: 1, inFlight: 0, dead: 0 });

    const next = h.newRunner();
    next.start();
    const e = await finalExecution(h, m.id);
    expect(e.status).toBe('completed');
    expect([first.calls().length, second.calls().length]).toEqual([1, 1]);
    expect(e.steps.map((st) => [st.stepId, st.attempt])).toEqual([['one', 1], ['two', 1]]); // no attempt spent
  });

  it('a first delivery whose pure steps fail runs each of them once (recorded as run, not run again)', async () => {
    const h = await setup();
    h.flows.set('fails-pure', flow('fails-pure', [
      { id: 'shape', type: 'transform', expression: '{ "x": body.x }' },
      { id: 'say', type: 'log', message: 'once' },
      { id: 'boom', type: 'transform', expression: '$error("no")' },
    ]));
    const m = message('fails-pure', { x: 1 });
    await h.backend.requests.accept(m, { maxAttempts: 1 });
    h.runner.start();
    const e = await finalExecution(h, m.id);
    expect(e.status).toBe('dead');
    expect(e.steps.map((st) => [st.stepId, st.status])).toEqual([['shape', 'completed'], ['say', 'completed'], ['boom', 'failed']]);
    expect(h.started.filter((st) => st.requestId === m.id).map((st) => st.stepId)).toEqual(['shape', 'say', 'boom']);
  });

  it('resumes a dead execution at its cursor when its dead letter is retried', async () => {
    const h = await setup();
    let healthy = false;
    const target = receiverPath('revive', (call, res, nth) => {
      if (healthy) ok(call, res, nth);
      else failTimes(Infinity)(call, res, nth);
    });
    h.flows.set(
      'revive',
      flow(
        'revive',
        [
          { id: 'shape', type: 'transform', expression: '{ "x": body.x }' },
          { id: 'send', type: 'http', url: target.url },
        ],
        { retry: { backoffMs: 10 } },
      ),
    );
    const m = message('revive', { x: 'y' });
    await h.backend.requests.accept(m, { maxAttempts: 2 });
    h.runner.start();
    const dead = await finalExecution(h, m.id);
    expect(dead.status).toBe('dead');
    const [letter] = await deadLetters(h, 'revive');

    healthy = true;
    await h.backend.flows.put(h.flows.get('revive')!); // a dead letter is retried while its flow exists in the store
    await expect(h.backend.queue.retryDead(letter!.id)).resolves.toBe(true);
    const e = await waitFor('the revived execution', async () => {
      const x = await h.backend.executions.getByRequest(m.id);
      return x?.status === 'completed' ? x : undefined;
    });
    expect(e.id).toBe(dead.id);
    expect(e.error).toBeUndefined();
    expect(e.steps.map((s) => [s.stepId, s.status, s.attempt])).toEqual([
      ['shape', 'completed', 1],
      ['send', 'failed', 1],
      ['send', 'failed', 2],
      ['send', 'completed', 1], // attempts start again after retryDead
    ]);
    expect(target.calls()).toHaveLength(3);
  });

  it('runs many requests concurrently (up to the concurrency), each once; more than 10 calls at once raise no listener warning', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => void warnings.push(w.name);
    process.on('warning', onWarning);
    onTestFinished(() => void process.off('warning', onWarning));
    const h = await setup({ concurrency: 16 });
    let open = 0;
    let peak = 0;
    const target = receiverPath('many', (call, res, nth) => {
      open++;
      peak = Math.max(peak, open);
      setTimeout(() => {
        open--;
        ok(call, res, nth);
      }, 50);
    });
    h.flows.set('many', flow('many', [{ id: 'send', type: 'http', url: target.url, body: '{ "i": body.i }' }]));
    const ms = Array.from({ length: 40 }, (_, i) => message('many', { i }));
    await Promise.all(ms.map((m) => h.backend.requests.accept(m, { maxAttempts: 5 })));
    h.runner.start();
    for (const m of ms) expect((await finalExecution(h, m.id)).status).toBe('completed');
    expect(peak).toBeGreaterThan(10);
    expect(peak).toBeLessThanOrEqual(16);
    // Each call listens to the runner's stop signal while it runs (and stops listening after).
    expect(warnings).not.toContain('MaxListenersExceededWarning');
    const seenIs = target.calls().map((c) => (JSON.parse(c.body) as { i: number }).i);
    expect(seenIs.sort((a, b) => a - b)).toEqual(ms.map((_, i) => i));
  });
});

/**
 * The runner alone, on a queue that hands it one delivery and follows the Delivery contract
 * (returned: ack; threw: nack), with a request store whose read is `read`.
 */
function runOne(
  delivery: Delivery,
  o: { read: () => Promise<undefined>; maxAttempts: number; flow?: Flow; mayRun?: FlowRunnerOptions['mayRun'] },
): { runner: FlowRunner; handled: Promise<void> } {
  let handled: Promise<void> | undefined;
  const queue = {
    consume: (handler: JobHandler) => {
      handled = Promise.resolve(handler(delivery));
      return { inFlight: 0, stop: async () => {} } as unknown as Consumer;
    },
  } as unknown as Queue;
  const runner = createFlowRunner({
    requests: { getForExecution: o.read } as unknown as RequestStore,
    executions: {} as ExecutionStore,
    queue,
    getFlow: () => o.flow ?? flow('f', [{ type: 'log' }]),
    logger: pino({ level: 'silent' }),
    concurrency: 1,
    executionDataLimit: 1_000,
    defaultMaxAttempts: o.maxAttempts,
    defaultBackoffMs: 10,
    maxBackoffMs: 100,
    ...(o.mayRun ? { mayRun: o.mayRun } : {}),
  });
  runner.start();
  return { runner, handled: handled! };
}

/** A delivery of job j1 of flow f that records how it was settled in `settled`; `over` replaces any part. */
function fakeDelivery(settled: string[], over: Partial<Delivery> = {}): Delivery {
  return {
    job: { id: 'j1', flowId: 'f', requestId: 'r1', attempts: 1, maxAttempts: 3, enqueuedAt: Date.now() },
    ack: async () => void settled.push('ack'),
    nack: async () => {
      settled.push('nack');
      return 'retry';
    },
    deadLetter: async () => void settled.push('deadLetter'),
    requeue: async () => {
      settled.push('requeue');
      return true;
    },
    ...over,
  };
}

describe('flow runner: a job it could not settle', () => {
  it('holds a job the queue could not take back during a store outage, and gives it back later (no attempt spent, never acked)', async () => {
    const settled: string[] = [];
    let refusals = 2;
    const delivery = fakeDelivery(settled, {
      job: { id: 'j2', flowId: 'f', requestId: 'r2', attempts: 1, maxAttempts: 1, enqueuedAt: Date.now() },
      // A database queue in the database that is down: the release write fails twice.
      requeue: async () => {
        const ok = refusals-- <= 0;
        settled.push(ok ? 'requeue' : 'requeue refused');
        return ok;
      },
    });
    const { runner, handled } = runOne(delivery, { read: () => Promise.reject(unavailable('store', 'down')), maxAttempts: 1 });
    await handled;
    // Returned only once the job was given back; nothing else was settled.
    expect(settled).toEqual(['requeue refused', 'requeue refused', 'requeue']);
    await runner.stop({ graceMs: 0 });
  }, 15_000);

  it('is not acked: the handler throws when its nack fails, so the queue retries or redelivers it', async () => {
    const settled: string[] = [];
    const delivery = fakeDelivery(settled, {
      nack: async () => {
        settled.push('nack failed');
        throw new Error('queue write failed');
      },
    });
    // Not a 503 (a bug in a store): the runner nacks with backoff, and that nack fails.
    const { runner, handled } = runOne(delivery, { read: () => Promise.reject(new Error('a bug in a store')), maxAttempts: 3 });
    await expect(handled).rejects.toThrow('queue write failed');
    expect(settled).toEqual(['nack failed']);
    await runner.stop({ graceMs: 0 });
  });
});

describe('flow runner: a store outage, in the log', () => {
  it('jobs given back while the store is down: one line per flow per window, not one per job and redelivery', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    const handled: Array<Promise<void>> = [];
    const queue = {
      consume: (handler: JobHandler) => {
        // 40 jobs of one flow, each delivered again as soon as it is given back (RabbitMQ does).
        for (let i = 0; i < 40; i++) {
          const d = fakeDelivery([], { job: { id: `j${i}`, flowId: 'f', requestId: `r${i}`, attempts: 1, maxAttempts: 3, enqueuedAt: Date.now() } });
          handled.push(Promise.resolve(handler(d)).then(() => handler(d)));
        }
        return { inFlight: 0, stop: async () => {} } as unknown as Consumer;
      },
    } as unknown as Queue;
    const runner = createFlowRunner({
      requests: { getForExecution: () => Promise.reject(unavailable('store', new Error('connection refused'))) } as unknown as RequestStore,
      executions: {} as ExecutionStore,
      queue,
      getFlow: () => flow('f', [{ type: 'log' }]),
      logger,
      concurrency: 40,
      executionDataLimit: 1_000,
      defaultMaxAttempts: 3,
      defaultBackoffMs: 10,
      maxBackoffMs: 100,
    });
    runner.start();
    await Promise.all(handled);
    const given = lines.filter((l) => /^store unavailable/.test(String(l.msg)));
    expect(given.length).toBeGreaterThanOrEqual(1);
    expect(given.length).toBeLessThanOrEqual(2);
    expect(given[0]).toMatchObject({ flowId: 'f', err: expect.stringMatching(/connection refused/) });
    await runner.stop({ graceMs: 0 });
  }, 15_000);
});

// The chaos review's stall: a holder of a `concurrency: 1` flow was frozen with a job received and
// not started; its hold lapsed and another instance ran the flow's later jobs; resumed, it ran the
// old job's call beside theirs. A job of a flow no longer held here is handed back unrun.
describe('flow runner: a flow no longer held here (mayRun)', () => {
  /** runOne() with a flow limited to 1 of `steps`, counting the reads of the request. */
  function handOne(delivery: Delivery, mayRun: () => boolean, steps: Array<{ type: StepDef['type']; [key: string]: unknown }>): { runner: FlowRunner; handled: Promise<void>; reads: () => number } {
    let reads = 0;
    const read = async () => void reads++;
    return { ...runOne(delivery, { read, maxAttempts: 3, flow: flow('f', steps, { concurrency: 1 }), mayRun }), reads: () => reads };
  }

  function delivery(settled: string[], handBack?: boolean): Delivery {
    return fakeDelivery(
      settled,
      handBack === undefined
        ? {}
        : {
            handBack: () => {
              settled.push(handBack ? 'handBack' : 'handBack refused');
              return handBack;
            },
          },
    );
  }

  it('hands the job back at its place, unrun and unsettled otherwise, when the queue can (RabbitMQ)', async () => {
    const target = receiverPath('not-held');
    const settled: string[] = [];
    const asked: string[] = [];
    const { runner, handled, reads } = handOne(delivery(settled, true), () => (asked.push('f'), false), [{ type: 'http', url: target.url }]);
    await handled;
    expect(asked).toEqual(['f']);
    expect(settled).toEqual(['handBack']);
    expect(reads()).toBe(0); // nothing read or written for it
    expect(target.calls()).toHaveLength(0);
    await runner.stop({ graceMs: 0 });
  });

  it('requeues it (no attempt spent) when the queue cannot hand it back at its place', async () => {
    const target = receiverPath('not-held-worn');
    const settled: string[] = [];
    const { runner, handled } = handOne(delivery(settled, false), () => false, [{ type: 'http', url: target.url }]);
    await handled;
    expect(settled).toEqual(['handBack refused', 'requeue']);
    expect(target.calls()).toHaveLength(0);
    await runner.stop({ graceMs: 0 });
  });

  it('a hold lost between a job start and its first call: the call does not start; the job resumes at its cursor, its attempt unspent', async () => {
    const target = receiverPath('lost-mid-job');
    const answers = [true, false]; // at the job's start, before the http step; then true
    const callsWhenRefused: number[] = [];
    const asked: string[] = [];
    const h = await setupBackend({
      mayRun: (f) => {
        asked.push(f.id);
        const yes = answers.shift() ?? true;
        if (!yes) callsWhenRefused.push(target.calls().length);
        return yes;
      },
    });
    h.flows.set(
      'held',
      flow(
        'held',
        [
          { id: 'shape', type: 'transform', expression: '{ "n": body.n }' },
          { id: 'send', type: 'http', url: target.url },
        ],
        { concurrency: 1 },
      ),
    );
    const m = message('held', { n: 7 });
    await h.backend.requests.accept(m, { maxAttempts: 3 });
    h.runner.start();
    const e = await finalExecution(h, m.id);
    expect(e.status).toBe('completed');
    expect(callsWhenRefused).toEqual([0]);
    expect(target.calls()).toHaveLength(1);
    expect(asked).toEqual(['held', 'held', 'held', 'held']);
    // Handed back once, at the http step, its cursor kept: resumed there (a speculative run of the
    // pure first step may start again, its result unused), no attempt spent, one call.
    expect(h.started.filter((s) => s.stepId === 'send')).toHaveLength(1);
    expect(e.steps.map((s) => [s.stepId, s.status, s.attempt])).toEqual([
      ['shape', 'completed', 1],
      ['send', 'completed', 1],
    ]);
    expect(e.attempts).toBe(1);
  });
});
