import type { FastifyInstance, FastifyRequest } from 'fastify';
import { newSecrets, resolveMaskedInput } from '../auth/flow-secrets.js';
import { generateSecret } from '../auth/secret-box.js';
import { hasSecrets, mapSecrets, secretValues } from '../core/credentials.js';
import { E, HookdError } from '../core/errors.js';
import type { Flow } from '../core/flow.js';
import type { FlowRegistry } from '../store/flow-registry.js';
import { byReadToken } from './api-auth.js';
import { buildFlow, newFlowId } from './flow-definition.js';
import { flowView } from './views.js';

interface Deps {
  registry: FlowRegistry;
  publicUrl: () => string;
}

type IdParams = { Params: { id: string } };

/** A stored flow as input again (for edits made by the API itself). */
function flowInput(flow: Flow) {
  const { createdAt: _c, updatedAt: _u, ...input } = flow;
  return input;
}

export async function flowRoutes(app: FastifyInstance, { registry, publicUrl }: Deps): Promise<void> {
  // Read from the store, not this process's copy: with several instances, a flow created, changed
  // or deleted through another one in the last FLOW_REFRESH must not be overwritten or revived.
  const find = async (id: string): Promise<Flow> => {
    const flow = await registry.fetch(id);
    if (!flow) throw new HookdError(E.NOT_FOUND, `Flow ${id}`);
    return flow;
  };
  const view = (f: Flow, reveal?: ReadonlySet<string>) => flowView(f, publicUrl(), reveal);
  const readView = (request: FastifyRequest, f: Flow) => flowView(f, publicUrl(), undefined, byReadToken(request));

  app.get('/flows', async (request) => ({ items: registry.list().map((f) => readView(request, f)) }));

  app.post('/flows', async (request, reply) => {
    const body = (request.body ?? {}) as { id?: unknown };
    const id = typeof body.id === 'string' ? body.id : newFlowId();
    if (await registry.fetch(id)) throw new HookdError(E.CONFLICT, `Flow ${id} already exists (use PUT /api/flows/${id} to replace it)`);
    const flow = buildFlow(resolveMaskedInput(body, undefined), id);
    await registry.put(flow);
    return reply.code(201).header('location', `/api/flows/${encodeURIComponent(id)}`).send(view(flow, newSecrets(flow, undefined)));
  });

  app.get<IdParams>('/flows/:id', async (request) => readView(request, await find(request.params.id)));

  app.put<IdParams>('/flows/:id', async (request, reply) => {
    const existing = await registry.fetch(request.params.id);
    const flow = buildFlow(resolveMaskedInput(request.body ?? {}, existing), request.params.id, existing);
    await registry.put(flow);
    return reply.code(existing ? 200 : 201).send(view(flow, newSecrets(flow, existing)));
  });

  app.delete<IdParams>('/flows/:id', async (request, reply) => {
    if (!(await registry.delete(request.params.id))) throw new HookdError(E.NOT_FOUND, `Flow ${request.params.id}`);
    return reply.code(204).send();
  });

  // Rotation: add a second secret (given, or generated), move senders over, delete the old one.
  app.post<IdParams & { Body: { secret?: string } | undefined }>('/flows/:id/secrets', async (request, reply) => {
    const flow = await find(request.params.id);
    const auth = flow.trigger.auth;
    if (!hasSecrets(auth)) throw new HookdError(E.CONFLICT, `Flow ${flow.id} has no credential with secrets`);
    const current = secretValues(auth);
    if (current.length >= 2) throw new HookdError(E.CONFLICT, 'A credential holds at most two secrets: delete the old one first');
    const given = request.body?.secret;
    if (given !== undefined && (typeof given !== 'string' || given.length < 8 || given.length > 512)) {
      throw new HookdError(E.VALIDATION_FAILED, '/secret: a string of 8 to 512 characters');
    }
    const secret = given ?? generateSecret(auth.type);
    const createdAt = new Date().toISOString();
    const next = { ...auth, secrets: [...mapSecrets(auth, (v) => v).secrets, { value: secret, createdAt }] } as typeof auth;
    const updated = buildFlow({ ...flowInput(flow), trigger: { ...flow.trigger, auth: next } }, flow.id, flow);
    await registry.put(updated);
    return reply.code(201).send(view(updated, new Set([secret])));
  });

  app.delete<{ Params: { id: string; index: string } }>('/flows/:id/secrets/:index', async (request) => {
    const flow = await find(request.params.id);
    const auth = flow.trigger.auth;
    // Digits only: Number('') is 0, and '0x1' or '1e0' would name secret 1.
    const index = /^\d{1,4}$/.test(request.params.index) ? Number(request.params.index) : -1;
    if (!hasSecrets(auth) || index < 0 || index >= auth.secrets.length) {
      throw new HookdError(E.NOT_FOUND, `Secret ${request.params.index} of flow ${flow.id}`);
    }
    if (auth.secrets.length === 1) throw new HookdError(E.CONFLICT, 'The last secret cannot be deleted: add its successor first');
    const next = { ...auth, secrets: auth.secrets.filter((_, i) => i !== index) } as typeof auth;
    const updated = buildFlow({ ...flowInput(flow), trigger: { ...flow.trigger, auth: next } }, flow.id, flow);
    await registry.put(updated);
    return view(updated);
  });

  for (const status of ['started', 'stopped'] as const) {
    const verb = status === 'started' ? 'start' : 'stop';
    app.post<IdParams>(`/flows/:id/${verb}`, async (request) => {
      const flow = { ...(await find(request.params.id)), status, updatedAt: new Date().toISOString() };
      await registry.put(flow);
      return view(flow);
    });
  }
}
