import { CidrList, isIpAllowed, parseIp } from '../auth/ip-allowlist.js';
import { RateLimiter } from '../auth/rate-limit.js';
import { E, HookdError } from '../core/errors.js';
import type { RateLimitDef } from '../core/credentials.js';
import type { Flow } from '../core/flow.js';

/** The bucket of one client's refused calls to one flow (flow ids have no NUL). */
const failureKey = (flow: Flow, clientIp: string) => `${flow.id}\0${clientNetwork(clientIp)}`;
/** The bucket of one client's wrong handshake tokens to one flow. */
const guessKey = (flow: Flow, clientIp: string) => `${flow.id}\0handshake\0${clientNetwork(clientIp)}`;

/**
 * A client for the failure limit: an IPv4 address, or an IPv6 /64 (one host commonly has a whole
 * /64 to pick addresses from); IPv4-mapped IPv6 addresses are their IPv4 address.
 */
export function clientNetwork(ip: string): string {
  let address;
  try {
    address = parseIp(ip);
  } catch {
    address = undefined; // an odd zone id ipaddr.js cannot read
  }
  if (address === undefined) return ip; // not an address after all: its own bucket
  if (address.kind() === 'ipv4') return address.toString();
  return `${address.toNormalizedString().split(':').slice(0, 4).join(':')}::/64`;
}

/**
 * Schemes whose credentials can be guessed one call at a time (a password, a key, a token): their
 * refusals are limited per client. A signature cannot be guessed: a refused signed call costs its
 * client nothing more — and a client behind an untrusted proxy (every caller one address) is
 * never throttled for another's failures on such a flow.
 */
const guessable = (flow: Flow): boolean => {
  const type = flow.trigger.auth?.type;
  return type === 'basic' || type === 'apiKey' || type === 'token';
};

/**
 * Per-flow sender policy checked before any byte of the body is read: IP allowlist (403) and rate
 * limit (429 + Retry-After). The client address is fastify's request.ip, which honours TRUST_PROXY
 * for X-Forwarded-For.
 *
 * Rate-limit buckets live in this process. When several instances share the load (distributed
 * mode), each enforces its `share` of the flow's limit — 1 / the live instances — so the cluster as
 * a whole admits about the configured rate behind a load balancer that spreads evenly.
 */
export class SenderGuard {
  private readonly limiter = new RateLimiter();
  // Compiled once per flow version (a flow object is replaced on every change).
  private readonly allowlists = new WeakMap<Flow, CidrList>();
  private readonly shares = new WeakMap<Flow, { share: number; limit: RateLimitDef }>();

  /** @param share this instance's part of every flow's rate limit, (0, 1]; read per request. */
  constructor(private readonly share: () => number = () => 1) {}

  /**
   * Before the body: the allowlist, and the rate limit — taken now when `take`, else only looked at
   * (an empty bucket still refuses): a protected flow's token is taken by charge() once the caller's
   * credentials verified, so callers without them cannot use up the sender's rate. Their own
   * failures are limited apart, per client address (refused()): guessing credentials is throttled
   * at the flow's rate without locking the sender out.
   */
  admit(flow: Flow, clientIp: string, now: number, take = true): void {
    const { ipAllowlist, rateLimit } = flow.trigger;
    if (ipAllowlist && ipAllowlist.length > 0) {
      let list = this.allowlists.get(flow);
      if (!list) this.allowlists.set(flow, (list = new CidrList(ipAllowlist)));
      if (!isIpAllowed(list, clientIp)) throw new HookdError(E.IP_NOT_ALLOWED);
    }
    if (!rateLimit) return;
    if (guessable(flow)) this.takeToken(failureKey(flow, clientIp), flow, rateLimit, now, false);
    this.takeToken(flow.id, flow, rateLimit, now, take);
  }

  /** A caller whose credentials verified: takes its token of the flow's rate limit (429 when none is left). */
  charge(flow: Flow, now: number): void {
    const { rateLimit } = flow.trigger;
    if (rateLimit) this.takeToken(flow.id, flow, rateLimit, now, true);
  }

  /**
   * Meta's handshake: its verify token can be guessed whatever the flow's auth is, so a client's
   * wrong tokens spend a failure bucket of their own (only they: a signed flow's refused
   * signatures must not lock a client out). `admitGuess` before the token is compared (429 once
   * that bucket is empty), `wrongGuess` after a wrong one.
   */
  admitGuess(flow: Flow, clientIp: string, now: number): void {
    const { rateLimit } = flow.trigger;
    if (rateLimit) this.takeToken(guessKey(flow, clientIp), flow, rateLimit, now, false);
  }

  wrongGuess(flow: Flow, clientIp: string, now: number): void {
    const { rateLimit } = flow.trigger;
    if (rateLimit) this.limiter.take(guessKey(flow, clientIp), now, this.limitOf(flow, rateLimit));
  }

  /** A caller refused for its credentials (a probe included): a token of its own failure bucket. Never throws. */
  refused(flow: Flow, clientIp: string, now: number): void {
    const { rateLimit } = flow.trigger;
    if (rateLimit && guessable(flow)) this.limiter.take(failureKey(flow, clientIp), now, this.limitOf(flow, rateLimit));
  }

  private takeToken(key: string, flow: Flow, rateLimit: RateLimitDef, now: number, commit: boolean): void {
    const r = this.limiter.take(key, now, this.limitOf(flow, rateLimit), 1, commit);
    if (!r.ok) throw new HookdError(E.RATE_LIMITED).withRetryAfter(r.retryAfterSeconds);
  }

  private limitOf(flow: Flow, limit: RateLimitDef): RateLimitDef {
    const share = this.share();
    if (!(share > 0 && share < 1)) return limit;
    let scaled = this.shares.get(flow);
    if (scaled === undefined || scaled.share !== share) {
      // A burst below one token would refuse everything: every instance admits at least one.
      scaled = { share, limit: { perSecond: limit.perSecond * share, burst: Math.max(1, limit.burst * share) } };
      this.shares.set(flow, scaled);
    }
    return scaled.limit;
  }
}
