/** Retry delays: exponential from backoffMs, capped at maxBackoffMs, with ±20 % jitter. */
export interface BackoffPolicy {
  backoffMs: number;
  maxBackoffMs: number;
}

export const JITTER = 0.2;

/**
 * Delay before delivery attempt `attempt + 1`, after attempt `attempt` (1-based) failed:
 * d = min(maxBackoffMs, backoffMs · 2^(attempt-1)), then a uniform pick in [0.8·d, 1.2·d] that never
 * exceeds maxBackoffMs (at the cap the jitter only shortens, so retries still spread out).
 */
export function backoffDelay(attempt: number, policy: BackoffPolicy, random: () => number = Math.random): number {
  const n = Math.max(1, Math.floor(attempt));
  const max = Math.max(0, policy.maxBackoffMs);
  const base = Math.min(max, Math.max(0, policy.backoffMs) * 2 ** (n - 1));
  const low = base * (1 - JITTER);
  const high = Math.min(max, base * (1 + JITTER));
  return Math.round(low + (high - low) * random());
}
