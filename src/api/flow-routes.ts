import type { FastifyInstance, FastifyRequest } from 'fastify';
import { newSecrets, resolveMaskedInput } from '../auth/flow-secrets.js';
import { generateSecret } from '../auth/secret-box.js';
import { hasSecrets, mapSecrets, secretValues } from '../core/credentials.js';
import { E, HookdError } from '../core/errors.js';
import { FlowInput, nextUpdatedAt, type Flow } from '../core/flow.js';
import { type FlowRegistry, UnreadableFlowError } from '../store/flow-registry.js';
import { byReadToken } from './api-auth.js';
import { buildFlow, newFlowId } from './flow-definition.js';
import { flowView } from './views.js';
import Type from 'typebox';
import { bodyChecker } from './checked-body.js';
import { FlowPage, FlowView } from './response-schemas.js';

interface Deps {
  registry: FlowRegistry;
  publicUrl: () => string;
}

type IdParams = { Params: { id: string } };

/** What GET shows and a definition cannot set: a flow read with GET may be sent back with PUT as it is. */
const READ_ONLY = ['createdAt', 'updatedAt', 'webhookUrl'] as const;

/**
 * A POST/PUT body as a flow definition: no body is an empty definition (all defaults); read-only
 * fields are dropped. Anything else (null, an array, a string) goes to validation as it is (400).
 */
function definitionOf(body: unknown): unknown {
  if (body === undefined) return {};
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return body;
  if (!READ_ONLY.some((k) => k in body)) return body;
  const input = { ...(body as Record<string, unknown>) };
  for (const k of READ_ONLY) delete input[k];
  return input;
}

/** Read-modify-write rounds lost to other writers before giving up with 409. */
const UPDATE_ATTEMPTS = 5;

/** A stored flow as input again (for edits made by the API itself). */
function flowInput(flow: Flow) {
  const { createdAt: _c, updatedAt: _u, ...input } = flow;
  return input;
}


/** `{"secret": "…"}` (8 to 512 characters), or no body: one is generated. */
const NewSecretBody = Type.Object({ secret: Type.Optional(Type.String({ minLength: 8, maxLength: 512 })) }, { additionalProperties: false });
const newSecretBody = bodyChecker(NewSecretBody, 'secret');

export async function flowRoutes(app: FastifyInstance, { registry, publicUrl }: Deps): Promise<void> {
  // Read from the store, not this process's copy: with several instances, a flow created, changed
  // or deleted through another one in the last FLOW_REFRESH must not be overwritten or revived.
  const find = async (id: string): Promise<Flow> => {
    const flow = await readable(id);
    if (!flow) throw new HookdError(E.NOT_FOUND, `Flow ${id}`);
    return flow;
  };
  /** registry.fetch(), a flow whose secrets do not open answered with a 409 that says what to do. */
  const readable = async (id: string): Promise<Flow | undefined> => {
    try {
      return await registry.fetch(id);
    } catch (err) {
      throw err instanceof UnreadableFlowError ? unreadableConflict(id) : err;
    }
  };
  /**
   * Read, build, write only if nobody wrote the flow in between (else read again): two admins
   * adding a secret at once must not lose the one already shown to its caller. `change` may throw
   * (404, 409, 400) from what it reads.
   */
  const write = async (id: string, build: (stored: Flow | undefined) => Flow, replaces = false): Promise<{ flow: Flow; replaced: Flow | undefined }> => {
    for (let attempt = 0; attempt < UPDATE_ATTEMPTS; attempt++) {
      let stored: Flow | undefined;
      let unreadable: UnreadableFlowError | undefined;
      try {
        stored = await registry.fetch(id);
      } catch (err) {
        if (!(err instanceof UnreadableFlowError)) throw err;
        if (!replaces) throw unreadableConflict(id);
        // Its secrets do not open (another key): a whole replacement (PUT), its secrets given
        // again, may go over it (masked hints cannot be resolved: refused as for a new flow).
        unreadable = err;
      }
      const flow = build(stored);
      const expect = unreadable !== undefined ? { updatedAt: unreadable.updatedAt } : stored ? { updatedAt: stored.updatedAt } : { absent: true as const };
      if (await registry.put(flow, expect)) return { flow, replaced: stored };
    }
    throw new HookdError(E.CONFLICT, `Flow ${id} is being changed by other requests; try again`);
  };
  /** A change of an existing flow (404 when there is none), written as write() does. */
  const update = async (id: string, change: (flow: Flow) => Flow): Promise<Flow> =>
    (
      await write(id, (stored) => {
        if (!stored) throw new HookdError(E.NOT_FOUND, `Flow ${id}`);
        return change(stored);
      })
    ).flow;
  const view = (f: Flow, reveal?: ReadonlySet<string>) => flowView(f, publicUrl(), reveal);
  const readView = (request: FastifyRequest, f: Flow) => flowView(f, publicUrl(), undefined, byReadToken(request));

  app.get('/flows', { config: { doc: { summary: 'List flows (with webhookUrl; secrets masked)', responses: { 200: { description: 'Every flow', schema: FlowPage } } } } }, async (request) => ({ items: registry.list().map((f) => readView(request, f)) }));

  app.post('/flows', { config: { doc: { summary: 'Create a flow (an `id` in the body, or one is made)', body: FlowInput, responses: { 201: { description: 'The flow, new secrets shown once', schema: FlowView }, 400: 'Invalid definition, each problem by path', 409: 'The id exists' } } } }, async (request, reply) => {
    const body = definitionOf(request.body) as { id?: unknown } | null;
    const id = typeof body?.id === 'string' ? body.id : newFlowId();
    const exists = () => new HookdError(E.CONFLICT, `Flow ${id} already exists (use PUT /api/flows/${id} to replace it)`);
    if (await readable(id)) throw exists();
    const flow = buildFlow(resolveMaskedInput(body, undefined), id);
    if (!(await registry.put(flow, { absent: true }))) throw exists();
    return reply.code(201).header('location', `/api/flows/${encodeURIComponent(id)}`).send(view(flow, newSecrets(flow, undefined)));
  });

  app.get<IdParams>('/flows/:id', { config: { doc: { summary: 'A flow', responses: { 200: { description: 'The flow', schema: FlowView }, 404: 'No such flow', 409: 'Stored with credential secrets that do not open with this HOOKD_SECRET_KEY' } } } }, async (request) => readView(request, await find(request.params.id)));

  app.put<IdParams>('/flows/:id', { config: { doc: { summary: 'Create or replace a flow', body: FlowInput, responses: { 200: { description: 'Replaced', schema: FlowView }, 201: { description: 'Created (new secrets shown once)', schema: FlowView }, 400: 'Invalid definition', 409: 'Changed by other requests meanwhile: try again' } } } }, async (request, reply) => {
    const { id } = request.params;
    // A replacement, built again on what is stored when another write came first (masked
    // secrets are resolved against the flow they replace).
    const { flow, replaced } = await write(id, (stored) => buildFlow(resolveMaskedInput(definitionOf(request.body), stored), id, stored), true);
    if (replaced === undefined) reply.code(201).header('location', `/api/flows/${encodeURIComponent(id)}`);
    return reply.send(view(flow, newSecrets(flow, replaced)));
  });

  app.delete<IdParams>('/flows/:id', { config: { doc: { summary: 'Delete a flow (its requests and executions stay until retention)', responses: { 204: 'Deleted', 404: 'No such flow' } } } }, async (request, reply) => {
    if (!(await registry.delete(request.params.id))) throw new HookdError(E.NOT_FOUND, `Flow ${request.params.id}`);
    return reply.code(204).send();
  });

  // Rotation: add a second secret (given, or generated), move senders over, delete the old one.
  app.post<IdParams>('/flows/:id/secrets', { config: { doc: { summary: 'Add a second secret to the flow\'s credential (rotation); generated when none is given', body: NewSecretBody, bodyOptional: true, responses: { 201: { description: 'The flow, the new secret shown once', schema: FlowView }, 400: 'Invalid body', 404: 'No such flow', 409: 'No credential with secrets, or two held already, or stored with credential secrets that do not open with this HOOKD_SECRET_KEY' } } } }, async (request, reply) => {
    // A misspelt `secret` is a 400: dropped, it would make hookd generate one the sender does not have.
    const given = newSecretBody(request.body).secret;
    let secret = '';
    const updated = await update(request.params.id, (flow) => {
      const auth = flow.trigger.auth;
      if (!hasSecrets(auth)) throw new HookdError(E.CONFLICT, `Flow ${flow.id} has no credential with secrets`);
      if (secretValues(auth).length >= 2) throw new HookdError(E.CONFLICT, 'A credential holds at most two secrets: delete the old one first');
      secret = given ?? generateSecret(auth.type);
      const next = { ...auth, secrets: [...mapSecrets(auth, (v) => v).secrets, { value: secret, createdAt: new Date().toISOString() }] } as typeof auth;
      return buildFlow({ ...flowInput(flow), trigger: { ...flow.trigger, auth: next } }, flow.id, flow);
    });
    return reply.code(201).send(view(updated, new Set([secret])));
  });

  app.delete<{ Params: { id: string; index: string } }>('/flows/:id/secrets/:index', { config: { doc: { summary: 'Remove a secret of the flow\'s credential (the old one, after rotation)', responses: { 200: { description: 'The flow', schema: FlowView }, 404: 'No such flow or secret', 409: 'The last secret, or stored with credential secrets that do not open with this HOOKD_SECRET_KEY' } } } }, async (request) => {
    // Digits only: Number('') is 0, and '0x1' or '1e0' would name secret 1.
    const index = /^\d{1,4}$/.test(request.params.index) ? Number(request.params.index) : -1;
    // The secret the index named when first read: a write that came in between may have moved it
    // (the old one deleted, a new one added); the retry deletes that secret, never its neighbour.
    let named: string | undefined;
    const updated = await update(request.params.id, (flow) => {
      const auth = flow.trigger.auth;
      const values = secretValues(auth);
      if (named === undefined && index >= 0 && index < values.length) named = values[index];
      const at = named === undefined ? -1 : values.indexOf(named);
      if (!hasSecrets(auth) || at < 0) {
        throw new HookdError(E.NOT_FOUND, `Secret ${request.params.index} of flow ${flow.id}`);
      }
      if (auth.secrets.length === 1) throw new HookdError(E.CONFLICT, 'The last secret cannot be deleted: add its successor first');
      const next = { ...auth, secrets: auth.secrets.filter((_, i) => i !== at) } as typeof auth;
      return buildFlow({ ...flowInput(flow), trigger: { ...flow.trigger, auth: next } }, flow.id, flow);
    });
    return view(updated);
  });

  for (const status of ['started', 'stopped'] as const) {
    const verb = status === 'started' ? 'start' : 'stop';
    app.post<IdParams>(`/flows/:id/${verb}`, { config: { doc: { summary: `${verb === 'start' ? 'Start' : 'Stop'} a flow (a stopped flow's URL answers 404; its queued jobs wait)`, responses: { 200: { description: 'The flow', schema: FlowView }, 404: 'No such flow', 409: 'Stored with credential secrets that do not open with this HOOKD_SECRET_KEY' } } } }, async (request) =>
      view(await update(request.params.id, (flow) => ({ ...flow, status, updatedAt: nextUpdatedAt(flow) }))),
    );
  }
}

function unreadableConflict(id: string): HookdError {
  return new HookdError(
    E.CONFLICT,
    `Flow ${id} is stored with credential secrets that do not open with this HOOKD_SECRET_KEY (sealed under another key): send it again with its secrets (PUT /api/flows/${id}), or delete it`,
  );
}
