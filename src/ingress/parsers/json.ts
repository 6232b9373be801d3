import { E, HookdError } from '../../core/errors.js';
import { bufferedParser, decodeText } from './buffered.js';

/** application/json and every structured-syntax `+json` type (RFC 6839). */
export const jsonParser = bufferedParser(
  'json',
  (m) => m.type === 'application/json' || m.type.endsWith('+json'),
  (raw, media) => {
    if (raw.length === 0) throw new HookdError(E.INVALID_BODY, 'JSON', 'the body is empty');
    try {
      const text = decodeText(raw, media);
      // A UTF-8 byte order mark may be ignored (RFC 8259 §8.1); the raw bytes keep it.
      return JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
    } catch (err) {
      throw new HookdError(E.INVALID_BODY, 'JSON', (err as Error).message);
    }
  },
);
