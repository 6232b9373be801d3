import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import path from 'node:path';
import pg from 'pg';
import { Connection } from 'rabbitmq-client';
import { randomBytes } from 'node:crypto';

export const ROOT = path.resolve(import.meta.dirname, '../..');
const require = createRequire(import.meta.url);

export interface LoadResult {
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
  total: number;
  /** CPU time (user + system, all threads) the server process spent per request, when measured. */
  cpuUs?: number;
  /** CPU time per request of the processes named in alsoCpuOf (broker, database), when measured. */
  othersCpuUs?: number;
}

/**
 * CPU seconds (user + system, every thread) a process has used so far, from /proc; undefined where
 * there is no /proc. Throughput alone hides where the time goes on a shared 2-core machine.
 */
export function cpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime, stime: fields 14 and 15 of stat(5), counted from the state field (3) here.
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

/**
 * CPU seconds used so far by every process whose command name (comm) is one of `names` — e.g. the
 * broker (`beam.smp`) and the database (`postgres`), which share this machine with the server.
 */
export function cpuSecondsOf(names: readonly string[]): number | undefined {
  let total = 0;
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return undefined;
  }
  for (const pid of entries) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      if (names.includes(comm)) total += cpuSeconds(Number(pid)) ?? 0;
    } catch {
      // The process ended meanwhile.
    }
  }
  return total;
}

/**
 * The load generator (`--load autocannon|wrk`, default autocannon). wrk (Debian's package) is C:
 * it takes a fraction of autocannon's CPU per request, which on this 2-core machine is CPU the
 * server under test gets back; a single-threaded baseline (node:http) gains little from that, so
 * a ratio can differ between the two. Say which one measured a figure.
 */
export const LOAD_GENERATOR = arg('load', 'autocannon') === 'wrk' ? 'wrk' : 'autocannon';

export interface LoadOptions {
  url: string;
  connections: number;
  seconds: number;
  body: string;
  headers?: Record<string, string>;
  /** The server's pid: its CPU time per request is measured too. */
  pid?: number;
  /** Other processes (by command name) whose CPU per request is measured too, e.g. ['beam.smp']. */
  alsoCpuOf?: readonly string[];
  /** Send this many requests, then stop (instead of `seconds`); always autocannon (wrk cannot). */
  amount?: number;
}

/** POST load from a separate process (LOAD_GENERATOR), with the CPU the server (and others) spent per request. */
export async function load(opts: LoadOptions): Promise<LoadResult> {
  const cpuBefore = cpuSeconds(opts.pid);
  const othersBefore = opts.alsoCpuOf ? cpuSecondsOf(opts.alsoCpuOf) : undefined;
  const result = LOAD_GENERATOR === 'wrk' && opts.amount === undefined ? await wrk(opts) : await autocannon(opts);
  const cpuAfter = cpuSeconds(opts.pid);
  const othersAfter = opts.alsoCpuOf ? cpuSecondsOf(opts.alsoCpuOf) : undefined;
  if (cpuBefore !== undefined && cpuAfter !== undefined && result.total > 0) {
    result.cpuUs = ((cpuAfter - cpuBefore) * 1e6) / result.total;
  }
  if (othersBefore !== undefined && othersAfter !== undefined && result.total > 0) {
    result.othersCpuUs = ((othersAfter - othersBefore) * 1e6) / result.total;
  }
  return result;
}

async function autocannon(opts: LoadOptions): Promise<LoadResult> {
  const bin = require.resolve('autocannon/autocannon.js');
  const args = [bin, '-j', '-c', String(opts.connections), '-d', String(opts.seconds), '-m', 'POST', '-b', opts.body, '-H', 'content-type=application/json'];
  for (const [k, v] of Object.entries(opts.headers ?? {})) args.push('-H', `${k}=${v}`);
  if (opts.amount !== undefined) args.push('-a', String(opts.amount));
  args.push(opts.url);
  const r = JSON.parse(await run(process.execPath, args)) as {
    requests: { average: number; total: number };
    latency: { p50: number; p99: number };
    non2xx: number;
    errors: number;
  };
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, non2xx: r.non2xx, errors: r.errors, total: r.requests.total };
}

/**
 * wrk, one thread, with a Lua script that sets the POST and prints its summary as JSON. Body and
 * headers travel in the environment (no escaping into Lua source). wrk counts statuses ≥ 400 as
 * errors of their own: those are the non-2xx here (hookd answers no 3xx).
 */
async function wrk(opts: LoadOptions): Promise<LoadResult> {
  const headers = { 'content-type': 'application/json', ...opts.headers };
  const env: Record<string, string> = { BENCH_BODY: opts.body, BENCH_HEADERS: Object.keys(headers).length.toString() };
  Object.entries(headers).forEach(([k, v], i) => {
    env[`BENCH_H${i}_NAME`] = k;
    env[`BENCH_H${i}_VALUE`] = v;
  });
  const script = path.join(mkdtempSync(path.join(tmpdir(), 'hookd-wrk-')), 'post.lua');
  writeFileSync(
    script,
    `wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
for i = 0, tonumber(os.getenv("BENCH_HEADERS")) - 1 do
  wrk.headers[os.getenv("BENCH_H" .. i .. "_NAME")] = os.getenv("BENCH_H" .. i .. "_VALUE")
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('\\n{"requests":%d,"duration":%d,"p50":%d,"p99":%d,"status":%d,"errors":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout))
end
`,
  );
  try {
    const out = await run('wrk', ['-t', '1', '-c', String(opts.connections), '-d', `${opts.seconds}s`, '-s', script, opts.url], env);
    const line = /^\{"requests".*\}$/m.exec(out);
    if (!line) throw new Error(`wrk printed no summary: ${out}`);
    const r = JSON.parse(line[0]) as { requests: number; duration: number; p50: number; p99: number; status: number; errors: number };
    return { rps: r.requests / (r.duration / 1e6), p50: r.p50 / 1000, p99: r.p99 / 1000, non2xx: r.status, errors: r.errors, total: r.requests };
  } finally {
    rmSync(path.dirname(script), { recursive: true, force: true });
  }
}

function run(cmd: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d));
    p.stderr.on('data', (d: Buffer) => (err += d));
    p.on('error', (e) => reject(new Error(`${cmd} could not run (${e.message})${cmd === 'wrk' ? ': install it (Debian: apt-get install wrk) or use --load autocannon' : ''}`)));
    p.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} exited ${code}: ${err}`))));
  });
}

/** Start a process and wait for a line matching `ready`; resolves with the match. */
export function startProcess(
  cmd: string,
  args: string[],
  env: Record<string, string>,
  ready: RegExp,
): Promise<{ proc: ChildProcess; match: RegExpExecArray; stop(): Promise<void> }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const onData = (d: Buffer) => {
      out += d;
      const m = ready.exec(out);
      if (m) {
        proc.stdout!.off('data', onData);
        proc.stdout!.resume();
        resolve({
          proc,
          match: m,
          stop: () =>
            new Promise<void>((r) => {
              proc.once('exit', () => r());
              proc.kill('SIGTERM');
            }),
        });
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', (d: Buffer) => (out += d));
    proc.on('exit', (code) => reject(new Error(`${cmd} exited (${code}) before ready:\n${out}`)));
  });
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

export function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

export const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

/** The admin token every benchmarked hookd is started with. */
export const TOKEN = 'bench-token';

/** Call hookd's admin API; throws on a non-2xx answer. */
export async function api(base: string, method: string, p: string, body?: unknown): Promise<any> {
  const res = await fetch(base + p, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${await res.text()}`);
  return res.status === 204 ? undefined : res.json();
}

/**
 * hookd as `npm start` runs it (dist/), in its own temp DATA_DIR, on a free loopback port; `root`:
 * another checkout's build (bench:ab compares two).
 */
export async function startHookd(
  env: Record<string, string> = {},
  root = ROOT,
): Promise<{ url: string; pid: number | undefined; dataDir: string; stop(): Promise<void> }> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'hookd-bench-'));
  // info: only the start-up lines (the address); request logging is off.
  const p = await startProcess(
    process.execPath,
    [path.join(root, 'dist/src/main.js')],
    { DATA_DIR: dataDir, LISTEN_HOST: '127.0.0.1', LISTEN_PORT: '0', HOOKD_ADMIN_TOKEN: TOKEN, LOG_LEVEL: 'info', ...env },
    /"address":"(http:\/\/[^"]+)"/,
  );
  return {
    url: p.match[1]!,
    pid: p.proc.pid,
    dataDir,
    stop: async () => {
      await p.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * The largest size a file reaches while `during` runs, sampled every 250 ms (0 while it does not
 * exist): the embedded store's WAL under load.
 */
export async function largestSizeDuring<T>(file: string, during: Promise<T>): Promise<{ result: T; largest: number }> {
  let largest = 0;
  const sample = (): void => {
    try {
      largest = Math.max(largest, statSync(file).size);
    } catch {
      // Not there (yet).
    }
  };
  const timer = setInterval(sample, 250);
  try {
    const result = await during;
    sample();
    return { result, largest };
  } finally {
    clearInterval(timer);
  }
}

/** One result line: req/s, p50/p99 latency, refusals. */
export function row(name: string, r: LoadResult, width = 22): string {
  const cpu =
    (r.cpuUs === undefined ? '' : `   CPU ${fmt(r.cpuUs).padStart(4)} µs/req`) +
    (r.othersCpuUs === undefined ? '' : ` (+ services ${fmt(r.othersCpuUs).padStart(4)})`);
  return `${name.padEnd(width)} ${fmt(r.rps).padStart(8)} req/s   p50 ${fmt(r.p50, 1).padStart(6)} ms   p99 ${fmt(r.p99, 1).padStart(6)} ms${cpu}   non-2xx ${r.non2xx}  errors ${r.errors}`;
}

/** Executions of a flow that completed within [from, to] (epoch ms), per second (paging through the API). */
export async function completedPerSecond(base: string, flowId: string, from: number, to: number): Promise<number> {
  let n = 0;
  let before: string | undefined;
  for (;;) {
    const page = await api(base, 'GET', `/api/executions?flowId=${flowId}&limit=1000${before ? `&before=${before}` : ''}`);
    for (const e of page.items) {
      const at = Date.parse(e.finishedAt);
      if (e.status === 'completed' && at >= from && at <= to) n++;
    }
    if (!page.next) return (n * 1000) / (to - from);
    before = page.next;
  }
}

/**
 * Poll hookd's queue until it holds no job (ready, in flight or delayed), every `everyMs`, for at
 * most `timeoutMs`; resolves with the last stats (dead letters included).
 */
export async function queueEmpty(base: string, everyMs = 200, timeoutMs = 180_000): Promise<{ ready: number; inFlight: number; delayed: number; dead: number }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const q = await api(base, 'GET', '/api/queue');
    if (q.ready + q.inFlight + q.delayed === 0 || Date.now() > deadline) return q;
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** The PostgreSQL the distributed benchmarks use: DATABASE_URL, or the local `test` database. */
export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const RABBITMQ_URI = process.env.RABBITMQ_URI ?? 'amqp://guest:guest@127.0.0.1:5672';

/** Delete a run's RabbitMQ queues (messages and all) and its exchange. */
export async function deleteRabbitMq(prefix: string, queues: readonly string[]): Promise<void> {
  const conn = new Connection({ url: RABBITMQ_URI, retryLow: 100, retryHigh: 500 });
  conn.on('error', () => {});
  await conn.onConnect(5_000);
  try {
    for (const queue of queues) await conn.queueDelete({ queue });
    await conn.exchangeDelete({ exchange: prefix });
    await conn.exchangeDelete({ exchange: `${prefix}.delay` });
  } finally {
    await conn.close();
  }
}

/**
 * The queues of a hookd prefix on the local broker (flow queues included: AMQP cannot list them,
 * rabbitmqctl can).
 */
function hookdQueues(prefix: string): string[] {
  const out = execFileSync('rabbitmqctl', ['-q', 'list_queues', 'name'], { encoding: 'utf8', timeout: 60_000 });
  return out.split('\n').map((l) => l.trim()).filter((name) => name.startsWith(`${prefix}.`));
}

/**
 * Where one distributed hookd run keeps its data: a fresh PostgreSQL schema and RabbitMQ prefix
 * (`env` for startHookd, with a secret key of its own), and `remove()` to drop both afterwards.
 */
export async function distributedStorage(name: string): Promise<{ env: Record<string, string>; remove(): Promise<void> }> {
  const schema = `hookd_bench_${name}_${randomBytes(4).toString('hex')}`;
  await pgExec(`CREATE SCHEMA "${schema}"`);
  return {
    env: { DATABASE_URL, DATABASE_SCHEMA: schema, RABBITMQ_URI, RABBITMQ_PREFIX: schema, HOOKD_SECRET_KEY: randomBytes(32).toString('hex') },
    remove: async () => {
      await pgExec(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await deleteRabbitMq(schema, hookdQueues(schema));
    },
  };
}

/** Run one SQL statement on DATABASE_URL (schemas per run: create, drop). */
export async function pgExec(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: DATABASE_URL, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** The median (of rounds' ratios: one round on a noisy machine can mislead). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}
