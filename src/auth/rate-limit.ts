import type { RateLimitDef } from './schema.js';

export type TakeResult = { ok: true; remaining: number } | { ok: false; retryAfterSeconds: number };

interface Bucket {
  tokens: number;
  /** Epoch ms of the last refill. */
  at: number;
  perSecond: number;
  burst: number;
}

export interface RateLimiterOptions {
  /** Limit for take() calls that pass none. */
  limit?: RateLimitDef;
  /** Most buckets kept; beyond it the least recently used are dropped. Default 10 000. */
  maxBuckets?: number;
}

/**
 * Token buckets per key (a flow id): each holds up to `burst` tokens and refills `perSecond`; a
 * request takes one. A bucket idle long enough to be full again is the same as no bucket, so such
 * buckets are swept; past `maxBuckets` the least recently used go first (Map order = recency).
 */
export class RateLimiter {
  readonly #buckets = new Map<string, Bucket>();
  readonly #limit: RateLimitDef | undefined;
  readonly #maxBuckets: number;
  #sinceSweep = 0;

  constructor(options: RateLimiterOptions = {}) {
    this.#limit = options.limit;
    this.#maxBuckets = Math.max(1, options.maxBuckets ?? 10_000);
  }

  get size(): number {
    return this.#buckets.size;
  }

  /**
   * Takes one token (or `cost`) from the key's bucket at time `now` (epoch ms). `commit` false only
   * looks: would the take succeed (nothing is taken)?
   */
  take(key: string, now: number, limit: RateLimitDef | undefined = this.#limit, cost = 1, commit = true): TakeResult {
    if (!limit) throw new Error('RateLimiter.take() needs a limit (none given, no default)');
    let b = this.#buckets.get(key);
    if (b) {
      this.#buckets.delete(key); // re-inserted below: most recent last
      if (b.perSecond !== limit.perSecond || b.burst !== limit.burst) {
        // The flow's limit changed: keep the fill level, capped by the new burst.
        b.perSecond = limit.perSecond;
        b.burst = limit.burst;
      }
      refill(b, now);
    } else {
      b = { tokens: limit.burst, at: now, perSecond: limit.perSecond, burst: limit.burst };
    }
    this.#buckets.set(key, b);
    let result: TakeResult;
    if (b.tokens >= cost) {
      if (commit) b.tokens -= cost;
      result = { ok: true, remaining: Math.floor(b.tokens) };
    } else {
      // A cost above the burst can never be met; say so with the longest sensible wait.
      const missingTokens = Math.min(cost, b.burst) - b.tokens;
      result = { ok: false, retryAfterSeconds: Math.max(1, Math.ceil(missingTokens / b.perSecond)) };
    }
    // After the take: the current bucket is now not full, so the sweep cannot drop its state.
    this.#evict(now);
    return result;
  }

  /** Forgets a key (e.g. when its flow is deleted or its limit removed). */
  delete(key: string): void {
    this.#buckets.delete(key);
  }

  #evict(now: number): void {
    while (this.#buckets.size > this.#maxBuckets) {
      const oldest = this.#buckets.keys().next().value;
      if (oldest === undefined) break;
      this.#buckets.delete(oldest);
    }
    // Amortised sweep of buckets that have refilled completely.
    if (++this.#sinceSweep < 1024) return;
    this.#sinceSweep = 0;
    for (const [key, b] of this.#buckets) {
      if (b.tokens + ((now - b.at) / 1000) * b.perSecond >= b.burst) this.#buckets.delete(key);
    }
  }
}

function refill(b: Bucket, now: number): void {
  // A clock stepping backwards adds nothing rather than removing tokens.
  const elapsed = Math.max(0, now - b.at);
  b.tokens = Math.min(b.burst, b.tokens + (elapsed / 1000) * b.perSecond);
  b.at = Math.max(b.at, now);
}
