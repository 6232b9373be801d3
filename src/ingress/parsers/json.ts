import { bufferedParser, jsonText, parseJsonText } from './buffered.js';

/** application/json and every structured-syntax `+json` type (RFC 6839). */
export const jsonParser = bufferedParser(
  'json',
  (m) => m.type === 'application/json' || m.type.endsWith('+json'),
  // No bytes never gets here (bufferedParser: no body).
  (raw, media) => parseJsonText(jsonText(raw, media, 'JSON'), 'JSON'),
);
