import { spawn } from 'node:child_process';
import { api, arg, distributedStorage, fmt, startHookd } from './lib.js';

/**
 * npm run bench:execution-rate [-- --backend sqlite|postgres|rabbitmq --instances N --rate 50 --burst 5 --requests 300]
 *
 * How closely a flow's `executionRate` holds while webhooks pour in: `--requests` webhooks to a
 * flow with the rate and as many to a flow without one, sent at once (25 connections each, spread
 * over the instances), each flow's http step calling a receiver in a process of its own. Prints, for the
 * rated flow, the most calls the receiver got in any one second against rate + burst (the most the
 * bucket allows), the calls per second in each second, and its calls/s once intake was over against
 * the rate; for the other flow its calls/s (it must not wait behind the rated one).
 */
const backend = arg('backend', 'sqlite');
const instances = Math.max(1, Number(arg('instances', backend === 'sqlite' ? '1' : '2')));
const rate = Number(arg('rate', '50'));
const burst = Number(arg('burst', '5'));
const requests = Number(arg('requests', '300'));
if (backend === 'sqlite' && instances > 1) throw new Error('--instances > 1 needs --backend postgres or rabbitmq');

// The receiver runs in a process of its own: in this one, whose event loop also sends the
// webhooks, the arrival times it noted bunched up during intake (a second of 74 calls at 50/s that
// a receiver elsewhere did not see).
const RECEIVER = `
const http = require('node:http');
const calls = {};
const server = http.createServer((req, res) => {
  if (req.url === '/_calls') return res.end(JSON.stringify(calls));
  (calls[req.url] ??= []).push(Date.now());
  req.resume();
  res.writeHead(200).end();
});
server.listen(0, '127.0.0.1', () => console.log('port ' + server.address().port));
`;
const receiver = spawn(process.execPath, ['-e', RECEIVER], { stdio: ['ignore', 'pipe', 'inherit'] });
const port = await new Promise<number>((resolve, reject) => {
  receiver.stdout.on('data', (d: Buffer) => {
    const m = /port (\d+)/.exec(d.toString());
    if (m) resolve(Number(m[1]));
  });
  receiver.once('exit', () => reject(new Error('the receiver ended')));
});
const target = `http://127.0.0.1:${port}`;
const callsAt = async (): Promise<Record<string, number[]>> => (await fetch(`${target}/_calls`)).json() as Promise<Record<string, number[]>>;

const storage = backend === 'sqlite' ? undefined : await distributedStorage('rate');
const env: Record<string, string> = { ...(storage?.env ?? {}), FLOW_REFRESH: '500ms' };
if (backend === 'postgres') {
  delete env.RABBITMQ_URI;
  delete env.RABBITMQ_PREFIX;
}
const started: Array<Awaited<ReturnType<typeof startHookd>>> = [];
for (let i = 0; i < instances; i++) started.push(await startHookd(env));
try {
  const base = started[0]!.url;
  await api(base, 'PUT', '/api/flows/rated', { executionRate: { perSecond: rate, burst }, steps: [{ id: 'call', type: 'http', url: `${target}/rated` }] });
  await api(base, 'PUT', '/api/flows/free', { steps: [{ id: 'call', type: 'http', url: `${target}/free` }] });
  // Every instance knows both flows (and with RabbitMQ one holds the rated one).
  await new Promise((r) => setTimeout(r, 1_500));

  const send = async (flow: string, n: number): Promise<void> => {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < n) {
        const i = next++;
        const res = await fetch(`${started[i % started.length]!.url}/hook/${flow}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: `{"seq":${i}}` });
        await res.text();
        if (res.status !== 200) throw new Error(`${flow}: ${res.status}`);
      }
    };
    await Promise.all(Array.from({ length: 25 }, worker));
  };
  const t0 = Date.now();
  await Promise.all([send('rated', requests), send('free', requests)]);
  const intakeEnd = Date.now();
  const deadline = intakeEnd + (requests / rate) * 1_000 + 30_000;
  let calls = await callsAt();
  while ((calls['/rated']?.length ?? 0) < requests || (calls['/free']?.length ?? 0) < requests) {
    if (Date.now() > deadline) throw new Error('the calls did not all arrive');
    await new Promise((r) => setTimeout(r, 200));
    calls = await callsAt();
  }

  const rated = calls['/rated']!.sort((a, b) => a - b);
  const free = calls['/free']!.sort((a, b) => a - b);
  let most = 0;
  for (let i = 0, j = 0; i < rated.length; i++) {
    while (rated[i]! - rated[j]! >= 1_000) j++;
    most = Math.max(most, i - j + 1);
  }
  const perSecond: number[] = [];
  for (const t of rated) {
    const s = Math.floor((t - rated[0]!) / 1_000);
    perSecond[s] = (perSecond[s] ?? 0) + 1;
  }
  const after = rated.filter((t) => t >= intakeEnd);
  const afterRate = after.length > 1 ? ((after.length - 1) * 1_000) / (after.at(-1)! - after[0]!) : Number.NaN;
  const freeRate = ((free.length - 1) * 1_000) / Math.max(1, free.at(-1)! - free[0]!);
  console.log(`bench:execution-rate — ${backend}, ${instances} instance(s), executionRate ${rate}/s burst ${burst}; ${fmt(requests)} webhooks to it and ${fmt(requests)} to a flow without a rate, 25 connections each\n`);
  console.log(`intake took ${fmt(intakeEnd - t0)} ms`);
  console.log(`rated flow: most calls in any 1 s: ${most}   (rate + burst: ${rate + burst}; ratio ${fmt(most / (rate + burst), 2)})`);
  console.log(`rated flow: calls per second, in turn: ${perSecond.map((n) => n ?? 0).join(' ')}`);
  console.log(`rated flow after intake: ${fmt(afterRate, 1)} calls/s   (rate ${rate}; ratio ${fmt(afterRate / rate, 2)})`);
  console.log(`flow without a rate: ${fmt(freeRate, 1)} calls/s (all ${fmt(requests)} within ${fmt(free.at(-1)! - t0)} ms of the first webhook)`);
} finally {
  await Promise.all(started.map((h) => h.stop()));
  await storage?.remove();
  receiver.kill();
}
