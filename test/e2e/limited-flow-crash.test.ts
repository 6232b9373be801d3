/**
 * PostgreSQL queue: the instance running a limited flow's job dies (SIGKILL). Once the instance
 * registry counts it as gone (3 x FLOW_REFRESH, at least 5 s), its lease no longer holds a share of
 * the flow's limit, and the sweep ends it: another instance goes on with the flow's next jobs, and
 * runs the killed one again, within that, not after QUEUE_LEASE (60 s here). (Found by reviews: the
 * next jobs came 28 s after, and the killed job's lease held it for the whole QUEUE_LEASE.)
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { everyBackend } from '../helpers/every-backend.js';
import { adminCall, type ChildHookd, spawnHookd, tempDir, waitFor } from '../helpers/hookd.js';

const { backends, cleanUp } = everyBackend('lfcrash');
const env = backends.find(([n]) => n === 'PostgreSQL')![1];
const TOKEN = randomBytes(16).toString('hex');
const starts: number[] = [];
let inProgress = 0;
const receiver = http.createServer((req, res) => {
  inProgress++;
  starts.push(Date.now());
  req.resume();
  // The first call outlasts the second instance's start, so that the first instance is surely
  // still running it when it is killed; later ones take 2 s.
  setTimeout(
    () => {
      inProgress--;
      res.writeHead(200).end();
    },
    starts.length === 1 ? 10_000 : 2_000,
  );
});
let port = 0;
const children: ChildHookd[] = [];

beforeAll(async () => {
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  port = (receiver.address() as AddressInfo).port;
});
afterAll(async () => {
  for (const c of children) c.proc.kill('SIGKILL');
  receiver.close();
  await cleanUp([]);
});

it('another instance runs a limited flow soon after the instance running it is killed', { timeout: 90_000 }, async () => {
  const start = () => spawnHookd({ LISTEN_PORT: '0', DATA_DIR: tempDir(), HOOKD_ADMIN_TOKEN: TOKEN, FLOW_REFRESH: '500ms', QUEUE_LEASE: '60s', ...env });
  const a = await start();
  children.push(a);
  expect((await adminCall(a.url, TOKEN, 'PUT', '/api/flows/crashy', { concurrency: 1, steps: [{ id: 'call', type: 'http', url: `http://127.0.0.1:${port}/x` }] })).status).toBe(201);
  for (let i = 0; i < 5; i++) {
    expect((await fetch(`${a.url}/hook/crashy`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })).status).toBe(200);
  }
  await waitFor(() => inProgress === 1, 10_000);
  // Only `a` ran so far; `b` joins, then `a` dies with its job running.
  const b = await start();
  children.push(b);
  await new Promise((r) => setTimeout(r, 500));
  const before = starts.length;
  expect(before, 'the first instance is still in its first call').toBe(1);
  const killedAt = Date.now();
  a.proc.kill('SIGKILL');
  await waitFor(() => starts.length > before, 60_000, 50);
  const takeover = starts[before]! - killedAt;
  expect(takeover, `next execution ${takeover} ms after the kill`).toBeLessThan(10_000);
  // All five end completed, the killed one included, long before its 60 s lease would have ended.
  const completed = async () => {
    const page = (await adminCall(b.url, TOKEN, 'GET', '/api/executions?flowId=crashy&limit=100')).body as { items: Array<{ status: string }> };
    return page.items.filter((e) => e.status === 'completed').length;
  };
  await waitFor(async () => (await completed()) === 5, 40_000, 200);
  const allDone = Date.now() - killedAt;
  // Six calls: the killed one ran again. The survivor says why.
  expect(starts).toHaveLength(6);
  expect(b.output()).toContain('its leased jobs are delivered again now');
  // 5-6 s until the registry drops `a`, then 5 calls of 2 s, one at a time.
  console.log(`limited-flow-crash: next execution ${takeover} ms, all five completed ${allDone} ms after the kill`);
  expect(allDone, `all five completed ${allDone} ms after the kill`).toBeLessThan(25_000);
  expect(inProgress).toBe(0);
});
