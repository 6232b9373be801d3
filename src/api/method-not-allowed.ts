import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { E } from '../core/errors.js';

/**
 * A path the API has, called with a method it does not take (PATCH /api/flows/x): 405 with
 * `Allow`, as webhook URLs answer, instead of a 404 that says the path does not exist. Collects
 * the routes as they are registered (call before them; fastify gives their URLs with the
 * prefix). The function it returns is the not-found handler's first try: false when no route has
 * the path.
 */
export function methodNotAllowed(app: FastifyInstance): (request: FastifyRequest, reply: FastifyReply) => boolean {
  const routes: Array<{ pattern: RegExp; methods: string[] }> = [];
  app.addHook('onRoute', (route) => {
    const methods = (Array.isArray(route.method) ? route.method : [route.method]).filter((m) => m !== 'HEAD');
    routes.push({ pattern: pathPattern(route.url), methods });
  });
  return (request, reply) => {
    const path = request.url.split('?')[0] ?? '';
    const allowed = new Set(routes.filter((r) => r.pattern.test(path)).flatMap((r) => r.methods));
    if (allowed.size === 0) return false;
    if (allowed.has('GET')) allowed.add('HEAD');
    const allow = [...allowed].join(', ');
    void reply.code(405).header('allow', allow).send({ error: E.METHOD_NOT_ALLOWED.code, message: `Method ${request.method} is not allowed here (allowed: ${allow})` });
    return true;
  };
}

/** `/flows/:id/start` → a regular expression for concrete paths (a parameter is one segment; `*` the rest). */
function pathPattern(url: string): RegExp {
  const source = url
    .split('/')
    .map((segment) => (segment.startsWith(':') ? '[^/]+' : segment === '*' ? '.*' : segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('/');
  return new RegExp(`^${source}/?$`);
}
