import type { Job } from '../../core/job.js';

/**
 * The request store's view of the embedded queue's consumers, for the accept → handler fast path.
 * When a batch of writes is formed, accept asks for a free consumer slot; if it gets one, the job is
 * inserted already leased to that consumer and handed to it right after COMMIT.
 */
export interface JobHandoff {
  /**
   * Reserve a slot of a local consumer with spare concurrency for a job of the flow, or undefined
   * when all are busy (or the flow is at its concurrency limit).
   */
  reserve(flowId: string): HandoffSlot | undefined;
  /** A job was committed without a hand-off: wake idle consumers. */
  wake(): void;
}

export interface HandoffSlot {
  /** lease_owner of the reserving consumer. */
  readonly owner: string;
  /** The job is committed and leased to `owner`: run it. */
  deliver(job: Job): void;
  /** Nothing to deliver (duplicate, conflict, write failed): free the slot. */
  cancel(): void;
}
