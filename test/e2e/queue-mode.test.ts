/**
 * One queue per database: an instance started with RABBITMQ_URI beside running instances on the
 * PostgreSQL queue (or without it beside RabbitMQ ones) refuses to start, saying which setting to
 * fix. A new user's review found an instance started without RABBITMQ_URI joining a RabbitMQ
 * cluster silently: its acknowledged jobs waited in a table no running worker read, and its start
 * moved the cluster's outbox rows into that table too.
 */
import pino from 'pino';
import { afterAll, expect, it } from 'vitest';
import { everyBackend } from '../helpers/every-backend.js';
import { startHookd, tempDir } from '../helpers/hookd.js';

const { backends, cleanUp } = everyBackend('qmode');
const rabbit = backends.find(([name]) => name === 'PostgreSQL + RabbitMQ')![1];
const { RABBITMQ_URI: _uri, RABBITMQ_PREFIX: _prefix, ...postgresQueue } = rabbit;
afterAll(() => cleanUp([]));

it('an instance whose queue differs from the running instances of its database refuses to start; once they stopped, it starts', async () => {
  const onRabbit = await startHookd({ ...rabbit, WORKER_CONCURRENCY: '0' });
  try {
    await expect(startHookd({ ...postgresQueue, WORKER_CONCURRENCY: '0' })).rejects.toThrow(
      /^RABBITMQ_URI: 1 running instance of this database \(DATABASE_URL, DATABASE_SCHEMA\) uses RabbitMQ, and this one would use the PostgreSQL queue: .*Give this instance the same RABBITMQ_URI as theirs; to switch queues, stop every instance first/,
    );
  } finally {
    await onRabbit.close();
  }
  // Every RabbitMQ instance stopped: the switch to the PostgreSQL queue is allowed.
  const onPostgres = await startHookd({ ...postgresQueue, WORKER_CONCURRENCY: '0' });
  try {
    await expect(startHookd({ ...rabbit, WORKER_CONCURRENCY: '0' })).rejects.toThrow(/^RABBITMQ_URI: 1 running instance .* uses the PostgreSQL queue, and this one would use RabbitMQ: .*Leave RABBITMQ_URI unset here too/);
    // The same queue is no problem.
    const second = await startHookd({ ...postgresQueue, WORKER_CONCURRENCY: '0' });
    await second.close();
  } finally {
    await onPostgres.close();
  }
}, 60_000);

it('a DATA_DIR that holds an embedded database is said at a distributed start: its flows and requests are not carried over', async () => {
  const dir = tempDir();
  const embedded = await startHookd({ DATA_DIR: dir, WORKER_CONCURRENCY: '0' });
  expect((await embedded.api('PUT', '/api/flows/legacy', { steps: [] })).status).toBe(201);
  await embedded.close();
  const lines: string[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) });
  const distributed = await startHookd({ ...postgresQueue, DATA_DIR: dir, WORKER_CONCURRENCY: '0' }, { logger });
  try {
    expect((await distributed.api('GET', '/api/flows/legacy')).status).toBe(404);
    const said = lines.map((l) => JSON.parse(l)).find((l) => String(l.msg).startsWith('DATA_DIR holds an embedded database'));
    expect(said?.file).toBe(`${dir}/hookd.db`);
  } finally {
    await distributed.close();
  }
}, 60_000);
