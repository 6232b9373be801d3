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
  /** Resolves when the backend can commit a write now (used by /readyz); rejects otherwise. */
  checkWritable(): Promise<void>;
  close(): Promise<void>;
}
