import { uuidv7 } from '../core/ids.js';

const SANE = /^[A-Za-z0-9._-]{1,128}$/;

/** The sender's x-request-id when sane (≤ 128 chars of [A-Za-z0-9._-]), else a new UUIDv7. */
export function requestIdFrom(header: string | string[] | undefined): string {
  return typeof header === 'string' && SANE.test(header) ? header : uuidv7();
}
