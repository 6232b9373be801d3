import { describe, expect, it } from 'vitest';
import { toRequestView } from '../../src/core/message.js';
import { decodeJob, encodeJob, requestPayload, type JobMessage } from '../../src/queue/rabbitmq/job-message.js';
import { makeMessage } from '../conformance/helpers.js';

const job: JobMessage = { id: 'job-1', flowId: 'orders', requestId: 'req-1', attempts: 1, maxAttempts: 5, enqueuedAt: 1_764_900_000_000.5 };

describe('job messages carry their request for consumers outside hookd (RABBITMQ_JOB_PAYLOAD)', () => {
  it('puts the payload in the body as `message`, and decodeJob leaves it out (retries and dead letters go without)', () => {
    const m = makeMessage({ id: 'req-1', flowId: 'orders', body: { total: 5, note: 'ünï "quoted"' }, rawBody: Buffer.from('{"total":5,"note":"ünï \\"quoted\\""}') });
    const payload = requestPayload(m, 64 * 1024)!;
    const { body } = encodeJob({ ...job, payload });
    const parsed = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
    expect(parsed).toEqual({ ...job, message: JSON.parse(JSON.stringify(toRequestView(m))) });
    expect(Buffer.from((parsed.message as { rawBody: string }).rawBody, 'base64').equals(m.rawBody)).toBe(true);
    const decoded = decodeJob(body);
    expect(decoded).toEqual(job);
    expect(JSON.parse(encodeJob(decoded).body.toString('utf8'))).toEqual(job);
  });

  it('without a payload the body is the job alone, as before', () => {
    expect(JSON.parse(encodeJob(job).body.toString('utf8'))).toEqual(job);
  });

  it('leaves out a request longer than the limit, and every request with a limit of 0', () => {
    const m = makeMessage({ rawBody: Buffer.alloc(3000, 'a'), body: 'a'.repeat(3000) });
    const json = JSON.stringify(toRequestView(m));
    expect(requestPayload(m, json.length)).toBe(json);
    expect(requestPayload(m, json.length - 1)).toBeUndefined();
    expect(requestPayload(m, 3000)).toBeUndefined();
    expect(requestPayload(m, 0)).toBeUndefined();
  });

  it('counts bytes, not characters: a body of non-ASCII text weighs its UTF-8', () => {
    const text = JSON.stringify({ t: '€'.repeat(1000) });
    const m = makeMessage({ rawBody: Buffer.from(text), body: JSON.parse(text) });
    const json = JSON.stringify(toRequestView(m));
    const bytes = Buffer.byteLength(json);
    expect(bytes).toBeGreaterThan(json.length + 1500);
    expect(requestPayload(m, bytes)).toBe(json);
    expect(requestPayload(m, bytes - 1)).toBeUndefined();
    expect(requestPayload(m, json.length)).toBeUndefined(); // enough characters, too few bytes
  });
});
