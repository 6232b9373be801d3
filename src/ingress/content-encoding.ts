import { PassThrough, type Readable, type Transform } from 'node:stream';
import zlib from 'node:zlib';
import { E, HookdError } from '../core/errors.js';

/** The content codings the ingress decodes (RFC 9110 §8.4.1); zstd needs Node ≥ 22.15, so not yet. */
const DECODERS: Readonly<Record<string, () => Transform>> = {
  gzip: () => zlib.createGunzip(),
  'x-gzip': () => zlib.createGunzip(),
  deflate: () => zlib.createInflate(),
  br: () => zlib.createBrotliDecompress(),
};

/** Sent with a 415 for a coding the ingress does not know (RFC 9110 §12.5.3). */
export const ACCEPTED_ENCODINGS = 'gzip, deflate, br';

/**
 * Codings one body may list. Senders apply one; each decoder costs memory and time before a byte
 * is read, so a header listing thousands (it fits in the header limit) must not make thousands.
 */
export const MAX_CODINGS = 2;

const noop = (): void => {};

export interface DecodedBody {
  /** The body's bytes as the sender meant them: the request itself when it has no content coding. */
  stream: Readable;
  /** Whether a content coding was removed (the stored headers then no longer describe these bytes). */
  decoded: boolean;
  /** Detach and drop the decoders (after a refusal: the request's own bytes are then read and thrown away). */
  release(): void;
}

/**
 * A request body with its `Content-Encoding` removed, as a stream the parsers read like the request
 * itself. Limits count decoded bytes, so a small compressed body that inflates past
 * PAYLOAD_SIZE_LIMIT is a 413 as soon as the limit is passed (a decompression bomb costs the
 * limit's worth of work, no more). Signatures are then checked over the decoded bytes, which is
 * what the sender serialised and signed before its HTTP client compressed it; they are also what
 * is stored as the raw body. A coding hookd does not know (or more than MAX_CODINGS) is a 415 that
 * lists the ones it does; corrupt data, a truncated stream or bytes after the end of the
 * compressed stream (deflate and br would drop them silently) are a 400 that names the coding.
 * The decoded stream ends only once the request has ended too.
 */
export function decodedBody(req: Readable, header: string | undefined): DecodedBody {
  if (header === undefined) return { stream: req, decoded: false, release: noop };
  const codings = header
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== 'identity');
  if (codings.length === 0) return { stream: req, decoded: false, release: noop };
  const unknown = codings.find((c) => DECODERS[c] === undefined);
  if (unknown !== undefined || codings.length > MAX_CODINGS) {
    const what = unknown !== undefined ? `Content-Encoding ${unknown} is not supported` : `at most ${MAX_CODINGS} content codings are supported`;
    throw new HookdError(E.UNSUPPORTED_MEDIA_TYPE, `${what} (supported: ${ACCEPTED_ENCODINGS})`).withHeaders({ 'accept-encoding': ACCEPTED_ENCODINGS });
  }

  const out = new PassThrough();
  let failed = false;
  const fail = (message: string): void => {
    if (failed) return;
    failed = true;
    out.destroy(new Error(message));
  };
  // Codings are listed in the order they were applied: the last one is removed first.
  const stages: Readable[] = [req];
  const detach: Array<() => void> = [];
  for (const coding of [...codings].reverse()) {
    const source = stages[stages.length - 1]!;
    const decoder = DECODERS[coding]!();
    decoder.on('error', (err: Error) => fail(`${coding}: ${err.message}`));
    // deflate and br stop at their stream's end and drop what follows; zlib counts the input it
    // consumed, so more fed than consumed is data after the end. (gunzip reads on — another
    // member — and refuses junk itself, taking zero bytes after the last member as padding, as
    // node always has: left as it is.)
    if (coding === 'deflate' || coding === 'br') {
      let fed = 0;
      let ended = false;
      const onData = (chunk: Buffer): void => {
        fed += chunk.length;
        if (ended) fail(`${coding}: data after the end of the compressed stream`);
      };
      source.on('data', onData);
      detach.push(() => source.off('data', onData));
      decoder.on('end', () => {
        ended = true;
        if ((decoder as Transform & { bytesWritten: number }).bytesWritten < fed) fail(`${coding}: data after the end of the compressed stream`);
      });
    }
    source.pipe(decoder);
    stages.push(decoder);
  }
  const last = stages[stages.length - 1]!;
  last.pipe(out, { end: false });
  // Ends when the request ended and every decoder reached its stream's end with nothing after it.
  let lastEnded = false;
  let reqEnded = false;
  const maybeEnd = (): void => {
    if (lastEnded && reqEnded && !failed) out.end();
  };
  last.once('end', () => {
    lastEnded = true;
    maybeEnd();
  });
  const onReqEnd = (): void => {
    reqEnded = true;
    maybeEnd();
  };
  // The sender gave up mid-body: the parser reading the decoded bytes must hear of it.
  const aborted = (): void => fail('client aborted the request');
  req.once('end', onReqEnd);
  req.once('aborted', aborted);
  req.once('error', aborted);
  return {
    stream: out,
    decoded: true,
    release: () => {
      failed = true;
      req.off('end', onReqEnd);
      req.off('aborted', aborted);
      req.off('error', aborted);
      for (const d of detach) d();
      for (const stage of stages) stage.unpipe();
      for (const stage of stages.slice(1)) stage.destroy();
      out.destroy();
    },
  };
}
