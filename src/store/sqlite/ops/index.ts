import { acceptRequest } from './accept-request.js';
import { ackJob } from './ack-job.js';
import { beginExecution } from './begin-execution.js';
import { claimJobs } from './claim-jobs.js';
import { deadLetterJob } from './dead-letter-job.js';
import { deleteFlow } from './delete-flow.js';
import { enqueueJob } from './enqueue-job.js';
import { expireLeases } from './expire-leases.js';
import { extendLeases } from './extend-leases.js';
import { forgetFlowDeletion } from './forget-flow-deletion.js';
import { nackJob } from './nack-job.js';
import { purgeRequests } from './purge-requests.js';
import { reclaimSpace } from './reclaim-space.js';
import { putFlow } from './put-flow.js';
import { recordStep } from './record-step.js';
import { releaseJob } from './release-job.js';
import { retryDeadJob } from './retry-dead-job.js';
import { retryDeadJobs } from './retry-dead-jobs.js';
import { discardDeadJob } from './discard-dead-job.js';
import { wakeStoppedJobs } from './wake-stopped-jobs.js';
import { saveRun } from './save-run.js';
import { setExecutionStatus } from './set-execution-status.js';
import { moveExecutionStatus } from './move-execution-status.js';
import { touchHeartbeat } from './touch-heartbeat.js';
import type { OpContext } from './define-op.js';

/**
 * Every write the writer thread knows, by name. The main thread imports only the types below
 * (`import type`), so op code and its statements live in the writer thread alone.
 */
export const ops = {
  acceptRequest,
  putFlow,
  deleteFlow,
  forgetFlowDeletion,
  touchHeartbeat,
  beginExecution,
  recordStep,
  saveRun,
  setExecutionStatus,
  moveExecutionStatus,
  claimJobs,
  ackJob,
  nackJob,
  deadLetterJob,
  releaseJob,
  extendLeases,
  expireLeases,
  enqueueJob,
  retryDeadJob,
  retryDeadJobs,
  discardDeadJob,
  wakeStoppedJobs,
  purgeRequests,
  reclaimSpace,
};

type Ops = typeof ops;
export type OpName = keyof Ops;
export type OpArgs<K extends OpName> = Parameters<ReturnType<Ops[K]>>[0];
export type OpResult<K extends OpName> = ReturnType<ReturnType<Ops[K]>>;

export type CompiledOps = { [K in OpName]: (args: OpArgs<K>) => OpResult<K> };

/** Prepare every op's statements on the writer connection. */
export function compileOps(ctx: OpContext): CompiledOps {
  const compiled = {} as Record<string, unknown>;
  for (const [name, factory] of Object.entries(ops)) compiled[name] = (factory as (c: OpContext) => unknown)(ctx);
  return compiled as CompiledOps;
}
