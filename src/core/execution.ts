/**
 * An execution is one run of a flow for one received request (unique per request: a redelivered
 * queue message continues the same execution, it never starts a second one).
 *
 *   running ──► completed | filtered
 *      │  ▲
 *      ▼  │ (retry after backoff)
 *   retrying ──► dead (max attempts reached)
 */
export type ExecutionStatus = 'running' | 'retrying' | 'completed' | 'filtered' | 'dead';

export const FINAL_STATUSES: ReadonlySet<ExecutionStatus> = new Set(['completed', 'filtered', 'dead']);

export type StepStatus = 'completed' | 'failed' | 'filtered';

/**
 * StepRecord.input of a step whose input was the received message itself (a first step, not resumed
 * from a cursor): its JSON is not stored a second time next to the request. Readers derive it from
 * the request (recordJson(toMessageView(message))), which is exactly what would have been stored.
 * Never valid JSON, so never a real recorded input.
 */
export const MESSAGE_INPUT = '';

export interface StepRecord {
  stepId: string;
  type: string;
  status: StepStatus;
  /** Delivery attempt of the queue message during which the step ran (1-based). */
  attempt: number;
  startedAt: number;
  finishedAt: number;
  /** JSON, truncated to EXECUTION_DATA_LIMIT; MESSAGE_INPUT when it was the received message. */
  input?: string;
  output?: string;
  error?: string;
}

export interface Execution {
  id: string;
  requestId: string;
  flowId: string;
  status: ExecutionStatus;
  attempts: number;
  createdAt: number;
  updatedAt: number;
  finishedAt?: number;
  /** Request received → first step started, in ms (sub-ms precision). */
  queueDelayMs?: number;
  error?: string;
  steps: StepRecord[];
  /**
   * Where a redelivered message resumes: the index of the next step and its full input.
   * Kept apart from the (truncated) step records so resumption never sees truncated data.
   */
  cursor?: {
    nextStep: number;
    input: unknown;
    /**
     * The id of the step to run next, null when none was left: a flow edited while the execution
     * waits (a retry, a dead letter) resumes at that step wherever it moved, never at a position
     * that now holds another step. Absent in cursors written before ids were kept (nextStep then).
     */
    nextStepId?: string | null;
  };
}
