import { describe, expect, it } from 'vitest';
import type { ParsedPayload } from '../../src/ingress/parsers/contract.js';
import { attachmentIdsOf } from '../../src/ingress/parsers/index.js';
import { applyPayloadType, PAYLOAD_TYPES } from '../../src/ingress/parsers/payload-type.js';

const json: ParsedPayload = { body: { a: 1 }, rawBody: Buffer.from('{"a":1}') };
const ref = { id: '0190b5b4-9c6b-7a3e-8e4f-3a1b2c3d4e5f', contentType: 'application/pdf', size: 3, sha256: 'x' };
const binary: ParsedPayload = { body: null, rawBody: Buffer.alloc(0), attachments: [ref], rawAttachment: ref };

describe('applyPayloadType (PIPEFORCE payloadType)', () => {
  it('lists its values', () => {
    expect(PAYLOAD_TYPES).toEqual(['raw', 'base64', 'ignore']);
  });

  it('raw (the default): the parsed body, untouched', () => {
    expect(applyPayloadType(json, 'raw')).toBe(json);
    expect(applyPayloadType(json)).toBe(json);
  });

  it('base64: the exact bytes received in `origin`', () => {
    const out = applyPayloadType(json, 'base64');
    expect(out.body).toEqual({ origin: Buffer.from('{"a":1}').toString('base64') });
    expect(out.rawBody).toBe(json.rawBody);
    expect(json.body).toEqual({ a: 1 }); // the input is not changed
  });

  it('base64 of bytes kept in the attachment store: a reference, not a copy', () => {
    expect(applyPayloadType(binary, 'base64').body).toEqual({ origin: null, originAttachment: ref.id });
  });

  it('ignore: the body is dropped, the rest (raw bytes, attachments) kept', () => {
    const out = applyPayloadType(binary, 'ignore');
    expect(out.body).toBeNull();
    expect(out.attachments).toEqual([ref]);
    expect(applyPayloadType(json, 'ignore')).toEqual({ ...json, body: null });
  });

  it('works on any object with body and rawBody (a stored message too)', () => {
    const message = { id: 'm1', flowId: 'f', body: 'text', rawBody: Buffer.from('text') };
    expect(applyPayloadType(message, 'base64')).toEqual({ ...message, body: { origin: 'dGV4dA==' } });
  });
});

describe('attachmentIdsOf', () => {
  it('lists files and the raw attachment once each', () => {
    expect(attachmentIdsOf(binary)).toEqual([ref.id]);
    expect(attachmentIdsOf({ attachments: [ref, { ...ref, id: 'b' }], rawAttachment: { ...ref, id: 'raw' } })).toEqual([ref.id, 'b', 'raw']);
    expect(attachmentIdsOf(json)).toEqual([]);
  });
});
