import { Connection } from 'rabbitmq-client';
import { ConfirmPublisher } from '../src/queue/rabbitmq/confirm-publisher.js';
import { arg, cpuSecondsOf, fmt } from './lib.js';

/**
 * npm run bench:publish [-- --messages 40000 --rounds 3]
 *
 * What coalescing the publishes of one event-loop tick into one socket write saves
 * (ConfirmPublisher.corkForTick). The ingress publishes in bursts: a PostgreSQL group commit
 * resolves a batch of requests in one tick and each publishes its job. This replays that shape —
 * 4 lanes of 16 confirmed publishes at once, each lane waiting for its confirms before the next
 * burst (64 in flight) — against a quorum queue, writes coalesced or one write per publish,
 * alternating A-B for `rounds` rounds; prints publishes/s, this process's CPU and the broker's
 * (beam.smp, from /proc) per publish, and the medians' ratios.
 */
const RABBITMQ_URI = process.env.RABBITMQ_URI ?? 'amqp://guest:guest@127.0.0.1:5672';
const messages = Number(arg('messages', '40000'));
const rounds = Number(arg('rounds', '3'));
const BURST = 16;
const LANES = 4;

interface Result {
  rate: number;
  clientUs: number;
  brokerUs: number;
}

async function run(conn: Connection, queue: string, coalesceWrites: boolean): Promise<Result> {
  const pub = new ConfirmPublisher(conn, { maxUnconfirmed: 10_000, confirmTimeoutMs: 10_000, logger: { warn: () => {}, error: () => {}, info: () => {} }, coalesceWrites });
  const body = Buffer.from(JSON.stringify({ id: '0193a1b2-c3d4-7e5f-8a9b-0123456789ab', flowId: 'bench', requestId: '0193a1b2-c3d4-7e5f-8a9b-0123456789ac', attempts: 1, maxAttempts: 5, enqueuedAt: Date.now() }));
  await pub.send({ routingKey: queue, durable: true, messageId: 'warm-up' }, body); // the channel is open
  let sent = 0;
  const lane = async (): Promise<void> => {
    while (sent < messages) {
      const burst: Array<Promise<void>> = [];
      for (let i = 0; i < BURST && sent < messages; i++, sent++) burst.push(pub.send({ routingKey: queue, durable: true, messageId: `m${sent}` }, body));
      await Promise.all(burst);
    }
  };
  const broker0 = cpuSecondsOf(['beam.smp']) ?? 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: LANES }, lane));
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const broker = (cpuSecondsOf(['beam.smp']) ?? 0) - broker0;
  await pub.close();
  await conn.queuePurge({ queue });
  return { rate: messages / seconds, clientUs: (cpu.user + cpu.system) / messages, brokerUs: (broker * 1e6) / messages };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const conn = new Connection({ url: RABBITMQ_URI, retryLow: 100, retryHigh: 1_000 });
conn.on('error', () => {});
await conn.onConnect(5_000);
const queue = `hookd-bench-publish-${process.pid}`;
await conn.queueDeclare({ queue, durable: true, arguments: { 'x-queue-type': 'quorum' } });
console.log(`bench:publish — ${messages} confirmed persistent publishes per run, bursts of ${BURST} × ${LANES} lanes, quorum queue, ${rounds} A-B rounds, RabbitMQ ${new URL(RABBITMQ_URI).host}\n`);
const one: Result[] = [];
const coalesced: Result[] = [];
try {
  for (let r = 0; r < rounds; r++) {
    one.push(await run(conn, queue, false));
    coalesced.push(await run(conn, queue, true));
  }
} finally {
  await conn.queueDelete({ queue });
  await conn.close();
}
for (const [name, rs] of [['one write per publish', one], ['one write per tick', coalesced]] as const) {
  for (const r of rs) console.log(`${name.padEnd(22)} ${fmt(r.rate).padStart(7)} publishes/s   client CPU ${fmt(r.clientUs, 1).padStart(5)} µs   broker CPU ${fmt(r.brokerUs, 1).padStart(5)} µs per publish`);
}
const m = (rs: Result[], k: keyof Result) => median(rs.map((r) => r[k]));
console.log(`\nmedians, per tick ÷ per publish: publishes/s ${fmt(m(coalesced, 'rate') / m(one, 'rate'), 2)}, client CPU ${fmt(m(coalesced, 'clientUs') / m(one, 'clientUs'), 2)}, broker CPU ${fmt(m(coalesced, 'brokerUs') / m(one, 'brokerUs'), 2)}`);
