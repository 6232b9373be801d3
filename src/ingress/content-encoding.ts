import type { Readable, Transform } from 'node:stream';
import zlib from 'node:zlib';
import { E, HookdError } from '../core/errors.js';

/** The content codings the ingress decodes (RFC 9110 §8.4.1); zstd needs Node ≥ 22.15, so not yet. */
const DECODERS: Readonly<Record<string, () => Transform>> = {
  gzip: () => zlib.createGunzip(),
  'x-gzip': () => zlib.createGunzip(),
  deflate: () => zlib.createInflate(),
  br: () => zlib.createBrotliDecompress(),
};

const noop = (): void => {};

/** Sent with a 415 for a coding the ingress does not know (RFC 9110 §12.5.3). */
export const ACCEPTED_ENCODINGS = 'gzip, deflate, br';

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
 * is stored as the raw body. A coding hookd does not know is a 415 that lists the ones it does;
 * corrupt data is a 400 that says which coding failed.
 */
export function decodedBody(req: Readable, header: string | undefined): DecodedBody {
  if (header === undefined) return { stream: req, decoded: false, release: noop };
  const codings = header
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== 'identity');
  if (codings.length === 0) return { stream: req, decoded: false, release: noop };
  const unknown = codings.find((c) => DECODERS[c] === undefined);
  if (unknown !== undefined) {
    throw new HookdError(E.UNSUPPORTED_MEDIA_TYPE, `Content-Encoding ${unknown} is not supported (supported: ${ACCEPTED_ENCODINGS})`).withHeaders({
      'accept-encoding': ACCEPTED_ENCODINGS,
    });
  }
  // Codings are listed in the order they were applied: the last one is removed first.
  const stages: Readable[] = [req];
  for (const coding of [...codings].reverse()) {
    const decoder = DECODERS[coding]!();
    // Corrupt data: the parser reading the last stage gets the failure, named by its coding.
    decoder.prependListener('error', (err: Error) => {
      err.message = `${coding}: ${err.message}`;
      const last = stages[stages.length - 1]!;
      if (last !== decoder) last.destroy(err);
    });
    stages[stages.length - 1]!.pipe(decoder);
    stages.push(decoder);
  }
  const last = stages[stages.length - 1]!;
  // The sender gave up mid-body: the parser reading the decoded bytes must hear of it.
  const aborted = (): void => {
    last.destroy(new Error('client aborted the request'));
  };
  req.once('aborted', aborted);
  req.once('error', aborted);
  return {
    stream: last,
    decoded: true,
    release: () => {
      req.off('aborted', aborted);
      req.off('error', aborted);
      req.unpipe();
      for (const stage of stages.slice(1)) {
        stage.unpipe();
        stage.destroy();
      }
    },
  };
}
