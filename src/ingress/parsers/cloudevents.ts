import { E, HookdError } from '../../core/errors.js';
import { readBody } from '../read-body.js';
import { jsonText, parseJsonText } from './buffered.js';
import type { CloudEvent, PayloadParser } from './contract.js';
import type { MediaType } from './media-type.js';

/**
 * CloudEvents 1.0 over HTTP (https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/bindings/http-protocol-binding.md).
 *
 * Structured mode, `application/cloudevents+json`: the body is the event as sent (a JSON object),
 * and `cloudEvent` holds its attributes and data normalized (extensions apart).
 * Batch mode, `application/cloudevents-batch+json`: the body is the array as sent, `cloudEvents`
 * the normalized events.
 * Binary mode, any content type with a `ce-specversion` header: the body is parsed by its content
 * type as usual, and `cloudEvent` holds the ce-* headers as attributes, Content-Type as
 * datacontenttype and the parsed body as data (see parsePayload).
 *
 * specversion, id, source and type are required (400 without them).
 */
export const cloudEventParser: PayloadParser = {
  name: 'cloudevents',
  accepts: (m) => m.type === 'application/cloudevents+json',
  async read(ctx) {
    const rawBody = await readBody(ctx.stream, ctx.payloadSizeLimit, ctx.onChunk);
    ctx.beforeParse?.();
    const body = parseJson(rawBody, ctx.media, 'CloudEvent');
    return { body, rawBody, cloudEvent: normalizeEvent(body, 'the event') };
  },
};

export const cloudEventBatchParser: PayloadParser = {
  name: 'cloudevents-batch',
  accepts: (m) => m.type === 'application/cloudevents-batch+json',
  async read(ctx) {
    const rawBody = await readBody(ctx.stream, ctx.payloadSizeLimit, ctx.onChunk);
    ctx.beforeParse?.();
    const body = parseJson(rawBody, ctx.media, 'CloudEvents batch');
    if (!Array.isArray(body)) throw invalid('CloudEvents batch', 'a batch is a JSON array of events');
    return { body, rawBody, cloudEvents: body.map((e, i) => normalizeEvent(e, `event ${i}`, 'CloudEvents batch')) };
  },
};

const REQUIRED = ['specversion', 'id', 'source', 'type'] as const;
const OPTIONAL = ['subject', 'time', 'datacontenttype', 'dataschema'] as const;

/** A structured-mode event → CloudEvent; 400 when required attributes are missing or not strings. */
export function normalizeEvent(value: unknown, what: string, kind = 'CloudEvent'): CloudEvent {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw invalid(kind, `${what} is not a JSON object`);
  const attrs = value as Record<string, unknown>;
  for (const name of REQUIRED) {
    if (typeof attrs[name] !== 'string' || attrs[name] === '') throw invalid(kind, `${what} has no ${name} (a non-empty string)`);
  }
  for (const name of OPTIONAL) {
    if (attrs[name] !== undefined && typeof attrs[name] !== 'string') throw invalid(kind, `${what}: ${name} must be a string`);
  }
  const event: CloudEvent = {
    specversion: attrs.specversion as string,
    id: attrs.id as string,
    source: attrs.source as string,
    type: attrs.type as string,
  };
  for (const name of OPTIONAL) if (attrs[name] !== undefined) event[name] = attrs[name] as string;
  const extensions: Record<string, unknown> = {};
  for (const [name, v] of Object.entries(attrs)) {
    if (name === 'data') event.data = v;
    else if (name === 'data_base64' && typeof v === 'string') event.data_base64 = v;
    else if (!(REQUIRED as readonly string[]).includes(name) && !(OPTIONAL as readonly string[]).includes(name)) {
      Object.defineProperty(extensions, name, { value: v, enumerable: true, writable: true, configurable: true });
    }
  }
  if (Object.keys(extensions).length > 0) event.extensions = extensions;
  return event;
}

/**
 * Binary mode: the context attributes from ce-* headers (values percent-decoded, as the binding
 * says), undefined when there is no ce-specversion header; 400 when a required one is missing.
 */
export function binaryModeAttributes(
  headers: Readonly<Record<string, string | string[] | undefined>> | undefined,
): Omit<CloudEvent, 'data'> | undefined {
  if (headers === undefined || headers['ce-specversion'] === undefined) return undefined;
  const attrs: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (!name.startsWith('ce-') || value === undefined) continue;
    const v = Array.isArray(value) ? value.join(',') : value;
    Object.defineProperty(attrs, name.slice(3), { value: percentDecode(v), enumerable: true, writable: true, configurable: true });
  }
  // datacontenttype is the Content-Type header in binary mode, never a ce- header.
  delete attrs.datacontenttype;
  return normalizeEvent(attrs, 'the set of ce-* headers');
}

function percentDecode(v: string): string {
  if (!v.includes('%')) return v;
  try {
    return decodeURIComponent(v);
  } catch {
    return v;
  }
}

function parseJson(raw: Buffer, media: MediaType, kind: string): unknown {
  if (raw.length === 0) throw invalid(kind, 'the body is empty');
  return parseJsonText(jsonText(raw, media, kind), kind);
}

function invalid(kind: string, reason: string): HookdError {
  return new HookdError(E.INVALID_BODY, kind, reason);
}
