/**
 * Why a step did not complete. `retryable` decides between a nack with backoff (a receiver that is
 * down may come back) and an immediate dead letter (a broken expression will not heal by waiting).
 */
export class StepFailure extends Error {
  readonly retryable: boolean;
  /** Delay the receiver asked for (Retry-After on 429/503), in ms; the runner waits at least this. */
  readonly retryAfterMs: number | undefined;
  /** What the failed step's record shows as its output (an http step: the request it sent, the answer it got). */
  readonly output: unknown;

  constructor(message: string, options: { retryable: boolean; retryAfterMs?: number; cause?: unknown; output?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'StepFailure';
    this.retryable = options.retryable;
    this.retryAfterMs = options.retryAfterMs;
    this.output = options.output;
  }
}

export function isStepFailure(err: unknown): err is StepFailure {
  return err instanceof StepFailure;
}

/** JSONata's evaluation time limit (D1012). */
const EXPRESSION_TIMEOUT = 'D1012';

/**
 * An expression that fails on this input fails again on a retry: dead-letter at once. Except a
 * timeout: the limit is wall-clock time, and concurrent evaluations share the event loop, so under
 * load an ordinary expression can run out of it; retried with backoff (a runaway one still ends
 * dead after its attempts).
 */
export function expressionFailure(err: unknown): StepFailure {
  const timedOut = (err as { code?: unknown } | null)?.code === EXPRESSION_TIMEOUT;
  return new StepFailure(err instanceof Error ? err.message : String(err), { retryable: timedOut, cause: err });
}
