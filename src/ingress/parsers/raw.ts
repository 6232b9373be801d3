import { bufferedParser } from './buffered.js';

/**
 * Any other media type: never an error. The body stays as raw bytes (body null) until the
 * attachment store takes such bodies over.
 */
export const rawParser = bufferedParser('raw', () => true, () => null);
