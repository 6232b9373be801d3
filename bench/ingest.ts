import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { arg, autocannon, fmt, type LoadResult, percentile, ROOT, startProcess } from './lib.js';

/**
 * npm run bench:ingest [-- --seconds 10 --connections 64]
 *
 * In one run, from a separate load process (autocannon): (a) a bare node:http server answering 200,
 * (b) hookd (SQLite, synchronous=FULL) with a started flow. Prints req/s, p50/p99 latency, the
 * ratio hookd ÷ node:http, and request → first step started (p50) under load and unloaded.
 */
const seconds = Number(arg('seconds', '10'));
const connections = Number(arg('connections', '64'));
const TOKEN = 'bench-token';
// 130 bytes of JSON, a typical small webhook.
const BODY = JSON.stringify({ event: 'order.created', id: 'ord_0123456789', total: 129.95, currency: 'EUR', customer: { id: 'cus_42', tier: 'gold' }, x: 'abcdef' });

async function api(base: string, method: string, p: string, body?: unknown): Promise<any> {
  const res = await fetch(base + p, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${await res.text()}`);
  return res.status === 204 ? undefined : res.json();
}

async function queueDelays(base: string, flowId: string, expected: number): Promise<number[]> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const delays: number[] = [];
    let before: string | undefined;
    let done = 0;
    let total = 0;
    for (;;) {
      const page = await api(base, 'GET', `/api/executions?flowId=${flowId}&limit=1000${before ? `&before=${before}` : ''}`);
      for (const e of page.items) {
        total++;
        if (e.status === 'completed') done++;
        if (typeof e.queueDelayMs === 'number') delays.push(e.queueDelayMs);
      }
      if (!page.next) break;
      before = page.next;
    }
    if ((done >= expected && total >= expected) || Date.now() > deadline) return delays;
    await new Promise((r) => setTimeout(r, 500));
  }
}

function row(name: string, r: LoadResult): string {
  return `${name.padEnd(22)} ${fmt(r.rps).padStart(8)} req/s   p50 ${fmt(r.p50, 1).padStart(6)} ms   p99 ${fmt(r.p99, 1).padStart(6)} ms   non-2xx ${r.non2xx}  errors ${r.errors}`;
}

async function main(): Promise<void> {
  console.log(`bench:ingest — ${connections} connections, ${seconds} s, ${Buffer.byteLength(BODY)}-byte JSON POST, load from a separate process (autocannon)\n`);

  const base = await startProcess(process.execPath, [path.join(ROOT, 'dist/bench/baseline-server.js')], {}, /LISTENING (\d+)/);
  const baseUrl = `http://127.0.0.1:${base.match[1]}/hook/bench`;
  await autocannon({ url: baseUrl, connections, seconds: 2, body: BODY }); // warm-up
  const a = await autocannon({ url: baseUrl, connections, seconds, body: BODY });
  await base.stop();

  const dataDir = mkdtempSync(path.join(tmpdir(), 'hookd-bench-'));
  // info: the start-up lines (the address) only; request logging is off.
  const hookd = await startProcess(
    process.execPath,
    [path.join(ROOT, 'dist/src/main.js')],
    { DATA_DIR: dataDir, LISTEN_HOST: '127.0.0.1', LISTEN_PORT: '0', HOOKD_ADMIN_TOKEN: TOKEN, LOG_LEVEL: 'info' },
    /"address":"(http:\/\/[^"]+)"/,
  );
  const hookdBase = hookd.match[1]!;
  await api(hookdBase, 'PUT', '/api/flows/bench', { steps: [{ id: 'shape', type: 'transform', expression: '{ "id": body.id, "total": body.total }' }] });
  await api(hookdBase, 'PUT', '/api/flows/warmup', { steps: [{ id: 'shape', type: 'transform', expression: 'body' }] });
  await autocannon({ url: `${hookdBase}/hook/warmup`, connections, seconds: 2, body: BODY });
  const b = await autocannon({ url: `${hookdBase}/hook/bench`, connections, seconds, body: BODY });
  const loaded = await queueDelays(hookdBase, 'bench', b.total - b.non2xx);

  // Unloaded: one request at a time, the latency a lone webhook sees.
  await api(hookdBase, 'PUT', '/api/flows/probe', { steps: [{ id: 'shape', type: 'transform', expression: 'body' }] });
  for (let i = 0; i < 300; i++) {
    await fetch(`${hookdBase}/hook/probe`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: BODY });
    await new Promise((r) => setTimeout(r, 2));
  }
  const idle = await queueDelays(hookdBase, 'probe', 300);
  await hookd.stop();
  rmSync(dataDir, { recursive: true, force: true });

  console.log(row('node:http (baseline)', a));
  console.log(row('hookd (sqlite, FULL)', b));
  console.log(`\nratio hookd ÷ node:http: ${fmt(b.rps / a.rps, 2)}   (target ≥ 0.50)`);
  console.log(`request → first step started, p50: ${fmt(percentile(idle, 50), 2)} ms unloaded (p99 ${fmt(percentile(idle, 99), 2)} ms, n=${idle.length}; target ≤ 2 ms)`);
  console.log(`                                   ${fmt(percentile(loaded, 50), 2)} ms under the load above (n=${loaded.length})`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
