import type { OpenedAttachment } from '../attachments/contract.js';
import type { StepDef } from '../core/flow.js';
import type { AttachmentRef } from '../core/message.js';
import type { RunnerLogger } from './logger.js';

/** What a step sees besides its input. */
export interface StepContext {
  flowId: string;
  requestId: string;
  stepId: string;
  /** Delivery attempt of the queue message (1-based). */
  attempt: number;
  logger: RunnerLogger;
  /** Aborted when the runner stops and gives the job back; long steps (http) should end early. */
  signal?: AbortSignal;
  /** The request's stored bytes (the http step's forwardAttachment). */
  payload?: RequestPayload;
  /** The message the flow received, as the first step's input: `$message` in expressions. */
  message?: unknown;
}

/** What a step may forward of the request being run: its raw body and files. */
export interface RequestPayload {
  contentType: string | null;
  /** The body as received, when small enough to be stored inline (else rawAttachment). */
  rawBody: Buffer;
  rawAttachment?: AttachmentRef;
  attachments: readonly AttachmentRef[];
  /** An attachment's bytes; undefined when it is gone (purged) or no store is configured. */
  open(id: string): Promise<OpenedAttachment | undefined>;
}

export type StepOutcome =
  /** Continue: `output` is the next step's input. */
  | { status: 'completed'; output: unknown }
  /** The execution ends here as `filtered`. */
  | { status: 'filtered' };

/**
 * A step definition compiled once per flow version (JSONata parsed, URL checked). `run` resolves
 * with an outcome or rejects with a StepFailure.
 */
export interface CompiledStep {
  readonly def: StepDef;
  /**
   * No effect outside this process: the runner may start it before the execution record is
   * confirmed (and throw the result away if the execution turns out to be further along).
   */
  readonly pure: boolean;
  run(input: unknown, ctx: StepContext): Promise<StepOutcome>;
}
