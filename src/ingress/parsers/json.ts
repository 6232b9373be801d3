import { E, HookdError } from '../../core/errors.js';
import { bufferedParser, jsonText, parseJsonText } from './buffered.js';

/** application/json and every structured-syntax `+json` type (RFC 6839). */
export const jsonParser = bufferedParser(
  'json',
  (m) => m.type === 'application/json' || m.type.endsWith('+json'),
  (raw, media) => {
    if (raw.length === 0) throw new HookdError(E.INVALID_BODY, 'JSON', 'the body is empty');
    return parseJsonText(jsonText(raw, media, 'JSON'), 'JSON');
  },
);
