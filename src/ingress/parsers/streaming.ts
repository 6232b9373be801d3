import type { Readable } from 'node:stream';
import { E, HookdError, isHookdError } from '../../core/errors.js';

export const EMPTY = Buffer.alloc(0);

/**
 * The request's chunks, in order, with backpressure (the next chunk is read when the loop asks).
 * Leaving the loop early (a limit hit) pauses the stream instead of destroying it, so the ingress
 * can still answer 413 on the same connection. A client that aborts → 400.
 */
export async function* requestChunks(stream: Readable): AsyncGenerator<Buffer> {
  try {
    for await (const chunk of stream.iterator({ destroyOnReturn: false })) {
      yield typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    }
  } catch (err) {
    throw isHookdError(err) ? err : new HookdError(E.INVALID_BODY, 'request', (err as Error).message || 'read failed');
  } finally {
    stream.pause();
  }
}

/** Content-Disposition's filename (filename* of RFC 6266/5987 preferred), without any path. */
export function dispositionFilename(header: string | string[] | undefined): string | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (!value) return undefined;
  let name: string | undefined;
  const extended = /filename\*\s*=\s*([^']*)'[^']*'([^;]+)/i.exec(value);
  if (extended) {
    try {
      name = extended[1]!.toLowerCase() === 'utf-8' || extended[1] === ''
        ? decodeURIComponent(extended[2]!.trim())
        : unescape(extended[2]!.trim());
    } catch {
      name = undefined;
    }
  }
  if (name === undefined) {
    const plain = /filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))/i.exec(value);
    name = plain ? (plain[1]?.replace(/\\(.)/g, '$1') ?? plain[2]) : undefined;
  }
  if (name === undefined) return undefined;
  const base = name.split(/[\\/]/).pop()!.trim();
  return base === '' || base === '.' || base === '..' ? undefined : base;
}
