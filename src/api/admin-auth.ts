import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { E, HookdError } from '../core/errors.js';

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * onRequest hook: `Authorization: Bearer <admin token>`, compared in constant time with the
 * token's SHA-256 (an instance of a cluster may know only the hash of the cluster's token).
 */
export function requireAdminToken(expected: Buffer) {
  return async (request: FastifyRequest, reply: FastifyReply) => {
    const header = request.headers.authorization;
    const match = header === undefined ? null : /^Bearer\s+(.+)$/i.exec(header);
    if (!match) {
      reply.header('www-authenticate', 'Bearer realm="hookd"');
      throw new HookdError(E.UNAUTHORIZED, 'Authorization: Bearer <admin token> required');
    }
    if (!timingSafeEqual(digest(match[1]!.trim()), expected)) throw new HookdError(E.FORBIDDEN, 'Invalid admin token');
  };
}
