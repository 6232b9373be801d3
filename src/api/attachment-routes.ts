import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { contentDisposition } from '../attachments/content-disposition.js';
import type { AttachmentStore, ByteRange } from '../attachments/contract.js';
import { E, HookdError } from '../core/errors.js';
import type { AttachmentRef, ReceivedMessage } from '../core/message.js';
import type { RequestStore } from '../store/contracts.js';

interface Deps {
  requests: RequestStore;
  attachments?: AttachmentStore;
}

/**
 * The stored bytes of a request:
 *   GET /requests/:id/attachments/:attId  one of its files (multipart part, binary body)
 *   GET /requests/:id/raw                 its body exactly as received
 * Streamed from the attachment store (never loaded whole), with Content-Length, a download
 * Content-Disposition (filename*), nosniff and a sandboxing CSP: the bytes are the sender's, never
 * to be rendered as hookd's own content. A single `Range: bytes=…` is honoured (206).
 */
export async function attachmentRoutes(app: FastifyInstance, deps: Deps): Promise<void> {
  const message = async (id: string): Promise<ReceivedMessage> => {
    const m = await deps.requests.get(id);
    if (m === undefined) throw new HookdError(E.NOT_FOUND, `Request ${id}`);
    return m;
  };

  app.get<{ Params: { id: string; attId: string } }>('/requests/:id/attachments/:attId', { config: { doc: { summary: 'Download a file of a request (Range supported)', responses: { 200: 'The bytes', 206: 'A range', 404: 'No such request or file', 416: 'Range outside the file' } } } }, async (request, reply) => {
    const m = await message(request.params.id);
    const { attId } = request.params;
    // Only ids this request references: the route never serves another request's files.
    const ref = [...(m.attachments ?? []), ...(m.rawAttachment ? [m.rawAttachment] : [])].find((a) => a.id === attId);
    if (ref === undefined) throw new HookdError(E.NOT_FOUND, `Attachment ${attId} of request ${m.id}`);
    return sendAttachment(request, reply, deps.attachments, ref, ref.filename ?? ref.id);
  });

  app.get<{ Params: { id: string } }>('/requests/:id/raw', { config: { doc: { summary: 'Download a request\'s body exactly as received (Range supported)', responses: { 200: 'The bytes', 206: 'A range', 404: 'No such request', 416: 'Range outside the body' } } } }, async (request, reply) => {
    const m = await message(request.params.id);
    const name = `${m.id}.body`;
    if (m.rawAttachment !== undefined) {
      return sendAttachment(request, reply, deps.attachments, { ...m.rawAttachment, contentType: m.contentType ?? m.rawAttachment.contentType }, name);
    }
    const type = m.contentType ?? 'application/octet-stream';
    const range = requestedRange(request, reply, m.rawBody.length);
    downloadHeaders(reply, type, name);
    if (range === undefined) return reply.header('content-length', String(m.rawBody.length)).send(m.rawBody);
    const end = range.end ?? m.rawBody.length - 1;
    return reply.send(m.rawBody.subarray(range.start, end + 1));
  });
}

async function sendAttachment(
  request: FastifyRequest,
  reply: FastifyReply,
  store: AttachmentStore | undefined,
  ref: AttachmentRef,
  filename: string,
) {
  if (store === undefined) throw new HookdError(E.NOT_FOUND, `Attachment ${ref.id}`);
  const range = requestedRange(request, reply, ref.size);
  const opened = await store.open(ref.id, range);
  // Referenced but gone: removed by hand, or purged a moment ago.
  if (opened === undefined) throw new HookdError(E.NOT_FOUND, `Attachment ${ref.id}`);
  downloadHeaders(reply, ref.contentType, filename);
  if (range === undefined) reply.header('content-length', String(opened.ref.size));
  return reply.send(opened.stream);
}

function downloadHeaders(reply: FastifyReply, contentType: string, filename: string): void {
  reply
    .header('content-type', contentType)
    .header('content-disposition', contentDisposition(filename))
    .header('x-content-type-options', 'nosniff')
    .header('content-security-policy', "default-src 'none'; sandbox")
    .header('accept-ranges', 'bytes');
}

/**
 * The one byte range asked for (`bytes=a-b`, `bytes=a-`, `bytes=-n`) with 206 and Content-Range
 * set, undefined for the whole body (no Range header, or one this route does not serve:
 * several ranges, other units). An unsatisfiable range → 416.
 */
function requestedRange(request: FastifyRequest, reply: FastifyReply, size: number): ByteRange | undefined {
  const header = request.headers.range;
  if (header === undefined) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  // Not a range this route understands, or an invalid one (last before first): ignored, the whole
  // body is the answer (RFC 9110 §14.2). Only a valid range outside the body is a 416.
  if (!m || (m[1] === '' && m[2] === '') || (m[1] !== '' && m[2] !== '' && Number(m[2]) < Number(m[1]))) return undefined;
  let start: number;
  let end: number;
  if (m[1] === '') {
    start = Math.max(size - Number(m[2]), 0);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || start > end) {
    throw new HookdError(E.RANGE_NOT_SATISFIABLE, header, size).withHeaders({ 'content-range': `bytes */${size}` });
  }
  reply.code(206).header('content-range', `bytes ${start}-${end}/${size}`).header('content-length', String(end - start + 1));
  return { start, end };
}
