import type { FastifyInstance } from 'fastify';
import { E, HookdError } from '../core/errors.js';
import type { Flow } from '../core/flow.js';
import type { FlowRegistry } from '../store/flow-registry.js';
import { buildFlow, newFlowId } from './flow-definition.js';
import { flowView } from './views.js';

interface Deps {
  registry: FlowRegistry;
  publicUrl: string;
}

type IdParams = { Params: { id: string } };

export async function flowRoutes(app: FastifyInstance, { registry, publicUrl }: Deps): Promise<void> {
  const find = (id: string): Flow => {
    const flow = registry.get(id);
    if (!flow) throw new HookdError(E.NOT_FOUND, `Flow ${id}`);
    return flow;
  };
  const view = (f: Flow) => flowView(f, publicUrl);

  app.get('/flows', async () => ({ items: registry.list().map(view) }));

  app.post('/flows', async (request, reply) => {
    const body = (request.body ?? {}) as { id?: unknown };
    const id = typeof body.id === 'string' ? body.id : newFlowId();
    if (registry.get(id)) throw new HookdError(E.CONFLICT, `Flow ${id} already exists (use PUT /api/flows/${id} to replace it)`);
    const flow = buildFlow(body, id);
    await registry.put(flow);
    return reply.code(201).header('location', `/api/flows/${encodeURIComponent(id)}`).send(view(flow));
  });

  app.get<IdParams>('/flows/:id', async (request) => view(find(request.params.id)));

  app.put<IdParams>('/flows/:id', async (request, reply) => {
    const existing = registry.get(request.params.id);
    const flow = buildFlow(request.body ?? {}, request.params.id, existing);
    await registry.put(flow);
    return reply.code(existing ? 200 : 201).send(view(flow));
  });

  app.delete<IdParams>('/flows/:id', async (request, reply) => {
    find(request.params.id);
    await registry.delete(request.params.id);
    return reply.code(204).send();
  });

  for (const status of ['started', 'stopped'] as const) {
    const verb = status === 'started' ? 'start' : 'stop';
    app.post<IdParams>(`/flows/:id/${verb}`, async (request) => {
      const flow = { ...find(request.params.id), status, updatedAt: new Date().toISOString() };
      await registry.put(flow);
      return view(flow);
    });
  }
}
