/**
 * A lost HOOKD_SECRET_KEY, as docs/distributed.md tells to recover: stop, delete the stored
 * fingerprint, start with a new key, send each flow with credentials again with its secrets.
 */
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, expect, it } from 'vitest';
import { everyBackend } from '../helpers/every-backend.js';
import { startHookd } from '../helpers/hookd.js';

const { backends, cleanUp } = everyBackend('newkey');
const env = backends.find(([name]) => name === 'PostgreSQL')![1];
afterAll(() => cleanUp([]));

it('after the fingerprint is deleted, a new key starts; a flow sealed with the old key is left out until it is sent again with its secrets', async () => {
  const flow = { trigger: { type: 'webhook', auth: { type: 'token', secrets: ['the-old-token-0123456789'] } }, steps: [] };
  const first = await startHookd({ ...env, WORKER_CONCURRENCY: '0' });
  expect((await first.api('PUT', '/api/flows/sealed', flow)).status).toBe(201);
  await first.close();

  const newKey = randomBytes(32).toString('base64');
  await expect(startHookd({ ...env, HOOKD_SECRET_KEY: newKey, WORKER_CONCURRENCY: '0' })).rejects.toThrow(/HOOKD_SECRET_KEY differs from the key of the other instances/);
  const admin = new pg.Client({ connectionString: env.DATABASE_URL });
  await admin.connect();
  try {
    await admin.query(`DELETE FROM "${env.DATABASE_SCHEMA}".settings WHERE key = 'master_key_fingerprint'`);
  } finally {
    await admin.end();
  }
  const lines: Array<Record<string, any>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, any>);
      cb();
    },
  });
  const second = await startHookd({ ...env, HOOKD_SECRET_KEY: newKey, WORKER_CONCURRENCY: '0', FLOW_REFRESH: '100ms' }, { logger: pino({ level: 'info' }, stream) });
  try {
    // Said once (error, naming the flow), not again at every flow refresh while it stays so.
    await new Promise((r) => setTimeout(r, 1_000));
    const leftOut = lines.filter((l) => /^flow left out/.test(l.msg));
    expect(leftOut).toHaveLength(1);
    expect(leftOut[0]).toMatchObject({ level: 50, flowId: 'sealed' });
    // Left out (its secret does not open): not served, and the API says what to do.
    expect((await fetch(`${second.url}/hook/sealed`, { method: 'HEAD' })).status).toBe(404);
    const read = await second.api('GET', '/api/flows/sealed');
    expect(read.status).toBe(409);
    expect(read.body.message).toMatch(/do not open with this HOOKD_SECRET_KEY .*send it again with its secrets \(PUT \/api\/flows\/sealed\), or delete it/);
    expect((await second.api('POST', '/api/flows/sealed/stop')).status).toBe(409);
    // A masked hint cannot stand for a secret that does not open.
    expect((await second.api('PUT', '/api/flows/sealed', { ...flow, trigger: { ...flow.trigger, auth: { type: 'token', secrets: ['…6789'] } } })).status).toBe(400);
    const put = await second.api('PUT', '/api/flows/sealed', flow);
    expect(put.status, JSON.stringify(put.body)).toBeLessThan(300);
    const call = await fetch(`${second.url}/hook/sealed`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-webhook-token': 'the-old-token-0123456789' }, body: '{}' });
    expect(call.status).toBe(200);
  } finally {
    await second.close();
  }
}, 60_000);
