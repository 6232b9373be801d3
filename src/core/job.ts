import { E, HookdError } from './errors.js';
import type { ReceivedMessage } from './message.js';

/** A queue message: "run flow X for request Y". The payload stays in the request store. */
export interface Job {
  id: string;
  flowId: string;
  requestId: string;
  /** Deliveries so far, including the current one (1 on first delivery). */
  attempts: number;
  maxAttempts: number;
  enqueuedAt: number;
  lastError?: string;
  /**
   * The request itself, when the queue is its only record so far (RabbitMQ with
   * RABBITMQ_ACCEPT=broker: answered once the broker confirmed, not yet in the store). The runner
   * records it in the store (RequestStore.recordCarried) before anything else; every copy of the
   * job the queue makes (retries, dead letters) keeps it, so that none depends on that write.
   */
  carried?: ReceivedMessage;
}

/**
 * Database queues: deliveries lost before their job began (the process holding them crashed while
 * they were prefetched or handed off) that are not counted as attempts, over a job's life (until
 * a dead-letter retry starts it afresh); past it they
 * count, so that a job that kills its consumer before it begins still stops. A delivery has begun
 * once its execution was begun with its attempt number. Small: in one process (SQLite) every
 * crash of such a loop also spends an attempt of the jobs that were running beside it.
 */
export const LOST_DELIVERY_LIMIT = 5;

/** last_error of a job dead-lettered because its last delivery's lease ran out (database queues). */
export const LEASE_LOST_ERROR = 'lease expired: the consumer was lost before it settled the job';

export interface NewJob {
  flowId: string;
  requestId: string;
  maxAttempts: number;
  /** Not before (epoch ms); default now. */
  runAt?: number;
}

export interface DeadLetter extends Job {
  deadAt: number;
}

/** Which dead letters Queue.retryDeadLetters takes: oldest first (deadAt, then id). */
export interface DeadLetterSelection {
  flowId?: string;
  /** Only those that died at or after this time (epoch ms): "since the receiver went down". */
  since?: number;
  limit: number;
}

/** Dead letters put back, and those of the selection still dead: past the limit, or their flow deleted. */
export interface BulkRetryResult {
  retried: number;
  remaining: number;
}

/** What retrying a dead letter found: done, no such dead letter, or its flow is gone (deleted). */
export type RetryDeadOutcome = 'revived' | 'notDead' | 'noFlow';

/**
 * Queue.retryDead's answer: true when revived, false when there is no such dead letter; a 409
 * when its flow does not exist (the runner would only dead-letter it again).
 */
export function revivedOrThrow(outcome: RetryDeadOutcome, jobId: string): boolean {
  if (outcome === 'noFlow') throw new HookdError(E.CONFLICT, `The flow of dead letter ${jobId} does not exist (deleted): create it again to retry its dead letters`);
  return outcome === 'revived';
}

/** The error a job of a stopped flow carries while it waits (Queue.wakeStopped finds it by this). */
export function stoppedFlowNote(flowId: string): string {
  return `flow ${flowId} is stopped; the job waits until it is started`;
}

/** Where a page of dead letters ended: newest first by deadAt, then id (DeadLetterQuery.before). */
export interface DeadLetterCursor {
  deadAt: number;
  id: string;
}

export interface DeadLetterQuery {
  flowId?: string;
  limit: number;
  /** Only dead letters after this one in the order newest first (deadAt, then id, descending). */
  before?: DeadLetterCursor;
}

/** Whether `d` comes after `cursor` in the dead-letter order (deadAt desc, id desc). */
export function afterCursor(d: { deadAt: number; id: string }, cursor: DeadLetterCursor | undefined): boolean {
  return cursor === undefined || d.deadAt < cursor.deadAt || (d.deadAt === cursor.deadAt && d.id < cursor.id);
}
