import { type FastifyBaseLogger, type FastifyReply, type FastifyRequest, LogController } from 'fastify';

/** Whether the (pino) logger writes debug lines; fastify's logger type does not declare isLevelEnabled. */
export function debugEnabled(log: FastifyBaseLogger): boolean {
  return (log as FastifyBaseLogger & { isLevelEnabled?: (level: string) => boolean }).isLevelEnabled?.('debug') ?? false;
}

/**
 * fastify's per-request lines, as hookd writes them: none at info (at thousands of webhooks a
 * second they cost more than they tell); at debug one line per answered request — method, path,
 * status, time, client address — for an operator chasing what a sender gets. Only the path:
 * fastify's own lines log the URL with its query, where `?token=` credentials may be. The
 * reason of a refused request is logged beside it by the error handler (error-handler.ts).
 */
export class RequestLogController extends LogController {
  constructor() {
    super({ disableRequestLogging: true });
  }

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if (!debugEnabled(request.log)) return;
    request.log.debug(
      {
        method: request.method,
        url: request.url.split('?')[0],
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime * 10) / 10,
        ip: request.ip,
        ...(error ? { error: error.message } : {}),
      },
      'request completed',
    );
  }
}
