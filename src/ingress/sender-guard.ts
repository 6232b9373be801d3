import { CidrList, isIpAllowed } from '../auth/ip-allowlist.js';
import { RateLimiter } from '../auth/rate-limit.js';
import { E, HookdError } from '../core/errors.js';
import type { Flow } from '../core/flow.js';

/**
 * Per-flow sender policy checked before any byte of the body is read: IP allowlist (403) and rate
 * limit (429 + Retry-After). The client address is fastify's request.ip, which honours TRUST_PROXY
 * for X-Forwarded-For. Rate-limit buckets are per process (each instance of a scaled-out hookd
 * enforces its own share).
 */
export class SenderGuard {
  private readonly limiter = new RateLimiter();
  // Compiled once per flow version (a flow object is replaced on every change).
  private readonly allowlists = new WeakMap<Flow, CidrList>();

  admit(flow: Flow, clientIp: string, now: number): void {
    const { ipAllowlist, rateLimit } = flow.trigger;
    if (ipAllowlist && ipAllowlist.length > 0) {
      let list = this.allowlists.get(flow);
      if (!list) this.allowlists.set(flow, (list = new CidrList(ipAllowlist)));
      if (!isIpAllowed(list, clientIp)) throw new HookdError(E.IP_NOT_ALLOWED);
    }
    if (rateLimit) {
      const r = this.limiter.take(flow.id, now, rateLimit);
      if (!r.ok) throw new HookdError(E.RATE_LIMITED).withRetryAfter(r.retryAfterSeconds);
    }
  }
}
