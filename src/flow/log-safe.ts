import { REDACTED } from '../auth/redact.js';
import { recordJson } from './truncate.js';

/** Keys whose values are credentials wherever they appear (headers, query, body fields). */
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
  const safe = redactDeep(input, 0);
  const json = recordJson(safe, LOG_INPUT_LIMIT);
  return json !== undefined && json.startsWith('{"$truncated":true') ? (JSON.parse(json) as unknown) : safe;
}

function redactDeep(value: unknown, depth: number): unknown {
  if (value === null || typeof value !== 'object' || depth > 32) return value;
  if (Array.isArray(value)) return value.map((v) => redactDeep(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) out[k] = CREDENTIAL_KEY.test(k) ? REDACTED : redactDeep(v, depth + 1);
  return out;
}
