import { describe, expect, it } from 'vitest';
import { RabbitDelivery } from '../../src/queue/rabbitmq/delivery.js';
import { decodeJob, encodeJob, toDeadLetter, type JobMessage } from '../../src/queue/rabbitmq/job-message.js';
import { makeMessage } from '../conformance/helpers.js';

const job: JobMessage = { id: 'job-1', flowId: 'orders', requestId: 'req-1', attempts: 1, maxAttempts: 5, enqueuedAt: 1_764_900_000_000.5 };

/** What the broker hands a consumer: rabbitmq-client parses application/json bodies itself. */
const overTheWire = (m: JobMessage): JobMessage => decodeJob(JSON.parse(encodeJob(m).body.toString('utf8')));

describe('job messages that carry their request (RABBITMQ_ACCEPT=broker)', () => {
  it('carry it losslessly: the time of receipt with its fraction, the exact bytes, headers, query and the parsed body', () => {
    const raw = Buffer.from('{"total":5,"note":"ünï \\"quoted\\"","n":1.50}');
    const carried = makeMessage({
      id: 'req-1',
      flowId: 'orders',
      receivedAt: 1_764_900_000_000.123,
      path: '/a/b',
      query: { q: ['1', '2'] },
      headers: { 'content-type': 'application/json', 'x-many': ['a', 'b'] },
      contentType: 'application/json',
      body: { total: 5, note: 'ünï "quoted"', n: 1.5 },
      rawBody: raw,
      cloudEvent: { specversion: '1.0', id: 'e1', source: 's', type: 't', data: { a: 1 } },
    });
    const decoded = overTheWire({ ...job, carried });
    expect(decoded.carried).toEqual(carried);
    expect(decoded.carried!.rawBody.equals(raw)).toBe(true);
    expect(decoded.carried!.receivedAt).toBe(1_764_900_000_000.123);
  });

  it('keep bytes that are not UTF-8 exact (base64), and an empty body', () => {
    const raw = Buffer.from([0xff, 0xfe, 0x00, 0x80, 0x41]);
    const binary = makeMessage({ id: 'req-1', flowId: 'orders', contentType: 'application/octet-stream', body: null, rawBody: raw });
    expect(overTheWire({ ...job, carried: binary }).carried!.rawBody.equals(raw)).toBe(true);
    const empty = makeMessage({ id: 'req-1', flowId: 'orders', contentType: null, body: null, rawBody: Buffer.alloc(0) });
    expect(overTheWire({ ...job, carried: empty }).carried).toEqual(empty);
  });

  it('keep it through every copy the queue makes of the job (retries, dead letters), until a worker recorded it', () => {
    const carried = makeMessage({ id: 'req-1', flowId: 'orders' });
    const first = overTheWire({ ...job, carried });
    const retry = overTheWire({ ...first, attempts: 2, lastError: 'boom' });
    expect(retry.carried).toEqual(carried);
    const dead = overTheWire({ ...retry, deadAt: 1_764_900_000_100 });
    expect(dead.carried).toEqual(carried);
    // Listed through the API without it: the request is read there by its id.
    expect(toDeadLetter(dead, undefined, 20)).not.toHaveProperty('carried');
  });

  it('refuse a request that is not the job’s, or not a request', () => {
    const other = makeMessage({ id: 'req-2', flowId: 'orders' });
    expect(() => overTheWire({ ...job, carried: other })).toThrow(/not the job's/);
    const body = JSON.parse(encodeJob(job).body.toString('utf8')) as Record<string, unknown>;
    expect(() => decodeJob({ ...body, request: { id: 'req-1', flowId: 'orders' } })).toThrow(/job request: request receivedAt/);
    expect(() => decodeJob({ ...body, request: 'text' })).toThrow(/job request: request is not an object/);
  });

  it('a job without a request stays as it was on the wire', () => {
    expect(JSON.parse(encodeJob(job).body.toString('utf8'))).toEqual(job);
    expect(overTheWire(job)).toEqual(job);
  });
});

describe('a carried request stored under the flow’s own id (another flow has the sender’s)', () => {
  it('renames the job and every copy the queue makes of it: retry, given back, dead letter', async () => {
    const sent: JobMessage[] = [];
    const host = {
      logger: { warn: () => {}, info: () => {}, error: () => {} },
      publishRetry: async (m: JobMessage) => void sent.push(m),
      publishDead: async (m: JobMessage) => void sent.push(m),
      track: () => {},
      settled: () => {},
      ack: () => true,
      handBack: () => true,
      deliveryLimit: 20,
    } as unknown as ConstructorParameters<typeof RabbitDelivery>[3];
    const ch = { active: true } as unknown as ConstructorParameters<typeof RabbitDelivery>[1];
    const carried = makeMessage({ id: 'req-1', flowId: 'orders' });
    const deliveryOf = () => new RabbitDelivery({ ...job, carried }, ch, 1, host);

    const d = deliveryOf();
    d.renameRequest('rid-scoped');
    expect(d.job.requestId).toBe('rid-scoped');
    expect(d.job.carried?.id).toBe('rid-scoped');
    await d.nack({ delayMs: 1_000, error: 'boom' });
    const d2 = deliveryOf();
    d2.renameRequest('rid-scoped');
    await d2.requeue('store down');
    const d3 = deliveryOf();
    d3.renameRequest('rid-scoped');
    await d3.deadLetter('no');
    expect(sent).toHaveLength(3);
    for (const m of sent) {
      // What the next consumer decodes (decodeJob refuses a request that is not the job's).
      const again = overTheWire(m);
      expect(again.requestId).toBe('rid-scoped');
      expect(again.carried).toEqual({ ...carried, id: 'rid-scoped' });
      expect(toDeadLetter(again, undefined, 20).requestId).toBe('rid-scoped');
    }
  });
});
