import { bufferedParser, decodeText } from './buffered.js';

/** text/* → a string. */
export const textParser = bufferedParser('text', (m) => m.type.startsWith('text/'), decodeText);
