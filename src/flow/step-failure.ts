/**
 * Why a step did not complete. `retryable` decides between a nack with backoff (a receiver that is
 * down may come back) and an immediate dead letter (a broken expression will not heal by waiting).
 */
export class StepFailure extends Error {
  readonly retryable: boolean;
  /** Delay the receiver asked for (Retry-After on 429/503), in ms; the runner waits at least this. */
  readonly retryAfterMs: number | undefined;

  constructor(message: string, options: { retryable: boolean; retryAfterMs?: number; cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'StepFailure';
    this.retryable = options.retryable;
    this.retryAfterMs = options.retryAfterMs;
  }
}

export function isStepFailure(err: unknown): err is StepFailure {
  return err instanceof StepFailure;
}

/** An expression that fails on this input fails again on a retry: dead-letter at once. */
export function expressionFailure(err: unknown): StepFailure {
  return new StepFailure(err instanceof Error ? err.message : String(err), { retryable: false, cause: err });
}
