import { randomUUID } from 'node:crypto';
import Fastify from 'fastify';
import { Connection } from 'rabbitmq-client';

/**
 * The distributed baseline ("the system we learn from", the Open Integration Hub's webhook
 * component): a bare fastify server that publishes each request's body to RabbitMQ and answers 200
 * at once. Fire-and-forget: no publisher confirms, no database, so a 200 can still be lost (broker
 * crash, connection drop, resource alarm) — the loss window hookd closes.
 *
 * env: RABBITMQ_URI, BASELINE_PREFIX (exchange `<prefix>`, quorum queue `<prefix>.work` bound `*.job`).
 * Prints `LISTENING <port>` when ready.
 */
const url = process.env.RABBITMQ_URI ?? 'amqp://guest:guest@127.0.0.1:5672';
const prefix = process.env.BASELINE_PREFIX ?? 'hookd-baseline';

const conn = new Connection({ url, retryLow: 100, retryHigh: 1_000 });
conn.on('error', (err) => process.stderr.write(`baseline: rabbitmq: ${String(err)}\n`));
await conn.onConnect(5_000);
// Same broker-side shape as hookd's first deliveries: a durable topic exchange, a quorum queue.
await conn.exchangeDeclare({ exchange: prefix, type: 'topic', durable: true });
await conn.queueDeclare({ queue: `${prefix}.work`, durable: true, arguments: { 'x-queue-type': 'quorum' } });
await conn.queueBind({ queue: `${prefix}.work`, exchange: prefix, routingKey: '*.job' });
const publisher = conn.createPublisher({ confirm: false });

const app = Fastify({ logger: false, bodyLimit: 10 * 1024 * 1024 });
app.post<{ Params: { flowId: string } }>('/hook/:flowId', async (request) => {
  const id = randomUUID();
  const { flowId } = request.params;
  // Resolves once written to the socket: nothing says the broker has it.
  await publisher.send(
    { exchange: prefix, routingKey: `flow-${flowId}.job`, durable: true, contentType: 'application/json', messageId: id },
    { id, flowId, receivedAt: Date.now(), headers: request.headers, body: request.body },
  );
  return { requestId: id, message: 'thank you' };
});

const address = await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`LISTENING ${new URL(address).port}\n`);

process.on('SIGTERM', () => {
  void (async () => {
    await app.close();
    await publisher.close();
    await conn.close();
    process.exit(0);
  })();
});
