import { redactKeysDeep } from '../auth/redact.js';
import { recordJson } from './truncate.js';

/** Keys whose values are credentials wherever they appear (headers, query, body fields; to 32 levels: redactKeysDeep). */
const CREDENTIAL_KEY = /^(authorization|proxy-authorization|cookie|set-cookie)$|api[-_]?key|token|secret|password|passwd|credential|signature|hmac/i;

/** What a log step writes of its input at most: larger inputs are logged as a truncated marker. */
export const LOG_INPUT_LIMIT = 16 * 1024;

/**
 * A step input as it may go to the process log: values under credential-named keys replaced at any
 * depth (a sender's Authorization or `?token=` reach a flow's input whatever auth the flow has;
 * logs are kept and shipped where stored messages are not), and at most LOG_INPUT_LIMIT bytes of
 * JSON (larger: the `$truncated` marker of execution records).
 */
export function loggableInput(input: unknown): unknown {
  const safe = redactKeysDeep(input, (k) => CREDENTIAL_KEY.test(k));
  const json = recordJson(safe, LOG_INPUT_LIMIT);
  return json !== undefined && json.startsWith('{"$truncated":true') ? (JSON.parse(json) as unknown) : safe;
}

