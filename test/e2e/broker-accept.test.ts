/**
 * RABBITMQ_ACCEPT=broker on one instance (PostgreSQL + RabbitMQ, services left running; the
 * three-instance tests with outages are in distributed.test.ts).
 *
 * During a rolling upgrade: A job answered from the broker alone carries its
 * request, which only this build records: an instance of an earlier hookd would find no stored
 * request and dead-letter the job without it (a 200 lost). While such an instance beats on the
 * database, webhooks go the outbox way; once it is gone, the broker's confirm alone.
 */
import http from 'node:http';
import pg from 'pg';
import { Connection } from 'rabbitmq-client';
import { encodeJob } from '../../src/queue/rabbitmq/job-message.js';
import { makeMessage } from '../conformance/helpers.js';
import pino from 'pino';
import { afterAll, expect, it } from 'vitest';
import { waitFor } from '../conformance/helpers.js';
import { everyBackend } from '../helpers/every-backend.js';
import { startHookd } from '../helpers/hookd.js';

const { backends, cleanUp } = everyBackend('brokeraccept');
const env = backends.find(([name]) => name === 'PostgreSQL + RabbitMQ')![1];
afterAll(() => cleanUp(['gated', 'vanishing']));

it('answers from the broker alone only while no instance of an earlier build runs on the database', { timeout: 30_000 }, async () => {
  const admin = new pg.Client({ connectionString: env.DATABASE_URL });
  await admin.connect();
  const schema = env.DATABASE_SCHEMA!;
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
  // Workers off: a request answered from the broker alone is not in the store (no worker took it).
  const first = await startHookd({ ...env, WORKER_CONCURRENCY: '0' });
  await first.close();
  let hookd: Awaited<ReturnType<typeof startHookd>> | undefined;
  try {
    // An instance of the earlier build (schema 16) beats on the database.
    await admin.query(
      `INSERT INTO "${schema}".instances (id, seen_at, runs_flows, queue, schema_version) VALUES ('instance-earlier', extract(epoch from now()) * 1000 + 600000, true, 'rabbitmq', 16)`,
    );
    hookd = await startHookd({ ...env, RABBITMQ_ACCEPT: 'broker', WORKER_CONCURRENCY: '0', FLOW_REFRESH: '200ms' }, { logger });
    expect((await hookd.api('PUT', '/api/flows/gated', { steps: [{ id: 'keep', type: 'filter', expression: 'true' }] })).status).toBe(201);
    const post = async (): Promise<string> => {
      const res = await fetch(`${hookd!.url}/hook/gated`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"n":1}' });
      expect(res.status).toBe(200);
      return ((await res.json()) as { requestId: string }).requestId;
    };
    const stored = async (id: string): Promise<boolean> => (await hookd!.api('GET', `/api/requests/${id}`)).status === 200;
    expect(await stored(await post())).toBe(true);
    expect(lines.some((l) => l.includes('RABBITMQ_ACCEPT=broker waits'))).toBe(true);
    expect((await hookd.api('GET', '/api/requests/no-such-request')).body).not.toHaveProperty('details');

    // The earlier instance is gone (upgraded): the broker's confirm alone, within FLOW_REFRESH.
    await admin.query(`DELETE FROM "${schema}".instances WHERE id = 'instance-earlier'`);
    await waitFor(() => lines.some((l) => l.includes('RABBITMQ_ACCEPT=broker in effect')), 'broker accept in effect', 5_000);
    const id = await post();
    expect(await stored(id)).toBe(false);
    // The 404 says why it may not be there yet.
    expect((await hookd.api('GET', `/api/requests/${id}`)).body).toMatchObject({ error: 'NOT_FOUND', details: { recordedLater: expect.stringMatching(/worker takes its job/) } });
    const queued = await hookd.api('GET', '/api/queue');
    expect(queued.body).toMatchObject({ ready: 2 });

    // JSON nested too deeply to serialise is the sender's to fix (400), as the outbox way says,
    // not an outage (503) it would retry for ever.
    const deep = await fetch(`${hookd.url}/hook/gated`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '['.repeat(20_000) + ']'.repeat(20_000) });
    expect(deep.status).toBe(400);
    expect(((await deep.json()) as { message: string }).message).toMatch(/nested too deeply/);
    expect((await hookd.api('GET', '/api/queue')).body).toMatchObject({ ready: 2 });
  } finally {
    await hookd?.close();
    await admin.end();
  }
});

it('a request whose flow is deleted while it arrives is stored before its job goes to the dead letters', { timeout: 30_000 }, async () => {
  const hookd = await startHookd({ ...env, RABBITMQ_ACCEPT: 'broker', FLOW_REFRESH: '200ms' });
  try {
    expect((await hookd.api('PUT', '/api/flows/vanishing', { steps: [{ id: 'keep', type: 'filter', expression: 'true' }] })).status).toBe(201);
    await new Promise((r) => setTimeout(r, 1_000));
    // The sender's upload begins while the flow exists; the flow is deleted before it ends.
    const body = JSON.stringify({ order: 7 });
    const answer = new Promise<{ status: number; requestId: string }>((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port: Number(new URL(hookd.url).port), path: '/hook/vanishing', method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-request-id': 'vanishing-1' } },
        (res) => {
          let text = '';
          res.on('data', (d) => (text += d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, requestId: (JSON.parse(text) as { requestId: string }).requestId }));
        },
      );
      req.on('error', reject);
      req.write(body.slice(0, 5));
      setTimeout(() => req.end(body.slice(5)), 1_500);
    });
    await new Promise((r) => setTimeout(r, 300));
    expect((await hookd.api('DELETE', '/api/flows/vanishing')).status).toBe(204);
    expect(await answer).toEqual({ status: 200, requestId: 'vanishing-1' });
    // Its job is a dead letter, and the request is in the store: dismissing the one keeps the other.
    let dead: { id: string; requestId: string } | undefined;
    await waitFor(async () => {
      const page = await hookd.api('GET', '/api/dead-letters?limit=100');
      dead = (page.body.items as Array<{ id: string; requestId: string }>).find((d) => d.requestId === 'vanishing-1');
      return dead !== undefined;
    }, 'the dead letter', 10_000);
    expect((await hookd.api('GET', '/api/requests/vanishing-1')).body).toMatchObject({ flowId: 'vanishing', body: { order: 7 } });
    expect((await hookd.api('DELETE', `/api/dead-letters/${dead!.id}`)).status).toBe(204);
    expect((await hookd.api('GET', '/api/requests/vanishing-1')).status).toBe(200);
  } finally {
    await hookd.close();
  }
});

it('a dismissed dead letter whose request only it held (the broker dead-lettered the job before a worker recorded it) leaves the request stored', { timeout: 30_000 }, async () => {
  const hookd = await startHookd({ ...env, RABBITMQ_ACCEPT: 'broker', WORKER_CONCURRENCY: '0' });
  const conn = new Connection({ url: env.RABBITMQ_URI! });
  const publisher = conn.createPublisher({ confirm: true });
  try {
    // What the broker's delivery limit makes of a job whose worker crashed on it each time.
    const carried = makeMessage({ id: 'only-in-dead-letters', flowId: 'gated', body: { n: 9 }, rawBody: Buffer.from('{"n":9}') });
    const { envelope, body } = encodeJob({ id: 'job-dead-1', flowId: 'gated', requestId: carried.id, attempts: 3, maxAttempts: 5, enqueuedAt: Date.now(), lastError: 'delivered 21 times', deadAt: Date.now(), carried });
    await publisher.send({ ...envelope, exchange: env.RABBITMQ_PREFIX!, routingKey: 'dead' }, body);
    await waitFor(async () => ((await hookd.api('GET', '/api/dead-letters?limit=10')).body.items as Array<{ id: string }>).some((d) => d.id === 'job-dead-1'), 'the dead letter', 10_000);
    expect((await hookd.api('GET', `/api/requests/${carried.id}`)).status).toBe(404);
    expect((await hookd.api('DELETE', '/api/dead-letters/job-dead-1')).status).toBe(204);
    expect((await hookd.api('GET', `/api/requests/${carried.id}`)).body).toMatchObject({ id: carried.id, flowId: 'gated', body: { n: 9 } });
  } finally {
    await publisher.close();
    await conn.close();
    await hookd.close();
  }
});
