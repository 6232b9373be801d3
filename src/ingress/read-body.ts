import type { Readable } from 'node:stream';
import { E, HookdError } from '../core/errors.js';

/**
 * Read a request body into memory, counting bytes as they stream: past `limit` the read stops at
 * once with 413 (the body is never buffered whole first). `onChunk` sees every chunk in order
 * (signature verifiers hash while bytes arrive).
 */
export function readBody(stream: Readable, limit: number, onChunk?: (chunk: Buffer) => void): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = () => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      stream.off('aborted', onAborted);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        stream.pause();
        reject(new HookdError(E.PAYLOAD_TOO_LARGE, limit));
        return;
      }
      onChunk?.(chunk);
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(new HookdError(E.INVALID_BODY, 'request', err.message));
    };
    const onAborted = () => onError(new Error('client aborted the request'));
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onError);
    stream.on('aborted', onAborted);
  });
}

/**
 * Whether a body ends before its first byte (a chunked body of no chunk). Reads at most one chunk:
 * when bytes come, the request is refused anyway (and the rest of it lingered over).
 */
export function endsWithoutBytes(stream: Readable): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (empty: boolean) => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onGone);
      stream.off('aborted', onGone);
      if (!empty) stream.pause();
      resolve(empty);
    };
    const onData = (chunk: Buffer) => {
      if (chunk.length > 0) done(false);
    };
    const onEnd = () => done(true);
    // A sender gone mid-body sent no bodiless request: refused (it reads no answer anyway).
    const onGone = () => done(false);
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onGone);
    stream.on('aborted', onGone);
  });
}
