/** A queue message: "run flow X for request Y". The payload stays in the request store. */
export interface Job {
  id: string;
  flowId: string;
  requestId: string;
  /** Deliveries so far, including the current one (1 on first delivery). */
  attempts: number;
  maxAttempts: number;
  enqueuedAt: number;
  lastError?: string;
}

export interface NewJob {
  flowId: string;
  requestId: string;
  maxAttempts: number;
  /** Not before (epoch ms); default now. */
  runAt?: number;
}

export interface DeadLetter extends Job {
  deadAt: number;
}
