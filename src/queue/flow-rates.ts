import type { ExecutionRateDef } from '../core/flow.js';
import type { FlowRateGate } from './contract.js';

interface Bucket {
  def: ExecutionRateDef;
  /** This process's share of the rate when the bucket was last filled. */
  share: number;
  tokens: number;
  /** When `tokens` was last brought up to date. */
  at: number;
}

/**
 * A token bucket per flow with an `executionRate`: `perSecond` × `share()` tokens a second, at
 * most `burst` (default 1) × share, at least one, saved up. A consumer takes one per execution it
 * starts. `share` is this process's part of every rate when several processes start the same
 * flow's executions (the PostgreSQL queue: 1 / the live instances that run flows); 1 where one process runs a
 * flow (SQLite; RabbitMQ, where one instance holds each flow with a rate). A flow whose rate
 * changed starts again from a full bucket.
 */
export class FlowRates implements FlowRateGate {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    /** The flows' rates now, by flow id (read at every use: keep it cheap). */
    private readonly rates: () => ReadonlyMap<string, ExecutionRateDef>,
    private readonly share: () => number = () => 1,
    private readonly now: () => number = Date.now,
  ) {}

  any(): boolean {
    return this.rates().size > 0;
  }

  flows(): Iterable<string> {
    return this.rates().keys();
  }

  has(flowId: string): boolean {
    return this.rates().has(flowId);
  }

  available(flowId: string): number {
    const b = this.bucket(flowId);
    return b === undefined ? Number.POSITIVE_INFINITY : Math.floor(b.tokens + 1e-9);
  }

  availableWithin(flowId: string, ms: number): number {
    const b = this.bucket(flowId);
    return b === undefined ? Number.POSITIVE_INFINITY : Math.floor(b.tokens + (perSecond(b) * ms) / 1000 + 1e-9);
  }

  take(flowId: string): boolean {
    const b = this.bucket(flowId);
    if (b === undefined) return true;
    if (b.tokens + 1e-9 < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /**
   * Take the flow's next start whenever it comes: resolves how long from now to wait for it (0:
   * now). Unlike take(), it always books one, so the bucket may go below zero (a debt its rate
   * pays back): the runner's pacing of calls (FlowRunnerOptions.callPacing).
   */
  reserve(flowId: string): number {
    const b = this.bucket(flowId);
    if (b === undefined) return 0;
    b.tokens -= 1;
    return b.tokens >= -1e-9 ? 0 : Math.ceil((-b.tokens * 1000) / perSecond(b));
  }

  refund(flowId: string): void {
    const b = this.bucket(flowId);
    if (b !== undefined) b.tokens = Math.min(capacity(b), b.tokens + 1);
  }

  nextAt(flowId: string): number {
    const b = this.bucket(flowId);
    if (b === undefined || b.tokens + 1e-9 >= 1) return this.now();
    return b.at + Math.ceil(((1 - b.tokens) * 1000) / perSecond(b));
  }

  within(flowId: string, ms: number): number | undefined {
    const b = this.bucket(flowId);
    return b === undefined ? undefined : Math.floor(capacity(b) + (perSecond(b) * ms) / 1000);
  }

  /** The flow's bucket, refilled up to now; undefined when it has no rate (its bucket forgotten). */
  private bucket(flowId: string): Bucket | undefined {
    const def = this.rates().get(flowId);
    const now = this.now();
    let b = this.buckets.get(flowId);
    if (def === undefined) {
      if (b !== undefined) this.buckets.delete(flowId);
      return undefined;
    }
    const share = Math.min(1, Math.max(1e-6, this.share()));
    if (b === undefined || b.def.perSecond !== def.perSecond || b.def.burst !== def.burst) {
      b = { def, share, tokens: 0, at: now };
      b.tokens = capacity(b);
      this.buckets.set(flowId, b);
      return b;
    }
    if (now > b.at) {
      b.tokens = Math.min(capacity(b), b.tokens + (perSecond(b) * (now - b.at)) / 1000);
      b.at = now;
    }
    if (share !== b.share) {
      b.share = share;
      b.tokens = Math.min(b.tokens, capacity(b));
    }
    return b;
  }
}

function perSecond(b: Bucket): number {
  return b.def.perSecond * b.share;
}

function capacity(b: Bucket): number {
  return Math.max(1, (b.def.burst ?? 1) * b.share);
}
