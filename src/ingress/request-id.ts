import { ID_RE } from '../core/flow.js';
import { uuidv7 } from '../core/ids.js';

/** The sender's x-request-id when sane (≤ 128 chars of [A-Za-z0-9._-]), else a new UUIDv7. */
export function requestIdFrom(header: string | string[] | undefined): string {
  return typeof header === 'string' && ID_RE.test(header) ? header : uuidv7();
}
