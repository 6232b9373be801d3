import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FsAttachmentStore } from '../../src/attachments/fs-store.js';
import { isHookdError } from '../../src/core/errors.js';
import type { ParsedPayload } from '../../src/ingress/parsers/contract.js';
import { parsePayload } from '../../src/ingress/parsers/index.js';
import { parseMediaType } from '../../src/ingress/parsers/media-type.js';

/**
 * A node:http server that feeds each request stream to the parser seam (parsePayload), the way the
 * ingress does, and answers with what came out: 200 + the parsed payload, or the error's status.
 * onChunk is hashed (sha256 + length) so tests can check it saw exactly the bytes sent.
 */
export interface ParserServer {
  url: string;
  /** DATA_DIR/attachments of this server. */
  dir: string;
  store: FsAttachmentStore;
  /** The last request's outcome, server side. */
  last(): Outcome | undefined;
  /** Forget the last outcome. */
  reset(): void;
  close(): Promise<void>;
}

export type Outcome =
  | { ok: true; payload: ParsedPayload; chunks: { sha256: string; size: number }; ms: number }
  | { ok: false; status: number; code: string; message: string; ms: number };

export interface ServerOptions {
  payloadSizeLimit?: number;
  attachmentSizeLimit?: number;
  /** false: no attachment store in the context. */
  store?: boolean;
}

export async function startParserServer(opts: ServerOptions = {}): Promise<ParserServer> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'hookd-parsers-'));
  const store = new FsAttachmentStore(path.join(dataDir, 'attachments'));
  let last: Outcome | undefined;
  const server = http.createServer(async (req, res) => {
    const started = performance.now();
    const hash = createHash('sha256');
    let size = 0;
    const contentType = req.headers['content-type'] ?? 'application/octet-stream';
    try {
      const payload = await parsePayload({
        stream: req,
        contentType,
        media: parseMediaType(contentType),
        payloadSizeLimit: opts.payloadSizeLimit ?? 10 * 1024 * 1024,
        headers: req.headers,
        ...(opts.store === false ? {} : { attachments: store }),
        ...(opts.attachmentSizeLimit !== undefined ? { attachmentSizeLimit: opts.attachmentSizeLimit } : {}),
        onChunk: (chunk) => {
          hash.update(chunk);
          size += chunk.length;
        },
      });
      last = { ok: true, payload, chunks: { sha256: hash.digest('hex'), size }, ms: performance.now() - started };
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ...payload, rawBody: payload.rawBody.toString('base64') }));
    } catch (err) {
      const status = isHookdError(err) ? err.statusCode : 500;
      const code = isHookdError(err) ? err.code : 'INTERNAL';
      const message = (err as Error).message;
      last = { ok: false, status, code, message, ms: performance.now() - started };
      res.writeHead(status, { 'content-type': 'application/json', connection: 'close' });
      res.end(JSON.stringify({ code, message }));
      // Let the client finish sending so it reads the answer rather than a reset.
      req.resume();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    dir: store.dir,
    store,
    last: () => last,
    reset: () => {
      last = undefined;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface RawResponse {
  status: number;
  body: any;
}

/**
 * POST with node:http: `body` as one buffer or streamed from an (async) iterable of chunks, written
 * with backpressure. Resolves with the answer (or the connection error when there was none).
 */
export function post(
  url: string,
  headers: Record<string, string>,
  body: Buffer | string | Iterable<Buffer> | AsyncIterable<Buffer>,
  opts: { abortAfterBytes?: number } = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => {
        const text = Buffer.concat(parts).toString('utf8');
        resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined });
      });
    });
    req.on('error', reject);
    if (typeof body === 'string' || Buffer.isBuffer(body)) {
      req.end(body);
      return;
    }
    void (async () => {
      let sent = 0;
      try {
        for await (const chunk of body as AsyncIterable<Buffer>) {
          if (opts.abortAfterBytes !== undefined && sent >= opts.abortAfterBytes) {
            req.destroy();
            resolve({ status: 0, body: 'aborted by the client' });
            return;
          }
          sent += chunk.length;
          if (!req.write(chunk)) await new Promise((r) => req.once('drain', r));
          if (req.destroyed) return;
        }
        req.end();
      } catch (err) {
        reject(err);
      }
    })();
  });
}

/** Every file under `dir`, recursively (folders are not listed). */
export function filesUnder(dir: string): string[] {
  let out: string[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of names) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out = out.concat(filesUnder(p));
    else out.push(p);
  }
  return out;
}

export const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** The exact bytes and Content-Type undici sends for a FormData. */
export async function encodeForm(fd: FormData): Promise<{ body: Buffer; contentType: string }> {
  const r = new Response(fd);
  return { body: Buffer.from(await r.arrayBuffer()), contentType: r.headers.get('content-type')! };
}

/** Read a whole stream. */
export async function readAll(stream: AsyncIterable<Buffer | string>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(typeof c === 'string' ? Buffer.from(c) : c);
  return Buffer.concat(parts);
}

/** `total` bytes in `chunkSize` chunks of a repeated pseudo-random pattern, generated on the fly. */
export function* generated(total: number, chunkSize = 64 * 1024): Generator<Buffer> {
  const pattern = Buffer.alloc(chunkSize);
  for (let i = 0; i < chunkSize; i++) pattern[i] = (i * 7919 + 13) & 0xff;
  for (let sent = 0; sent < total; sent += chunkSize) {
    yield sent + chunkSize <= total ? pattern : pattern.subarray(0, total - sent);
  }
}
