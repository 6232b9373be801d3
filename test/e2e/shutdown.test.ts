import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminCall, spawnHookd, tempDir, waitFor } from '../helpers/hookd.js';

/** SIGTERM: stop accepting, finish in-flight requests, let running steps finish or release their jobs, exit 0. */
const TOKEN = 'shutdown-token';
let receiver: http.Server;
let receiverUrl: string;
let calls = 0;
let delayMs = 0;

beforeAll(async () => {
  receiver = http.createServer((req, res) => {
    calls++;
    req.resume();
    setTimeout(() => res.end('{"ok":true}'), delayMs);
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/in`;
});
afterAll(() => new Promise<void>((r) => receiver.close(() => r())));

/**
 * A POST whose headers announce 1000 bytes and whose body stops after 500: the server waits for
 * the rest. `ended` resolves once the connection is closed (by the server's shutdown).
 */
async function stalledPost(url: string, path: string): Promise<{ req: http.ClientRequest; ended: Promise<void> }> {
  const { port } = new URL(url);
  const req = http.request({ host: '127.0.0.1', port, method: 'POST', path, headers: { 'content-type': 'application/json', 'content-length': '1000' } });
  const ended = new Promise<void>((resolve) => {
    req.on('error', () => resolve());
    req.on('close', () => resolve());
  });
  req.write('{"pad":"'.padEnd(500, 'x'));
  await new Promise((r) => setTimeout(r, 300));
  return { req, ended };
}

async function run(grace: string, stepDelay: number) {
  const dataDir = tempDir('hookd-shutdown-');
  // A long lease: only an explicit release (not lease expiry) lets the restart pick jobs up quickly.
  const env = { DATA_DIR: dataDir, HOOKD_ADMIN_TOKEN: TOKEN, LISTEN_PORT: '0', SHUTDOWN_GRACE: grace, QUEUE_LEASE: '120s', WORKER_CONCURRENCY: '4' };
  delayMs = stepDelay;
  calls = 0;
  const first = await spawnHookd(env);
  await adminCall(first.url, TOKEN, 'PUT', '/api/flows/slow', { steps: [{ id: 'call', type: 'http', url: receiverUrl, timeoutMs: 10_000 }] });
  const ids: string[] = [];
  for (let i = 0; i < 8; i++) {
    const res = await fetch(`${first.url}/hook/slow`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: `{"i":${i}}` });
    expect(res.status).toBe(200);
    ids.push(((await res.json()) as any).requestId);
  }
  await waitFor(() => calls > 0);
  const t0 = Date.now();
  first.proc.kill('SIGTERM');
  expect(await first.exited).toBe(0);
  const stopMs = Date.now() - t0;

  const second = await spawnHookd(env);
  try {
    const t1 = Date.now();
    await waitFor(async () => {
      const page = await adminCall(second.url, TOKEN, 'GET', '/api/executions?flowId=slow');
      return page.body.items.length === ids.length && page.body.items.every((e: any) => e.status === 'completed');
    }, 30_000, 50);
    return { stopMs, drainMs: Date.now() - t1, log: logLines(first.output()) };
  } finally {
    second.proc.kill('SIGTERM');
    await second.exited;
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** The JSON lines of a process's output (the admin token's banner and other text left out). */
function logLines(output: string): Array<Record<string, any>> {
  return output
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, any>);
}

describe('graceful shutdown', () => {
  it('running steps finish within the grace period; exit code 0; nothing lost', async () => {
    const { stopMs, log } = await run('10s', 300);
    expect(stopMs).toBeLessThan(8_000);
    // The log says what the shutdown waits for, and that nothing had to be cut off.
    const stopping = log.find((l) => /^shutting down/.test(l.msg));
    expect(stopping).toMatchObject({ signal: 'SIGTERM', graceMs: 10_000, runningExecutions: 4 });
    expect(stopping!.msg).toMatch(/waiting up to 10s \(SHUTDOWN_GRACE\)/);
    expect(log.some((l) => /grace over/.test(l.msg))).toBe(false);
    expect(log.at(-1)).toMatchObject({ msg: 'shut down' });
  }, 60_000);

  it('steps still running after the grace period have their jobs released, not stranded for a lease', async () => {
    const { stopMs, drainMs, log } = await run('200ms', 3_000);
    expect(stopMs).toBeLessThan(3_000);
    // What was cut off is said, and what becomes of it.
    expect(log.find((l) => /^shutdown grace over: aborting the steps still running/.test(l.msg))).toMatchObject({ level: 40, executions: 4 });
    // Released jobs are picked up at once by the next process, far sooner than the 120 s lease.
    expect(drainMs).toBeLessThan(20_000);
  }, 60_000);
});

describe('a sender that stalls mid-body', () => {
  it('cannot hold a shutdown past the grace period (its connection is closed; exit 0)', async () => {
    const dataDir = tempDir('hookd-stalled-');
    const env = { DATA_DIR: dataDir, HOOKD_ADMIN_TOKEN: TOKEN, LISTEN_PORT: '0', SHUTDOWN_GRACE: '1s', WORKER_CONCURRENCY: '0' };
    const child = await spawnHookd(env);
    try {
      await adminCall(child.url, TOKEN, 'PUT', '/api/flows/stalled', { steps: [] });
      const { ended } = await stalledPost(child.url, '/hook/stalled');
      const t0 = Date.now();
      child.proc.kill('SIGTERM');
      expect(await child.exited).toBe(0);
      expect(Date.now() - t0).toBeLessThan(6_000);
      await ended;
    } finally {
      if (child.proc.exitCode === null) child.proc.kill('SIGKILL');
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('one grace period for requests and steps', () => {
  it('a stalled sender and a slow step together still stop within about SHUTDOWN_GRACE, and the step\'s job is run by the next process', async () => {
    const dataDir = tempDir('hookd-one-window-');
    const env = { DATA_DIR: dataDir, HOOKD_ADMIN_TOKEN: TOKEN, LISTEN_PORT: '0', SHUTDOWN_GRACE: '2s', QUEUE_LEASE: '120s', WORKER_CONCURRENCY: '2' };
    delayMs = 30_000;
    calls = 0;
    const child = await spawnHookd(env);
    let req: http.ClientRequest | undefined;
    try {
      await adminCall(child.url, TOKEN, 'PUT', '/api/flows/both', { steps: [{ id: 'call', type: 'http', url: receiverUrl, timeoutMs: 60_000 }] });
      const res = await fetch(`${child.url}/hook/both`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      expect(res.status).toBe(200);
      await waitFor(() => calls > 0); // the step is running (its receiver answers in 30 s)
      ({ req } = await stalledPost(child.url, '/hook/both'));
      const t0 = Date.now();
      child.proc.kill('SIGTERM');
      expect(await child.exited).toBe(0);
      // The server waits its 2 s for the stalled body while the step gets the same 2 s, not 2 s
      // more after it (4 s and more before).
      expect(Date.now() - t0).toBeLessThan(3_800);
    } finally {
      req?.destroy();
      if (child.proc.exitCode === null) child.proc.kill('SIGKILL');
    }
    delayMs = 0;
    const second = await spawnHookd(env);
    try {
      await waitFor(async () => {
        const page = await adminCall(second.url, TOKEN, 'GET', '/api/executions?flowId=both');
        return page.body.items.length === 1 && page.body.items[0].status === 'completed';
      }, 20_000, 50);
    } finally {
      second.proc.kill('SIGTERM');
      await second.exited;
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('a start that fails', () => {
  it('(a port in use) takes no job: repeated failed starts spend no attempt of a waiting job', async () => {
    const dataDir = tempDir('hookd-failed-start-');
    const env = { DATA_DIR: dataDir, HOOKD_ADMIN_TOKEN: TOKEN, LISTEN_PORT: '0', WORKER_CONCURRENCY: '0' };
    const first = await spawnHookd(env);
    await adminCall(first.url, TOKEN, 'PUT', '/api/flows/waiting', { steps: [{ id: 'call', type: 'http', url: receiverUrl }] });
    const res = await fetch(`${first.url}/hook/waiting`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(res.status).toBe(200);
    first.proc.kill('SIGTERM');
    expect(await first.exited).toBe(0);

    // Three starts with workers on, each failing to listen on a port that is taken.
    const taken = http.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const port = String((taken.address() as AddressInfo).port);
    try {
      for (let i = 0; i < 3; i++) {
        const failing = spawnHookd({ ...env, LISTEN_PORT: port, WORKER_CONCURRENCY: '4', QUEUE_LEASE: '1s' });
        await expect(failing).rejects.toThrow(/LISTEN_PORT: 127\.0\.0\.1:\d+ is already in use/);
      }
    } finally {
      await new Promise<void>((r) => taken.close(() => r()));
    }
    await new Promise((r) => setTimeout(r, 1_500)); // any lease taken would have expired by now

    const after = await spawnHookd(env);
    try {
      const stats = await adminCall(after.url, TOKEN, 'GET', '/api/queue');
      expect(stats.body).toMatchObject({ ready: 1, inFlight: 0, dead: 0 });
      const list = await adminCall(after.url, TOKEN, 'GET', '/api/executions?flowId=waiting');
      expect(list.body.items).toEqual([]);
    } finally {
      after.proc.kill('SIGTERM');
      await after.exited;
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('the start', () => {
  it('logs version, backend and every setting in effect, without the admin token or the secret key', async () => {
    const dataDir = tempDir('hookd-start-log-');
    const secretKey = 'ab'.repeat(32);
    const child = await spawnHookd({ DATA_DIR: dataDir, HOOKD_ADMIN_TOKEN: TOKEN + '-0123456789', HOOKD_SECRET_KEY: secretKey, LISTEN_PORT: '0', RETENTION: '7d' });
    try {
      const listening = logLines(child.output()).find((l) => l.msg === 'hookd listening');
      expect(listening).toMatchObject({ version: expect.stringMatching(/^\d+\.\d+\.\d+/), backend: 'sqlite', configFile: null, config: { RETENTION: '7d', WORKER_CONCURRENCY: 64, HOOKD_ADMIN_TOKEN: 'set', HOOKD_SECRET_KEY: 'set' } });
      expect(child.output()).not.toContain(TOKEN + '-0123456789');
      expect(child.output()).not.toContain(secretKey);
    } finally {
      child.proc.kill('SIGTERM');
      expect(await child.exited).toBe(0);
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
