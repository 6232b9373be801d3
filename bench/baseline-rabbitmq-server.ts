import { randomUUID } from 'node:crypto';
import Fastify from 'fastify';
import pg from 'pg';
import { Connection } from 'rabbitmq-client';

/**
 * The distributed baseline ("the system we learn from", the Open Integration Hub's webhook
 * component): a bare fastify server that publishes each request's body to RabbitMQ and answers 200
 * at once. Fire-and-forget: no publisher confirms, no database, so a 200 can still be lost (broker
 * crash, connection drop, resource alarm) — the loss window hookd closes.
 *
 * BASELINE_DURABLE=pg: the same server made durable the simplest way that meets issue 6 (the
 * ceiling of that design before any hookd feature): the requests of one event-loop turn inserted
 * in one statement and committed in PostgreSQL (DATABASE_URL, table `<prefix>_requests`, dropped
 * at exit), then each published with a publisher confirm; 200 once both are done. No outbox: a
 * crash between the commit and the confirm leaves a stored request without its message, a gap
 * hookd's outbox closes.
 *
 * BASELINE_DURABLE=confirm: the broker as the only record (issue 6 allows it: the request record
 * written later by the consumer): a confirmed publish, no database at the ingress.
 *
 * env: RABBITMQ_URI, BASELINE_PREFIX (exchange `<prefix>`, quorum queue `<prefix>.work` bound `*.job`).
 * Prints `LISTENING <port>` when ready.
 */
const url = process.env.RABBITMQ_URI ?? 'amqp://guest:guest@127.0.0.1:5672';
const prefix = process.env.BASELINE_PREFIX ?? 'hookd-baseline';
/** '' (fire-and-forget), 'confirm' (the broker's confirm only), 'pg' (PostgreSQL commit, then the confirm). */
const mode = process.env.BASELINE_DURABLE ?? '';
const durable = mode === 'pg' || mode === 'confirm';
const withDatabase = mode === 'pg';

const conn = new Connection({ url, retryLow: 100, retryHigh: 1_000 });
conn.on('error', (err) => process.stderr.write(`baseline: rabbitmq: ${String(err)}\n`));
await conn.onConnect(5_000);
// Same broker-side shape as hookd's first deliveries: a durable topic exchange, a quorum queue.
await conn.exchangeDeclare({ exchange: prefix, type: 'topic', durable: true });
await conn.queueDeclare({ queue: `${prefix}.work`, durable: true, arguments: { 'x-queue-type': 'quorum' } });
await conn.queueBind({ queue: `${prefix}.work`, exchange: prefix, routingKey: '*.job' });
const publisher = conn.createPublisher({ confirm: durable });

interface Message {
  id: string;
  flowId: string;
  receivedAt: number;
  headers: unknown;
  body: unknown;
}
const publish = (m: Message): Promise<void> =>
  publisher.send({ exchange: prefix, routingKey: `flow-${m.flowId}.job`, durable: true, contentType: 'application/json', messageId: m.id }, m);

const table = `"${prefix}_requests"`;
const pool = withDatabase ? new pg.Pool({ connectionString: process.env.DATABASE_URL ?? 'postgres://127.0.0.1:5432/test', max: 4 }) : undefined;
if (pool) await pool.query(`CREATE TABLE IF NOT EXISTS ${table} (id text PRIMARY KEY, flow_id text NOT NULL, received_at timestamptz NOT NULL, headers jsonb NOT NULL, raw_body bytea NOT NULL)`);

/** The requests of one event-loop turn, committed in one statement. */
let batch: { m: Message; raw: Buffer; done: (err?: unknown) => void }[] = [];
function commitBatch(): void {
  const rows = batch;
  batch = [];
  pool!
    .query(
      `INSERT INTO ${table} SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::jsonb[], $5::bytea[])`,
      [rows.map((r) => r.m.id), rows.map((r) => r.m.flowId), rows.map((r) => new Date(r.m.receivedAt)), rows.map((r) => JSON.stringify(r.m.headers)), rows.map((r) => r.raw)],
    )
    .then(
      () => rows.forEach((r) => r.done()),
      (err: unknown) => rows.forEach((r) => r.done(err)),
    );
}
const stored = (m: Message, raw: Buffer): Promise<void> =>
  new Promise((resolve, reject) => {
    if (batch.length === 0) setImmediate(commitBatch);
    batch.push({ m, raw, done: (err) => (err ? reject(err) : resolve()) });
  });

const app = Fastify({ logger: false, bodyLimit: 10 * 1024 * 1024 });
if (durable) {
  // The raw bytes are stored, as issue 3 asks: read them as a buffer, then parse.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
}
app.post<{ Params: { flowId: string } }>('/hook/:flowId', async (request) => {
  const id = randomUUID();
  const { flowId } = request.params;
  if (!durable) {
    // Resolves once written to the socket: nothing says the broker has it.
    await publish({ id, flowId, receivedAt: Date.now(), headers: request.headers, body: request.body });
    return { requestId: id, message: 'thank you' };
  }
  const raw = request.body as Buffer;
  const m: Message = { id, flowId, receivedAt: Date.now(), headers: request.headers, body: JSON.parse(raw.toString('utf8')) };
  if (withDatabase) await stored(m, raw);
  await publish(m); // resolves on the broker's confirm
  return { requestId: id, message: 'thank you' };
});

const address = await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`LISTENING ${new URL(address).port}\n`);

process.on('SIGTERM', () => {
  void (async () => {
    await app.close();
    await publisher.close();
    await conn.close();
    if (pool) {
      await pool.query(`DROP TABLE IF EXISTS ${table}`);
      await pool.end();
    }
    process.exit(0);
  })();
});
