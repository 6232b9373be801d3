import type { AttachmentStore } from '../attachments/contract.js';
import type { Queue } from '../queue/contract.js';
import type { ExecutionStore, FlowStore, RequestStore } from './contracts.js';

/**
 * What the composition root gets from a backend: the stores and the queue that goes with them.
 * Embedded: one SQLite file (requests and jobs in the same transaction). Distributed: PostgreSQL
 * + RabbitMQ.
 */
export interface Backend {
  readonly name: string;
  readonly flows: FlowStore;
  readonly requests: RequestStore;
  readonly executions: ExecutionStore;
  readonly queue: Queue;
  /**
   * Capability of backends several processes share (PostgreSQL): who is alive, so that per-flow
   * limits can be enforced cluster-wide as each instance's share. Absent: this process is alone.
   */
  readonly instances?: InstanceRegistry;
  /**
   * Capability of backends several processes share: an attachment store every instance reads and
   * writes (PostgreSQL). Absent: files go to this process's DATA_DIR.
   */
  readonly attachments?: AttachmentStore;
  /** Capability of backends several processes share: values they must agree on (admin token). */
  readonly settings?: SharedSettings;
  /**
   * Capability of backends whose queue cannot hold a flow's concurrency limit across processes
   * (RabbitMQ: every instance consumes every flow queue): one instance at a time holds each
   * limited flow, and only it consumes the flow's queue. Absent: the queue holds the limits itself
   * (SQLite, one process; PostgreSQL's claims count every instance's leases).
   */
  readonly flowOwners?: FlowOwners;
  /** Resolves when the backend can commit a write now (used by /readyz); rejects otherwise. */
  checkWritable(): Promise<void>;
  close(): Promise<void>;
}

/** The processes sharing one backend. */
export interface InstanceRegistry {
  /**
   * Record this process as alive now (and whether it runs flows: its workers) and forget those not
   * seen for `expireMs`; resolves with the live instances, this one included, and how many of
   * them run flows.
   */
  beat(expireMs: number, runsFlows?: boolean): Promise<InstanceCounts>;
  /** This process is leaving (shutdown): the others stop counting it at once. */
  leave(): Promise<void>;
  /**
   * How many other instances not seen for less than `expireMs` run an earlier hookd (one that
   * knows fewer schema versions, or records none): a rolling upgrade is under way, and they
   * would misread what only this build writes.
   */
  earlier?(expireMs: number): Promise<number>;
}

export interface InstanceCounts {
  live: number;
  /** Live instances with workers (WORKER_CONCURRENCY > 0). */
  runningFlows: number;
}

/** Values every instance sharing a backend must agree on. */
export interface SharedSettings {
  /**
   * The value stored under `key`; if there is none yet, `value` is stored and returned. When
   * several instances race, exactly one value wins and all of them get it.
   */
  getOrSet(key: string, value: string): Promise<string>;
  /** The value stored under `key`, if any (nothing is stored). */
  get(key: string): Promise<string | undefined>;
}

/** Which instance holds each flow with a concurrency limit (Backend.flowOwners). */
export interface FlowOwners {
  /** How long a hold lasts unless renewed (hold() again), in ms. */
  readonly leaseMs: number;
  /**
   * Hold these flows: renew those held here (beyond its share too: the caller gives a surplus up
   * once the flows' jobs here have ended), give up any other held here, and take those nobody holds (or whose holder's lease ran out) while this instance holds
   * fewer than its share — ceil(`shareOf` / the instances holding flows now, this one included).
   * `shareOf`: how many limited flows there are (`flowIds` may leave out some this instance is
   * giving up). Resolves with the flows held here now and that number of instances.
   */
  hold(flowIds: readonly string[], shareOf: number): Promise<FlowHolds>;
  /** Give up every flow held here (shutdown): the other instances take them at their next hold(). */
  releaseAll(): Promise<void>;
}

export interface FlowHolds {
  readonly held: ReadonlySet<string>;
  /** Instances taking part in holding limited flows (renewed within their lease), this one included. */
  readonly holders: number;
}
