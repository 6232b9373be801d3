import { timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { tokenDigest } from '../config/admin-token.js';
import { E, HookdError } from '../core/errors.js';

export interface ApiTokens {
  /** SHA-256 of the admin token: every route. */
  admin: Buffer;
  /** SHA-256 of each read token (HOOKD_READ_TOKENS): GET and HEAD only. */
  readers: readonly Buffer[];
}

const READS = new Set(['GET', 'HEAD']);

/**
 * onRequest hook: `Authorization: Bearer <token>`, compared in constant time with the tokens'
 * SHA-256 (an instance of a cluster may know only the hash of the cluster's admin token). A read
 * token — for components outside hookd that fetch requests and their files — may only read: any
 * other method is refused with 403 before a handler runs.
 */
export function requireApiToken(tokens: ApiTokens) {
  return async (request: FastifyRequest, reply: FastifyReply) => {
    const header = request.headers.authorization;
    const match = header === undefined ? null : /^Bearer\s+(.+)$/i.exec(header);
    const refused = (reason: string) =>
      request.log.warn({ ip: request.ip, method: request.method, url: request.url.split('?')[0], reason }, 'admin API call refused');
    if (!match) {
      refused('no bearer token');
      reply.header('www-authenticate', 'Bearer realm="hookd"');
      throw new HookdError(E.UNAUTHORIZED, 'Authorization: Bearer <admin token> required');
    }
    const given = tokenDigest(match[1]!.trim());
    if (timingSafeEqual(given, tokens.admin)) return;
    // Every read token is compared, so the time taken does not tell which one matched.
    let reader = false;
    for (const digest of tokens.readers) if (timingSafeEqual(given, digest)) reader = true;
    if (!reader) {
      refused('unknown token');
      // RFC 6750: a token that is not valid is a 401 (403 is a valid token that may not do this).
      reply.header('www-authenticate', 'Bearer realm="hookd", error="invalid_token"');
      throw new HookdError(E.UNAUTHORIZED, tokens.readers.length > 0 ? 'Invalid token' : 'Invalid admin token');
    }
    if (!READS.has(request.method)) {
      refused('read token on a change');
      throw new HookdError(E.FORBIDDEN, 'This is a read token: it may only GET; changes need the admin token');
    }
    readTokenRequests.add(request);
  };
}

const readTokenRequests = new WeakSet<FastifyRequest>();

/** The request came with a read token (not the admin token): answers hide what only admins need. */
export function byReadToken(request: FastifyRequest): boolean {
  return readTokenRequests.has(request);
}
