import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/**
 * HTTP/1.1 answers the requests of one connection in the order they came. Node's server hands a
 * pipelined request (written behind another before its answer) to its route at once, and keeps
 * its answer until the ones before it are sent. Two things follow, both handled here:
 * - An answer that closes the connection (`Connection: close`: a 501, a refused `Expect:
 *   100-continue`, a 413 announced too large) drops the answers queued behind it, but their
 *   requests had run: a webhook stored, its sender never answered (it sends it again: twice).
 *   So a request waits for the answer before it (afterEarlierAnswers), and is not run at all when
 *   that answer closed the connection.
 * - A malformed request behind well-formed ones (headers too large, garbage, bytes after a
 *   `Connection: close` request) must not cut off the answers of those (the client-error handler
 *   waits for them: answeredBefore).
 */

/** The answers of the last two requests on each connection (only the last can be still arriving). */
const lastAnswers = new WeakMap<Socket, { last: ServerResponse; before: ServerResponse | undefined }>();
/** For an answer after the first on its connection: the one before it, until its request may run. */
const previous = new WeakMap<ServerResponse, ServerResponse>();

/** Record each request's place on its connection (before any route sees it). */
export function trackConnectionOrder(server: Server): void {
  server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
    const seen = lastAnswers.get(req.socket);
    if (seen === undefined) return void lastAnswers.set(req.socket, { last: res, before: undefined });
    previous.set(res, seen.last);
    seen.before = seen.last;
    seen.last = res;
  });
}

/** Resolves once this answer is sent, or can no longer be (it, or its connection, closed). */
function sent(res: ServerResponse, socket: Socket): Promise<void> {
  if (res.writableFinished || res.destroyed || socket.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off('finish', done);
      res.off('close', done);
      socket.off('close', done);
      resolve();
    };
    res.on('finish', done);
    res.on('close', done);
    // An answer still queued behind another is not told when the connection goes.
    socket.on('close', done);
  });
}

/**
 * Resolves once every answer before this request's on its connection is sent: true when this
 * request may run, false when the connection is closing (an earlier answer closed it, or the client
 * went away) and no answer to it could ever be sent. Immediate for a request not pipelined.
 */
export function afterEarlierAnswers(res: ServerResponse): boolean | Promise<boolean> {
  const before = previous.get(res);
  if (before === undefined) return true;
  previous.delete(res);
  // Not pipelined, or the answer before is out already: no promise, no tick. (It may have closed
  // the connection: Node can send it between parsing one request and the next of a single read.)
  if (before.writableFinished) return open(res);
  // Answers go out in order: the one just before is sent last.
  return sent(before, res.req.socket).then(() => open(res));
}

/** Whether an answer to this request can still go out on its connection. */
function open(res: ServerResponse): boolean {
  const socket = res.req.socket;
  return !(socket.destroyed || socket.writableEnded);
}

/**
 * A malformed request (or a timeout) on this connection: resolves once the answers of the requests
 * before it that arrived whole are sent (at most `maxMs`), so that the error answer comes after
 * them instead of cutting them off. Immediate when there are none.
 */
export async function answeredBefore(socket: Socket, maxMs: number): Promise<void> {
  // The latest request that arrived whole: a request still arriving is the one that failed.
  const seen = lastAnswers.get(socket);
  const res = seen === undefined ? undefined : seen.last.req.complete ? seen.last : seen.before;
  if (res === undefined || res.writableFinished || res.destroyed) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([sent(res, socket), new Promise<void>((resolve) => (timer = setTimeout(resolve, maxMs)))]);
  clearTimeout(timer);
}
