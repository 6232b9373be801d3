import { NOW_MS, type PgDatabase } from './database.js';

/** The queue of a PostgreSQL-backed instance: PostgreSQL's own, or RabbitMQ (RABBITMQ_URI). */
export type QueueMode = 'postgres' | 'rabbitmq';

const NAMES: Record<QueueMode, string> = { postgres: 'the PostgreSQL queue', rabbitmq: 'RabbitMQ' };

/**
 * Refuses to start an instance whose queue is not the one the running instances of its database
 * use (their beats within `expireMs` say which: instances.ts). Two queues at once would split the
 * jobs: those accepted on one are never run by the other's workers (an instance started without
 * RABBITMQ_URI beside RabbitMQ ones put its jobs in a table they do not read), and each start
 * moves the other queue's jobs over to its own. Run before that move. Switching queues is done
 * with every instance stopped (docs/distributed.md).
 */
export async function refuseMixedQueues(db: PgDatabase, mine: QueueMode, expireMs: number): Promise<void> {
  const { rows } = await db.query<{ queue: QueueMode; n: number }>(
    `SELECT queue, count(*)::integer AS n FROM ${db.t.instances}
     WHERE queue IS NOT NULL AND queue <> $1 AND seen_at >= ${NOW_MS} - $2::float8 GROUP BY queue`,
    [mine, expireMs],
  );
  const other = rows[0];
  if (other === undefined) return;
  const them = `${other.n} running instance${other.n === 1 ? '' : 's'} of this database (DATABASE_URL, DATABASE_SCHEMA) use${other.n === 1 ? 's' : ''} ${NAMES[other.queue]}`;
  const fix =
    mine === 'postgres'
      ? 'give this instance the same RABBITMQ_URI as theirs'
      : 'leave RABBITMQ_URI unset here too, as on them';
  throw new Error(
    `RABBITMQ_URI: ${them}, and this one would use ${NAMES[mine]}: jobs accepted by one would never be run by the others' workers. ${fix[0]!.toUpperCase()}${fix.slice(1)}; to switch queues, stop every instance first (docs/distributed.md).`,
  );
}
