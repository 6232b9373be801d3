import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { Connection } from 'rabbitmq-client';
import { DEFAULT_DELAY_LEVELS_MS, Topology } from '../../src/queue/rabbitmq/topology.js';

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const RABBITMQ_URI = process.env.RABBITMQ_URI ?? process.env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

/**
 * The three backends as startHookd environments, for an e2e test to run through the whole app on
 * each: SQLite, PostgreSQL's queue, PostgreSQL + RabbitMQ — a schema and a queue prefix of their
 * own (the local services, as the distributed tests use them: no skip). `cleanUp` drops what the
 * test made: the schemas, and the RabbitMQ queues of `flowIds` with the shared ones.
 */
export function everyBackend(name: string): { backends: Array<[string, Record<string, string>]>; cleanUp(flowIds: readonly string[]): Promise<void> } {
  const tag = `hookd_${name}_${randomBytes(4).toString('hex')}`;
  // One key for every instance a test starts on a schema (each has a DATA_DIR of its own).
  const HOOKD_SECRET_KEY = randomBytes(32).toString('base64');
  const backends: Array<[string, Record<string, string>]> = [
    ['SQLite', {}],
    ['PostgreSQL', { DATABASE_URL, DATABASE_SCHEMA: `${tag}_pg`, HOOKD_SECRET_KEY }],
    ['PostgreSQL + RabbitMQ', { DATABASE_URL, DATABASE_SCHEMA: `${tag}_mq`, RABBITMQ_URI, RABBITMQ_PREFIX: tag, HOOKD_SECRET_KEY }],
  ];
  return {
    backends,
    async cleanUp(flowIds) {
      const admin = new pg.Client({ connectionString: DATABASE_URL });
      await admin.connect();
      try {
        for (const [, env] of backends) if (env.DATABASE_SCHEMA) await admin.query(`DROP SCHEMA IF EXISTS "${env.DATABASE_SCHEMA}" CASCADE`);
      } finally {
        await admin.end();
      }
      const conn = new Connection({ url: RABBITMQ_URI });
      const topology = new Topology({ prefix: tag, delayLevelsMs: DEFAULT_DELAY_LEVELS_MS, deliveryLimit: 20 });
      try {
        const queues = [...flowIds.map((f) => topology.flowQueue(f)), topology.deadQueue, ...topology.delayLevels.map((l) => l.queue)];
        for (const queue of queues) await conn.queueDelete({ queue }).catch(() => {});
        for (const exchange of [topology.exchange, topology.delayExchange]) await conn.exchangeDelete({ exchange }).catch(() => {});
      } finally {
        await conn.close();
      }
    },
  };
}
