import type { AttachmentRef } from '../../core/message.js';

/**
 * A flow trigger's `payloadType` (PIPEFORCE's webhook option): what the flow gets as body.
 *
 * - `raw` (default): the body as parsed for its content type (JSON value, XML → JSON, form object,
 *   text, null for binary bodies — see docs/payloads.md). No conversion beyond parsing.
 * - `base64`: `{ "origin": "<the exact bytes received, base64>" }`. When those bytes went to the
 *   attachment store (binary bodies, large multipart) they are not copied into the body:
 *   `{ "origin": null, "originAttachment": "<attachment id>" }`.
 * - `ignore`: the body is null (the request is still stored whole: raw bytes, attachments).
 */
export const PAYLOAD_TYPES = ['raw', 'base64', 'ignore'] as const;
export type PayloadType = (typeof PAYLOAD_TYPES)[number];

export interface PayloadLike {
  body: unknown;
  rawBody: Buffer;
  rawAttachment?: AttachmentRef;
}

/** A copy of `payload` with its body as `type` says; the input is left untouched. */
export function applyPayloadType<T extends PayloadLike>(payload: T, type: PayloadType = 'raw'): T {
  switch (type) {
    case 'raw':
      return payload;
    case 'ignore':
      return { ...payload, body: null };
    case 'base64':
      return {
        ...payload,
        body:
          payload.rawAttachment !== undefined && payload.rawBody.length === 0
            ? { origin: null, originAttachment: payload.rawAttachment.id }
            : { origin: payload.rawBody.toString('base64') },
      };
  }
}

