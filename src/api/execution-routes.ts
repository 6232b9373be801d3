import type { FastifyInstance, FastifyRequest } from 'fastify';
import Type, { type Static } from 'typebox';
import { E, HookdError } from '../core/errors.js';
import type { Execution } from '../core/execution.js';
import { Id } from '../core/flow.js';
import { toMessageView, toRequestView, type MessageView, type ReceivedMessage } from '../core/message.js';
import { byReadToken } from './api-auth.js';
import type { ExecutionStore, RequestStore } from '../store/contracts.js';
import { withMessageInputs } from './message-inputs.js';
import { PageQuery, page } from './pagination.js';
import { uuidv7Floor } from '../core/ids.js';
import { IsoTimePattern, parseIsoTime } from './query-formats.js';
import { invalidInput } from './checked-body.js';
import { executionView, readerExecution, readerHeaders } from './views.js';
import { ExecutionPage, ExecutionView, RequestPage, RequestView } from './response-schemas.js';

/** Stored body bytes per page of GET /api/requests, at most (a page holds at least one request). */
const LIST_PAGE_BYTES = 16 * 1024 * 1024;

const ExecutionQuery = Type.Object({
  flowId: Type.Optional(Id),
  /** The one execution of that request (a page of one, or none). */
  requestId: Type.Optional(Id),
  status: Type.Optional(Type.Union([Type.Literal('running'), Type.Literal('retrying'), Type.Literal('completed'), Type.Literal('filtered'), Type.Literal('dead')])),
  /** Executions created at or after this time (RFC 3339 with its zone). */
  since: Type.Optional(Type.String({ pattern: IsoTimePattern })),
  /** Executions created before this time. */
  until: Type.Optional(Type.String({ pattern: IsoTimePattern })),
  ...PageQuery,
});
const RequestQuery = Type.Object({ flowId: Type.Optional(Id), ...PageQuery });

export async function executionRoutes(
  app: FastifyInstance,
  deps: {
    executions: ExecutionStore;
    requests: RequestStore;
    /** EXECUTION_DATA_LIMIT */
    executionDataLimit: number;
    /** A flow's own signature header name (an hmac config), lower case: hidden from read tokens too. */
    signatureHeaderOf?: (flowId: string) => string | undefined;
  },
): Promise<void> {
  const headerOf = (flowId: string) => deps.signatureHeaderOf?.(flowId);
  /** A view of a stored message as this caller may see it: a read token's without signature headers (views.ts). */
  const viewFor = <V extends MessageView>(request: FastifyRequest, toView: (m: ReceivedMessage) => V): ((m: ReceivedMessage) => V) => {
    if (!byReadToken(request)) return toView;
    return (m) => {
      const view = toView(m);
      return { ...view, headers: readerHeaders(view.headers, headerOf(m.flowId)) };
    };
  };
  /** Executions as this caller may see them (a read token's step data without signatures). */
  const executionsFor = (request: FastifyRequest, list: Execution[]): Execution[] =>
    byReadToken(request) ? list.map((e) => readerExecution(e, headerOf(e.flowId))) : list;
  app.get<{ Querystring: Static<typeof ExecutionQuery> }>('/executions', { schema: { querystring: ExecutionQuery }, config: { doc: { summary: 'Executions, newest first (`next` → `before` for the next page)', responses: { 200: { description: 'A page of executions', schema: ExecutionPage }, 400: 'Invalid query' } } } }, async (request) => {
    const { requestId, since, until, ...rest } = request.query;
    const limit = rest.limit ?? 100;
    // Execution ids are UUIDv7s of their creation time: a time range is a range of ids. `until`
    // is one more upper bound (`id < before`); `since` ends the list, and a page cut by it is the last.
    const sinceId = since === undefined ? undefined : uuidv7Floor(timeOf('since', since));
    const untilId = until === undefined ? undefined : uuidv7Floor(timeOf('until', until));
    const query = untilId !== undefined && (rest.before === undefined || untilId < rest.before) ? { ...rest, before: untilId } : rest;
    // Paged by id alone (`id < before`): a cursor that names nothing any more still pages right.
    const listed = requestId === undefined ? await deps.executions.list({ ...query, limit }) : await executionOfRequest(deps.executions, requestId, query);
    const items = sinceId === undefined ? listed : listed.filter((e) => e.id >= sinceId);
    const shown = await withMessageInputs(items, deps.requests, deps.executionDataLimit, viewFor(request, toMessageView));
    const shownPage = page(executionsFor(request, shown), limit, executionView);
    return items.length < listed.length ? { items: shownPage.items } : shownPage;
  });

  app.get<{ Params: { id: string } }>('/executions/:id', { config: { doc: { summary: 'An execution with its step records', responses: { 200: { description: 'The execution', schema: ExecutionView }, 404: 'No such execution' } } } }, async (request) => {
    const execution = await deps.executions.get(request.params.id);
    if (!execution) throw new HookdError(E.NOT_FOUND, `Execution ${request.params.id}`);
    const shown = await withMessageInputs([execution], deps.requests, deps.executionDataLimit, viewFor(request, toMessageView));
    return executionView(executionsFor(request, shown)[0]!);
  });

  app.get<{ Querystring: Static<typeof RequestQuery> }>('/requests', { schema: { querystring: RequestQuery }, config: { doc: { summary: 'Stored requests, newest first by time of receipt (pages of at most 16 MiB of bodies)', responses: { 200: { description: 'A page of requests', schema: RequestPage }, 400: 'Invalid query', 410: 'The `before` request is gone' } } } }, async (request) => {
    const limit = request.query.limit ?? 100;
    // Bodies are stored inline up to PAYLOAD_SIZE_LIMIT: a page of 1,000 could be gigabytes. Sizes
    // first, then only the rows that fit the budget (the first always), read by id.
    const sizes = await deps.requests.listSizes({ ...request.query, limit });
    if (sizes.length === 0) await requestCursorExists(request.query.before, deps.requests);
    const ids: string[] = [];
    let bytes = 0;
    for (const s of sizes) {
      if (ids.length > 0 && bytes + s.bytes > LIST_PAGE_BYTES) break;
      ids.push(s.id);
      bytes += s.bytes;
    }
    // A request purged between the two reads is left out.
    const [items, executionIds] = await Promise.all([
      Promise.all(ids.map((id) => deps.requests.get(id))).then((ms) => ms.filter((m) => m !== undefined)),
      deps.executions.idsByRequest(ids),
    ]);
    const last = ids[ids.length - 1];
    const more = sizes.length === limit || ids.length < sizes.length;
    const view = viewFor(request, toRequestView);
    return { items: items.map((m) => ({ ...view(m), executionId: executionIds.get(m.id) })), ...(more && last !== undefined ? { next: last } : {}) };
  });

  app.get<{ Params: { id: string } }>('/requests/:id', { config: { doc: { summary: 'A stored request (body, raw body as base64, headers, files) with its execution id', responses: { 200: { description: 'The request', schema: RequestView }, 404: 'No such request' } } } }, async (request) => {
    const message = await deps.requests.get(request.params.id);
    if (!message) {
      const notFound = new HookdError(E.NOT_FOUND, `Request ${request.params.id}`);
      if (deps.requests.recordedLater?.() !== true) throw notFound;
      throw notFound.withDetails({
        recordedLater: 'RABBITMQ_ACCEPT=broker: a request is stored when a worker takes its job, so one answered a moment ago, behind a backlog, or queued for a stopped flow may not be here yet',
      });
    }
    const execution = await deps.executions.getByRequest(message.id);
    return { ...viewFor(request, toRequestView)(message), executionId: execution?.id };
  });
}

/** A `since`/`until` query value as epoch ms; the schema checked its form, this that it names a real time (not February 30th). */
function timeOf(name: string, text: string): number {
  const ms = parseIsoTime(text);
  if (ms === undefined) throw invalidInput('query', [`/querystring/${name}: not a time: ${text}`]);
  return ms;
}

/**
 * Requests page from the cursor's row (time of receipt, then id): after a cursor (`before`) that
 * names nothing any more (retention deleted the last request of the previous page) the page is
 * empty whatever is older, which a client would take for the end of the list. A 410 says so.
 */
async function requestCursorExists(before: string | undefined, requests: RequestStore): Promise<void> {
  if (before !== undefined && (await requests.get(before)) === undefined) throw new HookdError(E.CURSOR_GONE, 'Request', before);
}

/** GET /api/executions?requestId=: a request has one execution; the other filters still apply. */
async function executionOfRequest(executions: ExecutionStore, requestId: string, q: { flowId?: string; status?: string; before?: string }): Promise<Execution[]> {
  const e = await executions.getByRequest(requestId);
  if (e === undefined || (q.flowId !== undefined && e.flowId !== q.flowId) || (q.status !== undefined && e.status !== q.status)) return [];
  return q.before !== undefined && !(e.id < q.before) ? [] : [e];
}
