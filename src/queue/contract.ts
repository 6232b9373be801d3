import type { BulkRetryResult, DeadLetter, DeadLetterQuery, DeadLetterSelection, Job, NewJob } from '../core/job.js';

/**
 * Queue contract: at-least-once delivery of jobs ("run flow X for request Y"). Implemented by the
 * embedded queue (same SQLite file as the requests) and rabbitmq/. One conformance suite runs
 * against both (test/conformance/queue.suite.ts).
 *
 * Jobs are normally enqueued by RequestStore.accept, atomically with their request; enqueue() here
 * is for re-queueing (replay, dead-letter retry).
 */
export interface Delivery {
  readonly job: Job;
  /**
   * Set on the last delivery a queue allows before it dead-letters the job on its own (RabbitMQ's
   * delivery limit: delivered and never settled that many times — its worker crashed or lost its
   * channel each time): why. The runner dead-letters such a job instead of running it once more,
   * so that its execution ends dead too rather than running for ever.
   */
  readonly exhausted?: string;
  /** Done: the job is removed. */
  ack(): Promise<void>;
  /**
   * Failed: deliver again after delayMs, or move to the dead letters when job.attempts has reached
   * job.maxAttempts. Returns which happened. `uncounted`: not the job's failure (its flow is
   * stopped): deliver again after delayMs without spending this delivery's attempt, never dead.
   */
  nack(options: { delayMs: number; error: string; uncounted?: boolean }): Promise<'retry' | 'dead'>;
  /** Failed for good (not retryable): straight to the dead letters. */
  deadLetter(error: string): Promise<void>;
  /**
   * Not the job's failure (the store was unavailable): deliver it again now, this delivery not
   * counted as an attempt, so an outage does not use up a job's attempts. Callers wait before
   * calling it, so that jobs do not spin through the queue during an outage. Never throws.
   * Resolves false when the queue could not take the job back (a database queue whose database is
   * the one that is down): the delivery is still held, its lease still extended, and the caller
   * tries again later (returning would ack it). A lease found lost counts as given back (true).
   */
  requeue(error: string): Promise<boolean>;
  /**
   * Optional (RabbitMQ): the job is not to be run by this process after all (its flow is held by
   * another instance now): back into its queue at once, at its place — ahead of the jobs behind
   * it, unlike requeue(), whose copy joins the queue's end — no attempt spent. Never throws; a
   * no-op (true) when the delivery is settled already or its channel is gone (the broker requeued
   * it). False, with nothing done, when the queue would rather not (the message came back often
   * already and the broker counts returns towards its delivery limit): requeue() it then.
   */
  handBack?(): boolean;
  /**
   * Capability of queues whose jobs may carry their request (RabbitMQ, Job.carried): the request
   * was stored under another id (RequestStore.recordCarried gave the flow's own id for a sender's
   * id another flow's request has). From now on the job names that id: `job` here, and every copy
   * the queue makes of it (retries, dead letters), so that none points to the other flow's request.
   */
  renameRequest?(requestId: string): void;
}

/**
 * A handler that returns without settling acks its delivery; one that throws nacks it with this
 * delay (every queue).
 */
export type JobHandler = (delivery: Delivery) => Promise<void>;

/** The retry delay of a job whose handler threw without settling it. */
export const THROW_RETRY_DELAY_MS = 1_000;

/** Consumer.stop()'s default grace for running handlers. */
export const DEFAULT_GRACE_MS = 10_000;

export interface ConsumeOptions {
  /** Jobs handled at once by this consumer. */
  concurrency: number;
  /**
   * Jobs leased ahead of the free slots and kept waiting in this process, so a slot that frees
   * starts its next job without a round trip to the queue. Default 0. The database queues
   * (embedded, PostgreSQL) use it; RabbitMQ's prefetch is the concurrency (basic.qos).
   */
  prefetch?: number;
  /**
   * Flows whose jobs this consumer may hold only so many of at once (running, and waiting here),
   * by flow id (Flow.concurrency); read at every claim. Jobs of a flow at its limit stay in the
   * queue, or waiting in this process, without blocking other flows' jobs. 0: a stopped flow,
   * whose jobs the database queues leave alone (RabbitMQ, which does not consume a stopped flow's
   * queue, ignores it).
   */
  flowLimits?: () => ReadonlyMap<string, number>;
  /**
   * Flows whose executions may start only so many per second (Flow.executionRate): a job of one
   * starts only with a start its rate allows; the others wait (in the queue, or here) without
   * holding a slot.
   */
  flowRates?: FlowRateGate;
}

/** Starts per second per flow (flow-rates.ts): a token bucket per flow with a rate. */
export interface FlowRateGate {
  /** Whether any flow has a rate now (consumers skip the gate altogether when none has). */
  any(): boolean;
  /** The flows with a rate now. */
  flows(): Iterable<string>;
  /** Whether the flow has a rate. */
  has(flowId: string): boolean;
  /** Starts the flow's rate allows now, without taking them (Infinity: no rate). */
  available(flowId: string): number;
  /** Starts the flow's rate allows from now until `ms` from now (Infinity: no rate). */
  availableWithin(flowId: string, ms: number): number;
  /** Take one start of the flow, if its rate allows one now (true without a rate). */
  take(flowId: string): boolean;
  /** Give back a start taken and not used (a hand-off that did not happen). */
  refund(flowId: string): void;
  /** When (epoch ms) the flow's rate next allows a start. */
  nextAt(flowId: string): number;
  /** The most starts the flow's rate allows within `ms` from a full bucket (undefined: no rate). */
  within(flowId: string, ms: number): number | undefined;
}

export interface Consumer {
  /** Jobs being handled right now. */
  readonly inFlight: number;
  /**
   * Stop taking jobs; wait up to graceMs for running handlers, then give back (release) the jobs of
   * handlers still running so another consumer gets them at once. Never acks on its own.
   * `beforeRelease` runs once the grace is over and before those jobs are given back, when their
   * settles have become no-ops: the caller aborts the handlers there (a handler may then return
   * without its job being acked), so that no other consumer starts a job while its old handler
   * still runs.
   */
  stop(options?: { graceMs?: number; beforeRelease?: () => Promise<void> }): Promise<void>;
}

export interface QueueStats {
  ready: number;
  inFlight: number;
  delayed: number;
  dead: number;
}

/** One flow's jobs that are due and wait for a worker (Queue.flowBacklog). */
export interface FlowBacklog {
  flowId: string;
  /** Jobs due now (ready; not delayed retries, not running). */
  ready: number;
  /** How long the oldest of them has been due, in ms (on the queue's clock). */
  oldestReadyMs: number;
}

export interface Queue {
  enqueue(job: NewJob): Promise<void>;
  /** Start delivering jobs to handler. A handler that throws counts as nack(delay 1 s). */
  consume(handler: JobHandler, options: ConsumeOptions): Consumer;
  /** Newest first (deadAt, then id, descending), from after `before` when given. */
  deadLetters(query: DeadLetterQuery): Promise<DeadLetter[]>;
  /**
   * Move a dead letter back to the queue with attempts reset; false when not found; a 409
   * (CONFLICT) when its flow does not exist (the runner would only dead-letter it again).
   */
  retryDead(jobId: string): Promise<boolean>;
  /**
   * Retry dead letters in bulk (after an outage of the receiver): oldest first, up to `limit`, as
   * retryDead does each one. Dead letters of deleted flows are left as they are (counted in
   * `remaining`, never a 409).
   */
  retryDeadLetters(selection: DeadLetterSelection): Promise<BulkRetryResult>;
  /** Remove a dead letter for good (its request and execution record stay); false when not found. */
  discardDead(jobId: string): Promise<boolean>;
  /**
   * Capability of the database queues, whose runner delays a stopped flow's jobs (nack uncounted,
   * with `stoppedFlowNote(flowId)` as their error): the flow was started again, make them due now
   * instead of at their next look, and wake the consumers: the jobs they left alone while it was
   * stopped (its flowLimits 0) are due. (RabbitMQ does not consume a stopped flow's queue at all.)
   */
  wakeStopped?(flowId: string): Promise<void>;
  stats(): Promise<QueueStats>;
  /**
   * Capability of the database queues: the flows with jobs due now, each with how many and how
   * long the oldest has waited (metrics: which flow backs up, and whether its jobs still start).
   * Flows with none are left out. RabbitMQ does not say how long a message has waited.
   */
  flowBacklog?(): Promise<FlowBacklog[]>;
  /**
   * Capability of queues that keep a queue per flow (RabbitMQ): the flows that exist, so that jobs
   * of flows this process never published to are taken too, and whether each is consumed here
   * (`started`: false for a stopped flow, whose jobs wait in its queue, and for a limited flow
   * another instance holds, Backend.flowOwners). The composition root passes the flow registry's
   * flows after every load and change. Absent: one queue holds every flow's jobs (a stopped flow's
   * jobs are delayed by the runner instead). `exclusive`: a flow one instance at a time consumes
   * (its hold, Backend.flowOwners): when it becomes consumed here, its queue is consumed only once
   * the broker shows no other consumer on it (its previous holder's, stalled, keeps the jobs it
   * was sent until it goes), so that they come back to the queue, in order, before any other runs.
   */
  watchFlows?(flows: Iterable<{ id: string; started: boolean; exclusive?: boolean }>): void;
  /**
   * Capability of queues that keep a queue per flow: whether this process holds jobs of the flow
   * it has not settled yet (running, or received and waiting for a slot). A flow no longer
   * consumed here (watchFlows) is handed to another instance only once this is false.
   */
  holdsJobsOf?(flowId: string): boolean;
  /**
   * Capability of queues that keep a queue per flow: the flows deleted and not created again (the
   * store's deletion records; the composition root passes all of them every FLOW_REFRESH). Their
   * queues are consumed without being declared again, so the runner dead-letters what is left in
   * them; a job published for one goes straight to the dead letters (unless the flow exists again).
   */
  retireFlows?(flowIds: Iterable<string>): void;
  /**
   * Capability of queues that keep a queue per flow: delete a retired flow's queue once it holds
   * no ready job. True when it is gone (or never existed); false while jobs wait in it or when the
   * flow exists again. Called only once every instance knows the flow is deleted and no delayed
   * retry of it can still come back (src/flow-queue-cleanup.ts). `beforeDelete` runs right before
   * the delete; its rejection cancels it (the store's hold on the deletion record was lost).
   */
  removeFlow?(flowId: string, beforeDelete?: () => Promise<void>): Promise<boolean>;
}
