import { Connection } from 'rabbitmq-client';
import { arg, cpuSecondsOf, fmt } from './lib.js';

/**
 * npm run bench:acks [-- --messages 20000]
 *
 * What batching acks saves the broker (src/queue/rabbitmq/batched-acks.ts): a quorum queue logs
 * every settlement. In one run, the same number of persistent messages is consumed (prefetch 64)
 * from a quorum queue acked one by one, then acked once per event-loop turn with `multiple`;
 * prints messages/s and the broker's CPU (beam.smp, from /proc) per message for each.
 */
const RABBITMQ_URI = process.env.RABBITMQ_URI ?? 'amqp://guest:guest@127.0.0.1:5672';
const messages = Number(arg('messages', '20000'));

async function consume(conn: Connection, mode: 'single' | 'batched'): Promise<{ rate: number; brokerUs: number }> {
  const queue = `hookd-bench-acks-${process.pid}-${mode}`;
  await conn.queueDeclare({ queue, durable: true, arguments: { 'x-queue-type': 'quorum' } });
  const pub = conn.createPublisher({ confirm: true });
  const body = Buffer.from(JSON.stringify({ id: 'j', flowId: 'bench', requestId: 'r', attempts: 1, maxAttempts: 5, enqueuedAt: Date.now() }));
  for (let i = 0; i < messages; i += 500) {
    await Promise.all(Array.from({ length: Math.min(500, messages - i) }, () => pub.send({ routingKey: queue, durable: true }, body)));
  }
  await pub.close();
  const ch = await conn.acquire();
  await ch.basicQos({ prefetchCount: 64 });
  const cpu0 = cpuSecondsOf(['beam.smp']) ?? 0;
  const t0 = performance.now();
  let got = 0;
  let upTo = 0;
  let scheduled = false;
  await new Promise<void>((resolve) => {
    void ch.basicConsume({ queue }, (msg) => {
      got++;
      if (mode === 'single') ch.basicAck({ deliveryTag: msg.deliveryTag });
      else {
        upTo = Math.max(upTo, msg.deliveryTag);
        if (!scheduled) {
          scheduled = true;
          setImmediate(() => {
            scheduled = false;
            ch.basicAck({ deliveryTag: upTo, multiple: true });
          });
        }
      }
      if (got === messages) setTimeout(resolve, 200); // the last acks reach the broker
    });
  });
  const seconds = (performance.now() - t0) / 1000;
  const cpu = (cpuSecondsOf(['beam.smp']) ?? 0) - cpu0;
  await ch.close();
  await conn.queueDelete({ queue });
  return { rate: messages / seconds, brokerUs: (cpu * 1e6) / messages };
}

const conn = new Connection({ url: RABBITMQ_URI, retryLow: 100, retryHigh: 1_000 });
conn.on('error', () => {});
await conn.onConnect(5_000);
console.log(`bench:acks — ${messages} persistent messages per side, quorum queue, prefetch 64, RabbitMQ ${new URL(RABBITMQ_URI).host}\n`);
const single = await consume(conn, 'single');
const batched = await consume(conn, 'batched');
await conn.close();
for (const [name, r] of [['acked one by one', single], ['acked per turn (multiple)', batched]] as const) {
  console.log(`${name.padEnd(26)} ${fmt(r.rate).padStart(7)} msg/s   broker CPU ${fmt(r.brokerUs).padStart(3)} µs/msg`);
}
console.log(`\nbroker CPU per message, batched ÷ single: ${fmt(batched.brokerUs / single.brokerUs, 2)}`);
