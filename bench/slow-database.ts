import { spawn, type ChildProcess } from 'node:child_process';
import { api, arg, DATABASE_URL, distributedStorage, fmt, median, startHookd } from './lib.js';

/**
 * npm run bench:slow-database [-- --backend rabbitmq|postgres --delay 40 --rate 40 --seconds 30]
 *
 * hookd on a database farther away: PostgreSQL reached directly, then through a relay that holds
 * every chunk `--delay` ms each way (a round trip of twice that), in one run. Two flows with an
 * `http` step calling a receiver: `busy` gets `--rate` webhooks a second for `--seconds`, `limited`
 * (`concurrency: 1`) gets 20 at the start. Prints the busy flow's calls/s during the load against
 * the rate, and the time between the limited flow's calls (median, largest). The relay and the
 * receiver run in processes of their own, so this one's sending does not delay them.
 */
const backend = arg('backend', 'rabbitmq');
const delayMs = Number(arg('delay', '40'));
const rate = Number(arg('rate', '40'));
const seconds = Number(arg('seconds', '30'));
const LIMITED = 20;

const RECEIVER = `
const http = require('node:http');
const calls = { busy: [], limited: [] };
http.createServer((req, res) => {
  if (req.url === '/_calls') return res.end(JSON.stringify(calls));
  if (req.url === '/_reset') { calls.busy = []; calls.limited = []; return res.end(); }
  calls[req.url.slice(1)]?.push(Date.now());
  req.resume();
  req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
}).listen(0, '127.0.0.1', function () { console.log('port ' + this.address().port); });
`;
// Equal delays fire in order, so the bytes stay in order.
const RELAY = `
const net = require('node:net');
const [host, port, ms] = process.argv.slice(1);
net.createServer((c) => {
  const u = net.connect(Number(port), host);
  const end = () => { c.destroy(); u.destroy(); };
  for (const s of [c, u]) { s.on('error', end); s.on('close', end); }
  c.on('data', (d) => setTimeout(() => u.write(d), Number(ms)));
  u.on('data', (d) => setTimeout(() => c.write(d), Number(ms)));
}).listen(0, '127.0.0.1', function () { console.log('port ' + this.address().port); });
`;

function child(source: string, args: string[] = []): Promise<{ proc: ChildProcess; port: number }> {
  const proc = spawn(process.execPath, ['-e', source, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    proc.stdout!.on('data', (d: Buffer) => {
      const m = /port (\d+)/.exec(d.toString());
      if (m) resolve({ proc, port: Number(m[1]) });
    });
    proc.on('exit', (code) => reject(new Error(`child exited with ${code}`)));
  });
}

interface Result {
  busyPerSecond: number;
  sentPerSecond: number;
  gaps: number[];
  limitedDone: number;
}

async function run(receiverPort: number, databaseUrl: string): Promise<Result> {
  const storage = await distributedStorage('slowdb');
  const env: Record<string, string> = { ...storage.env, DATABASE_URL: databaseUrl };
  if (backend === 'postgres') delete env.RABBITMQ_URI;
  const hookd = await startHookd(env);
  const receiver = `http://127.0.0.1:${receiverPort}`;
  try {
    await api(hookd.url, 'PUT', '/api/flows/busy', { steps: [{ id: 'call', type: 'http', url: `${receiver}/busy`, method: 'POST' }] });
    await api(hookd.url, 'PUT', '/api/flows/limited', { concurrency: 1, steps: [{ id: 'call', type: 'http', url: `${receiver}/limited`, method: 'POST' }] });
    await new Promise((r) => setTimeout(r, 2_000));
    await fetch(`${receiver}/_reset`);
    const post = (flow: string) =>
      fetch(`${hookd.url}/hook/${flow}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"a":1}' }).then((r) => {
        if (r.status !== 200) throw new Error(`${flow}: ${r.status}`);
      });
    const t0 = Date.now();
    await Promise.all(Array.from({ length: LIMITED }, () => post('limited')));
    // --rate webhooks a second, in tenths of a second, without waiting for the answers.
    const sends: Array<Promise<void>> = [];
    for (let tick = 0; tick < seconds * 10; tick++) {
      for (let i = 0; i < rate / 10; i++) sends.push(post('busy'));
      await new Promise((r) => setTimeout(r, t0 + (tick + 1) * 100 - Date.now()));
    }
    const t1 = Date.now();
    await Promise.all(sends);
    const calls = (await (await fetch(`${receiver}/_calls`)).json()) as { busy: number[]; limited: number[] };
    const during = calls.busy.filter((t) => t <= t1).length;
    const limited = calls.limited.filter((t) => t <= t1);
    return {
      busyPerSecond: during / ((t1 - t0) / 1000),
      sentPerSecond: sends.length / ((t1 - t0) / 1000),
      gaps: limited.slice(1).map((t, i) => t - limited[i]!),
      limitedDone: limited.length,
    };
  } finally {
    await hookd.stop();
    await storage.remove();
  }
}

const receiver = await child(RECEIVER);
const target = new URL(DATABASE_URL);
const relay = await child(RELAY, [target.hostname, target.port || '5432', String(delayMs)]);
try {
  console.log(`bench:slow-database — ${backend === 'postgres' ? 'PostgreSQL queue' : 'RabbitMQ queue'}, busy flow ${rate} webhooks/s for ${seconds} s, ${LIMITED} to a concurrency-1 flow\n`);
  const relayed = new URL(DATABASE_URL);
  relayed.host = `127.0.0.1:${relay.port}`;
  for (const [name, url] of [['database direct', DATABASE_URL], [`database ${delayMs} ms away (each way)`, relayed.toString()]] as const) {
    const r = await run(receiver.port, url);
    console.log(
      `${name.padEnd(34)} busy: ${fmt(r.busyPerSecond, 1)} calls/s of ${fmt(r.sentPerSecond, 1)} sent/s   ` +
        `limited: ${r.limitedDone}/${LIMITED} called during the load, ${fmt(r.gaps.length ? median(r.gaps) : NaN)} ms between calls (median), ${fmt(r.gaps.length ? Math.max(...r.gaps) : NaN)} ms at most`,
    );
  }
} finally {
  relay.proc.kill();
  receiver.proc.kill();
}
