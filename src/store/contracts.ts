import type { Execution, ExecutionStatus, StepRecord } from '../core/execution.js';
import type { Flow } from '../core/flow.js';
import type { ReceivedMessage } from '../core/message.js';

/**
 * Storage contracts. Every backend (sqlite/, postgres/) implements these and passes the same
 * conformance suite (test/conformance/). Methods reject with a HookdError 503 (STORE_UNAVAILABLE,
 * retryAfter set) when the backend cannot be reached or cannot write.
 */
export interface FlowStore {
  list(): Promise<Flow[]>;
  get(id: string): Promise<Flow | undefined>;
  /**
   * Insert or replace; clears the flow's deletion record, if any. With `expect`, only if the stored
   * flow is still as the caller read it — absent, or with that `updatedAt` — checked in the same
   * write: false (nothing written) otherwise. Read-modify-write through the API (two admins, or
   * two instances) then never loses a change, such as a secret already shown to its caller.
   */
  put(flow: Flow, expect?: PutExpectation): Promise<boolean>;
  /**
   * Delete a flow. When one was deleted, a deletion record (id, time) is kept in the same write,
   * until forgetDeletion(): what a flow leaves behind outside the store (a RabbitMQ queue) is
   * removed by any instance once every instance knows the flow is gone (src/flow-queue-cleanup.ts).
   */
  delete(id: string): Promise<boolean>;
  /** Deletion records, oldest first. */
  deletions(): Promise<FlowDeletion[]>;
  /**
   * Drop a deletion record, only if it is still this one (same time), once `cleanUp` (when given)
   * resolved true: it removes what the flow left outside the store. While it runs the record is
   * held: a put() of the same id waits until the end, so a flow created again meanwhile never has
   * its new queue removed; `stillHeld` rejects when the hold was lost (the database connection
   * dropped), for cleanUp to call right before it removes anything. False (record kept) when the
   * record is not this one any more, is being cleaned up by another instance, or when cleanUp
   * resolved false; cleanUp's rejection is this call's.
   */
  forgetDeletion(id: string, deletedAt: number, cleanUp?: (stillHeld: () => Promise<void>) => Promise<boolean>): Promise<boolean>;
}

/** What put() expects to replace: no flow with that id, or the flow last written with this updatedAt. */
export type PutExpectation = { absent: true } | { updatedAt: string };

/** A flow deleted at `deletedAt` (epoch ms, the store's clock) and not created again since. */
export interface FlowDeletion {
  id: string;
  deletedAt: number;
  /** How long ago, on the store's clock (instances' clocks may differ from the database's). */
  ageMs: number;
}

export type AcceptOutcome =
  /** Newly committed (and its job enqueued). */
  | { kind: 'stored' }
  /** A message with this id was already committed for the same flow: nothing written again. */
  | { kind: 'duplicate' };

/** The two outcomes, shared (accept() is the ingest hot path: no object per call). */
export const ACCEPT_STORED: AcceptOutcome = Object.freeze({ kind: 'stored' });
export const ACCEPT_DUPLICATE: AcceptOutcome = Object.freeze({ kind: 'duplicate' });

export interface AcceptOptions {
  /** Deliveries before the job is dead-lettered. */
  maxAttempts: number;
  /** Distributed mode: the job message carries the request too (the flow's jobMessage.includeRequest). */
  includeRequest?: boolean;
  /**
   * A sender's webhook (the ingress), which RABBITMQ_ACCEPT=broker answers from the broker alone.
   * Replays are not: they are committed to the store first, readable and deduplicated at once.
   */
  fromSender?: boolean;
}

/** What RequestStore.recordCarried did with a request a job carried. */
export type RecordOutcome =
  /**
   * Recorded now, or by an earlier delivery of the same job (same flow and time of receipt): run
   * it. `message.id` may differ from the carried id: a sender's x-request-id another flow's
   * request has gets the flow's own id for it, as at the ingress.
   */
  | { kind: 'recorded'; message: ReceivedMessage }
  /** Another request with this id (a sender's retry, each copy answered by the broker): its job runs, not this one. */
  | { kind: 'duplicate'; requestId: string };

/** What getForExecution checks a cached message against. */
export interface JobOfRequest {
  flowId: string;
  enqueuedAt: number;
}

export interface RequestListQuery {
  flowId?: string;
  limit: number;
  /** Keyset pagination, newest first by time of receipt (ties by id): the rows after this request. */
  before?: string;
}

/**
 * A flow's requests received in [since, until), oldest first by time of receipt (ties by id), for
 * bulk replay. `after` is a keyset position (the last row of the previous page, as values: a row
 * purged meanwhile does not end the paging).
 */
export interface ReceivedRange {
  flowId: string;
  /** Epoch ms, inclusive; absent: from the oldest. */
  since?: number;
  /** Epoch ms, exclusive. */
  until: number;
  after?: { receivedAt: number; id: string };
  limit: number;
}

/** One step of a retention purge (RequestStore.purgeOlderThan). */
export interface PurgeResult {
  /** Requests deleted (with their executions, step records and dead-lettered jobs). */
  requests: number;
  /** Attachment ids those requests referenced: the caller deletes the files, after this resolved. */
  attachmentIds: string[];
  /** More requests are due: call again. */
  more: boolean;
}

export interface RequestStore {
  /**
   * Commit the message and enqueue its job as one atomic unit. Resolves only once both are durable
   * (fsync, or broker confirm), so the caller may answer 2xx. Rejects with REQUEST_ID_CONFLICT when
   * the id is taken by another flow, with a 503 HookdError when storage is unavailable.
   */
  accept(message: ReceivedMessage, options: AcceptOptions): Promise<AcceptOutcome>;
  /**
   * Capability of stores whose queue may carry requests (PostgreSQL with RabbitMQ): record a
   * request that a job brought along, its only record until now, as accept() would but without a
   * job (the job is the one being handled). Idempotent. Rejects with a 503 HookdError when storage
   * is unavailable.
   */
  recordCarried?(message: ReceivedMessage): Promise<RecordOutcome>;
  /**
   * Capability of a store whose senders may be answered before it has their request (RABBITMQ_ACCEPT=broker
   * in effect): true while so. The API then says, with a 404, that the request may not be here yet.
   */
  recordedLater?(): boolean;
  /** The stored request, read from the store (API, views). */
  get(id: string): Promise<ReceivedMessage | undefined>;
  /**
   * The request, for its job's execution: served from this process's message cache (and dropped
   * from it) when this process committed it and still holds it, else read as get() does. Only
   * these reads count as message cache hits and misses. With `job`, a cached copy is used only if it
   * is that job's request: of its flow, received shortly before the job was enqueued (a sender's
   * x-request-id reused after retention purged the first request, on another instance, must not
   * run the first one's body).
   */
  getForExecution(id: string, job?: JobOfRequest): Promise<ReceivedMessage | undefined>;
  list(query: RequestListQuery): Promise<ReceivedMessage[]>;
  /**
   * What list() would return, as ids and the bytes each row's body takes in the store (raw and
   * parsed), without reading the bodies: the API pages by a byte budget before it reads them.
   */
  listSizes(query: RequestListQuery): Promise<Array<{ id: string; bytes: number }>>;
  /**
   * Ids and times of receipt of a flow's requests in a time range, oldest first, with the bytes
   * each row's body takes (as listSizes): no body is read.
   */
  listReceived(range: ReceivedRange): Promise<Array<{ id: string; receivedAt: number; bytes: number }>>;
  /**
   * Whether a committed request references this attachment (as a file or as its raw body). The
   * attachment sweep asks before it removes a file; must be an index lookup, not a scan.
   */
  referencesAttachment(attachmentId: string): Promise<boolean>;
  /**
   * Retention: delete up to `limit` of the oldest requests received before `before` (epoch ms),
   * with their execution, step records and dead-lettered job, in one durable write. Requests whose
   * job is still queued (ready or in flight) are kept until it is done. Resolves with the
   * attachment ids to delete; `more` when a full batch was taken.
   */
  purgeOlderThan(before: number, limit: number): Promise<PurgeResult>;
  /**
   * Capability of a store whose file keeps the pages deleted rows leave (SQLite): give up to
   * `maxPages` of them back to the disk. Housekeeping calls it after the retention purge, until
   * none are left. PostgreSQL's own vacuum does this for it.
   */
  reclaimSpace?(maxPages: number): Promise<ReclaimedSpace>;
}

/** One step of RequestStore.reclaimSpace. */
export interface ReclaimedSpace {
  freedBytes: number;
  /** Free space still in the file: call again while there is. */
  freeBytesLeft: number;
  /** False: the file cannot give space back while hookd runs (an old SQLite database: SQLITE_VACUUM_ON_START converts it). */
  incremental: boolean;
}

export interface BeginExecution {
  requestId: string;
  flowId: string;
  /** The queue delivery attempt (1-based). */
  attempt: number;
  now: number;
  /** Request received → first step start; recorded only when the execution is created. */
  queueDelayMs?: number;
}

/** A whole run of a flow, recorded in one write (see ExecutionStore.saveRun). */
export interface RunRecord {
  requestId: string;
  flowId: string;
  attempt: number;
  startedAt: number;
  finishedAt: number;
  queueDelayMs?: number;
  status: 'completed' | 'filtered' | 'dead';
  error?: string;
  steps: StepRecord[];
}

export interface ExecutionListQuery {
  flowId?: string;
  status?: ExecutionStatus;
  limit: number;
  /** Keyset pagination on execution id (UUIDv7, newest first). */
  before?: string;
}

/** A status change that rides along with a step record (ExecutionStore.recordStep). */
export interface StatusChange {
  status: ExecutionStatus;
  now: number;
  error?: string;
}

export interface ExecutionStore {
  /**
   * Get-or-create the one execution of a request (unique per requestId). Sets status running and
   * attempts = attempt. Returns it with its steps and cursor so a redelivery can resume. An
   * execution already completed or filtered is returned as it is (a repeat delivery after a lost
   * ack must see that nothing is left to run).
   */
  begin(args: BeginExecution): Promise<Execution>;
  /**
   * Record a finished run in one write, for runs that needed no checkpoint on the way (only pure
   * steps: nothing to protect from a repeat). Creates the request's execution, or replaces status
   * and steps of an unfinished one; an execution already completed or filtered is left untouched.
   * Resolves with the execution id.
   */
  saveRun(run: RunRecord): Promise<string>;
  /**
   * Append a step record; when cursor is given, also store where a redelivery resumes; when
   * `finish` is given, also change the execution's status as setStatus does, in the same write
   * (the run's last step: one write instead of two, and no moment with the step recorded and the
   * execution still running).
   */
  recordStep(executionId: string, record: StepRecord, cursor?: Execution['cursor'], finish?: StatusChange): Promise<void>;
  /** Change status; final statuses (completed, filtered, dead) set finishedAt. */
  setStatus(executionId: string, status: ExecutionStatus, now: number, error?: string): Promise<void>;
  /**
   * The requests' executions whose status is `from` get `to` (finishedAt set for a final one,
   * cleared otherwise; the error kept); the others are left as they are. Resolves with how many
   * moved. For a queue that keeps its dead letters apart (RabbitMQ): a dead letter put back is
   * `retrying` until it runs, and `dead` again when the put-back failed.
   */
  moveStatus(requestIds: readonly string[], from: ExecutionStatus, to: ExecutionStatus, now: number): Promise<number>;
  get(id: string): Promise<Execution | undefined>;
  getByRequest(requestId: string): Promise<Execution | undefined>;
  /** The execution ids of these requests, by request id (those without one left out): a page's links. */
  idsByRequest(requestIds: readonly string[]): Promise<Map<string, string>>;
  list(query: ExecutionListQuery): Promise<Execution[]>;
}
