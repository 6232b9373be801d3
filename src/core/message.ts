/**
 * The header hookd stores first among a message's headers when its flow verifies an `hmac`
 * credential: the name of that flow's signature header at receipt (lower case), which no pattern
 * can recognise. Whoever may not see signatures (read tokens, logs) finds the header by it, also
 * after the flow changed or was deleted, and in replayed copies. A sender's own value is dropped.
 */
export const SIGNATURE_HEADER_NAME = 'x-hookd-signature-header';

/**
 * The header a replayed copy carries: the id of the request it copies (steps can tell a replay;
 * bulk replays leave copies out). hookd's own: a sender's is dropped at ingress, so that no
 * sender can pass its events off as copies.
 */
export const REPLAY_OF_HEADER = 'x-hookd-replay-of';

/** A webhook call as hookd stored it: everything a step, a replay or a signature check needs. */
export interface ReceivedMessage {
  /** x-request-id when sane, else a UUIDv7 (sortable by time). */
  id: string;
  flowId: string;
  /** Epoch milliseconds with sub-millisecond precision. */
  receivedAt: number;
  method: string;
  /** Path after /hook/{flowId}, '' when none, else starting with '/'. */
  path: string;
  query: Record<string, string | string[]>;
  /** Lower-cased names, hop-by-hop headers dropped. */
  headers: Record<string, string | string[]>;
  contentType: string | null;
  /** Parsed body (JSON value, text, form object…); null when there was no body. */
  body: unknown;
  /** The body bytes exactly as received (signatures and replay need them). */
  rawBody: Buffer;
  clientIp: string;
  /** Files streamed to the attachment store (multipart parts, binary bodies). */
  attachments?: AttachmentRef[];
  /**
   * The body bytes exactly as received, kept in the attachment store instead of rawBody (binary
   * bodies: the same ref as attachments[0]; multipart bodies over 256 KiB). rawBody is empty then.
   */
  rawAttachment?: AttachmentRef;
  /** CloudEvents structured or binary mode: the event's attributes and data. */
  cloudEvent?: CloudEvent;
  /** CloudEvents batch mode: every event of the batch. */
  cloudEvents?: CloudEvent[];
}

export interface AttachmentRef {
  id: string;
  field?: string;
  filename?: string;
  contentType: string;
  size: number;
  sha256: string;
}

/** A CloudEvent (spec v1.0): required and optional context attributes, extensions, data. */
export interface CloudEvent {
  specversion: string;
  id: string;
  source: string;
  type: string;
  subject?: string;
  time?: string;
  datacontenttype?: string;
  dataschema?: string;
  /** Extension attributes (every other attribute / ce-* header). */
  extensions?: Record<string, unknown>;
  /** The event data: JSON value, string, or in binary mode the parsed body (null when it went to the store). */
  data?: unknown;
  /** Structured mode: binary data as sent, base64. */
  data_base64?: string;
}

/** The JSON form of a message that steps see and the API returns (raw bytes as base64). */
export interface MessageView {
  id: string;
  flowId: string;
  receivedAt: string;
  method: string;
  path: string;
  query: Record<string, string | string[]>;
  headers: Record<string, string | string[]>;
  contentType: string | null;
  body: unknown;
  clientIp: string;
  attachments?: AttachmentRef[];
  rawAttachment?: AttachmentRef;
  cloudEvent?: CloudEvent;
  cloudEvents?: CloudEvent[];
}

/** A message as GET /api/requests/{id} returns it (and job messages may carry it): the view, the raw body. */
export interface RequestView extends MessageView {
  /** The body bytes as received, base64 ('' when they went to the attachment store). */
  rawBody: string;
  /** Bytes of the body as received, wherever they are (rawBody, or the attachment store). */
  size: number;
}

export function toRequestView(m: ReceivedMessage): RequestView {
  return { ...toMessageView(m), rawBody: m.rawBody.toString('base64'), size: m.rawAttachment?.size ?? m.rawBody.length };
}

export function toMessageView(m: ReceivedMessage): MessageView {
  const view: MessageView = {
    id: m.id,
    flowId: m.flowId,
    receivedAt: new Date(m.receivedAt).toISOString(),
    method: m.method,
    path: m.path,
    query: m.query,
    headers: m.headers,
    contentType: m.contentType,
    body: m.body,
    clientIp: m.clientIp,
  };
  if (m.attachments && m.attachments.length > 0) view.attachments = m.attachments;
  if (m.rawAttachment) view.rawAttachment = m.rawAttachment;
  if (m.cloudEvent) view.cloudEvent = m.cloudEvent;
  if (m.cloudEvents) view.cloudEvents = m.cloudEvents;
  return view;
}

/**
 * Every attachment id a payload or a stored message holds — its files and its raw body — once each:
 * what to delete when a request is not committed, what the sweep must treat as referenced.
 */
export function attachmentIdsOf(p: { attachments?: readonly AttachmentRef[]; rawAttachment?: AttachmentRef }): string[] {
  if (p.attachments === undefined && p.rawAttachment === undefined) return [];
  const ids = new Set<string>();
  for (const ref of p.attachments ?? []) ids.add(ref.id);
  if (p.rawAttachment) ids.add(p.rawAttachment.id);
  return [...ids];
}

/**
 * The body `payloadType: base64` gives a request whose bytes are in the attachment store
 * (`{origin: null, originAttachment: <id>}`, ingress/parsers/payload-type.ts) with another file
 * named: a replayed copy's own (api/replayer.ts). Any other body is returned as it is.
 */
export function renameOriginAttachment(body: unknown, from: string | undefined, to: string | undefined): unknown {
  if (from === undefined || to === undefined || body === null || typeof body !== 'object' || Array.isArray(body)) return body;
  const b = body as Record<string, unknown>;
  const keys = Object.keys(b);
  if (keys.length !== 2 || b.origin !== null || b.originAttachment !== from) return body;
  return { origin: null, originAttachment: to };
}
