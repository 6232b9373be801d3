import { api, arg, load, cpuSecondsOf, distributedStorage, fmt, median, startHookd } from './lib.js';

/**
 * npm run bench:job-payload [-- --workers 0 --rounds 3 --seconds 8]
 *
 * What a flow's jobMessage.includeRequest costs: hookd on PostgreSQL + RabbitMQ, the flow with job
 * messages that carry their request vs without, A-B then B-A, 64 connections, 130-byte JSON. Prints req/s
 * and CPU per request of hookd and of the services (RabbitMQ, PostgreSQL), and the medians of the
 * ratios. --workers 64: hookd's workers run the flow too (they parse the larger messages).
 */
const workers = arg('workers', '0');
const rounds = Math.max(1, Number(arg('rounds', '3')));
const seconds = Number(arg('seconds', '8'));
const BODY = JSON.stringify({ event: 'order.created', id: 'ord_0123456789', total: 129.95, currency: 'EUR', customer: { id: 'cus_42', tier: 'gold' }, x: 'abc' });

interface Run {
  rps: number;
  cpuUs: number;
  servicesUs: number;
}

async function run(includeRequest: boolean): Promise<Run> {
  const storage = await distributedStorage('payload');
  const h = await startHookd({ ...storage.env, WORKER_CONCURRENCY: workers });
  try {
    await api(h.url, 'PUT', '/api/flows/bench', {
      steps: [{ id: 'shape', type: 'transform', expression: '{ "id": body.id, "total": body.total }' }],
      ...(includeRequest ? { jobMessage: { includeRequest: true } } : {}),
    });
    const url = `${h.url}/hook/bench`;
    await load({ url, connections: 64, seconds: 2, body: BODY }); // warm-up
    const from = cpuSecondsOf(['beam.smp', 'postgres']) ?? NaN;
    const r = await load({ url, connections: 64, seconds, body: BODY, ...(h.pid ? { pid: h.pid } : {}) });
    const to = cpuSecondsOf(['beam.smp', 'postgres']) ?? NaN;
    if (r.non2xx + r.errors > 0) throw new Error(`${r.non2xx} non-2xx, ${r.errors} errors`);
    return { rps: r.rps, cpuUs: r.cpuUs ?? NaN, servicesUs: ((to - from) * 1e6) / r.total };
  } finally {
    await h.stop();
    await storage.remove();
  }
}

const line = (name: string, r: Run) => `${name} ${fmt(r.rps).padStart(6)} req/s, ${fmt(r.cpuUs)} + ${fmt(r.servicesUs)} µs CPU per request`;
console.log(`bench:job-payload — jobMessage.includeRequest on vs off, WORKER_CONCURRENCY=${workers}, ${rounds} A-B rounds of ${seconds} s\n`);
const rps: number[] = [];
const cpu: number[] = [];
for (let i = 0; i < rounds; i++) {
  const got: { on?: Run; off?: Run } = {};
  for (const which of i % 2 === 0 ? (['off', 'on'] as const) : (['on', 'off'] as const)) got[which] = await run(which === 'on');
  const off = got.off!;
  const on = got.on!;
  console.log(`round ${i + 1}: ${line('off', off)}   ${line('on', on)}`);
  rps.push(on.rps / off.rps);
  cpu.push((on.cpuUs + on.servicesUs) / (off.cpuUs + off.servicesUs));
}
console.log(`\non ÷ off (medians): req/s ${fmt(median(rps), 2)}, CPU per request (hookd + services) ${fmt(median(cpu), 2)}`);
