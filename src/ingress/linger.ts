import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';

/** Sockets of requests answered before their body ended, while that body is read and dropped. */
const answered = new WeakSet<Socket>();

/** Whether this socket's request was refused mid-body and its rest is being dropped (http/client-errors.ts). */
export function lingering(socket: Socket): boolean {
  return answered.has(socket);
}

/** After a refusal, at most this much more of the body is read (and thrown away)… */
export const LINGER_BYTES = 16 * 1024 * 1024;
/** …for at most this long; then the connection is closed. */
export const LINGER_MS = 5_000;

/**
 * A request refused before its body ended (413, a malformed part): read the rest of the body and
 * throw it away, so that the sender, still writing, gets to read the answer. Closing at once resets
 * the connection under a sender that is still writing, and most clients then report a network
 * error (which they retry) instead of the 413 (which they do not). Nothing is kept: bytes are
 * counted and dropped; past LINGER_BYTES more, or after LINGER_MS, the connection is closed after
 * all. Returns `connection: close` for the answer when the body announces more than that (it would
 * be closed anyway), else nothing: the connection stays usable once the body has ended.
 */
export function lingerAfterRefusal(req: IncomingMessage): Record<string, string> | undefined {
  if (req.complete) return undefined;
  const announced = Number(req.headers['content-length']);
  if (Number.isFinite(announced) && announced > LINGER_BYTES) return { connection: 'close' };
  let discarded = 0;
  const socket = req.socket;
  if (socket) answered.add(socket);
  const close = (): void => {
    cleanup();
    req.socket?.destroy();
  };
  const timer = setTimeout(close, LINGER_MS);
  timer.unref();
  const onData = (chunk: Buffer): void => {
    discarded += chunk.length;
    if (discarded > LINGER_BYTES) close();
  };
  const cleanup = (): void => {
    if (socket) answered.delete(socket);
    clearTimeout(timer);
    req.off('data', onData);
    req.off('end', cleanup);
    req.off('close', cleanup);
  };
  req.on('data', onData);
  req.once('end', cleanup);
  req.once('close', cleanup);
  req.resume();
  return undefined;
}
