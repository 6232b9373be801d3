import { isCredentialHeader } from '../auth/credential-headers.js';
import { maskFlowSecrets } from '../auth/flow-secrets.js';
import { markedSignatureHeaders, REDACTED, redactKeysDeep } from '../auth/redact.js';
import type { Execution } from '../core/execution.js';
import type { Flow, StepDef } from '../core/flow.js';
import { SIGNATURE_HEADER_NAME } from '../core/message.js';
import { maskUrlCredentials } from '../core/mask-url.js';

const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());

/**
 * A flow for API answers: secrets and http steps' credential headers masked (except `reveal`: just
 * created, shown this once). For a read token (a component outside hookd) those headers are
 * `[redacted]`, hints included, and so are URL query parameters whose names say they carry a
 * credential (an admin edits the URL, so admins see them: credentials belong in headers).
 */
export function flowView(flow: Flow, publicUrl: string, reveal?: ReadonlySet<string>, forReader = false) {
  const shown = maskFlowSecrets(flow, reveal);
  const steps = forReader ? shown.steps.map(redactStepHeaders) : shown.steps;
  // Meta's verify token answers its handshake: the admin's, like the flow's other credentials.
  const handshake = shown.trigger.handshake;
  const trigger = forReader && handshake?.type === 'meta' ? { ...shown.trigger, handshake: { ...handshake, verifyToken: REDACTED } } : shown.trigger;
  return { ...shown, trigger, steps, webhookUrl: `${publicUrl}/hook/${encodeURIComponent(flow.id)}` };
}

function redactStepHeaders(step: StepDef): StepDef {
  let out = step;
  if ('headers' in step && step.headers !== undefined) {
    const headers = Object.fromEntries(Object.entries(step.headers).map(([k, v]) => [k, isCredentialHeader(k) ? REDACTED : v]));
    out = { ...out, headers } as StepDef;
  }
  if ('url' in step && typeof step.url === 'string') out = { ...out, url: redactUrlQuery(step.url) } as StepDef;
  return out;
}

/** `?api_key=abc&page=2` → `?api_key=[redacted]&page=2`; anything unparsable is left as it is. */
function redactUrlQuery(url: string): string {
  return maskUrlCredentials(url, REDACTED) ?? url;
}

/** Header names that carry a sender's signature (the presets', and names hmac configs use). */
const SIGNATURE_HEADER = /signature|hmac/i;

/** A signature header, or a flow's own (an hmac config may name it anything; lower case). */
function isSignatureName(name: string, extra: readonly string[]): boolean {
  // The stored marker only names the header: readers may know which one it was.
  if (name === SIGNATURE_HEADER_NAME) return false;
  return SIGNATURE_HEADER.test(name) || (extra.length > 0 && extra.includes(name.toLowerCase()));
}

/** The flow's current own signature header, and the one stored with the message (SIGNATURE_HEADER_NAME). */
function ownNames(extra: string | undefined, stored: unknown): string[] {
  const names = extra === undefined ? [] : [extra];
  if (typeof stored === 'string') names.push(stored.toLowerCase());
  return names;
}

/**
 * Headers as a read token sees them: signature headers redacted (and `extra`, a flow's own
 * signature header name, lower case). With the raw bytes and their signature, whoever can read
 * requests could send them again, as the sender (schemes without a timestamp verify forever),
 * with a path, query and method of their choosing.
 */
export function readerHeaders<H extends Record<string, unknown>>(headers: H, extra?: string): H {
  const names = ownNames(extra, headers[SIGNATURE_HEADER_NAME]);
  if (!Object.keys(headers).some((k) => isSignatureName(k, names))) return headers;
  return Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, isSignatureName(k, names) ? REDACTED : v])) as H;
}

/**
 * Every JSON string token of a (possibly cut) JSON text, and when it is a key with a string value,
 * that value: each token is consumed whether or not a colon follows, so the scan is linear and a
 * failed match never restarts inside a string. A string cut at the end of the text (after a
 * backslash too) still counts.
 */
const STRING_TOKEN = /"((?:[^"\\]|\\.)*)(?:"|\\?$)(?:(\s*:\s*)"(?:[^"\\]|\\.)*(?:"|\\?$))?/g;

/**
 * Recorded step data (JSON text, or a truncation marker quoting the start of one) as a read token
 * sees it: values under signature-named keys redacted — a log or filter step passes the message,
 * headers and all, on as its output. Parsed and rewritten; a marker's preview (cut JSON) is
 * scanned token by token.
 */
export function readerJson(text: string | undefined, extra?: string): string | undefined {
  if (text === undefined) return text;
  // Names stored with messages (SIGNATURE_HEADER_NAME) are found in the text, escaped in a preview or not.
  const names = [...ownNames(extra, undefined), ...markedSignatureHeaders(text.includes('\\"') ? text.replaceAll('\\"', '"') : text)];
  if (!(SIGNATURE_HEADER.test(text) || names.some((n) => text.toLowerCase().includes(n)))) return text;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return JSON.stringify(REDACTED); // fail closed
  }
  if (value !== null && typeof value === 'object' && (value as { $truncated?: unknown }).$truncated === true) {
    const marker = value as { preview?: unknown };
    if (typeof marker.preview === 'string') {
      marker.preview = marker.preview.replace(STRING_TOKEN, (whole, key: string, colon: string | undefined) =>
        colon !== undefined && isSignatureName(key, names) ? `"${key}"${colon}"${REDACTED}"` : whole,
      );
    }
    return JSON.stringify(marker);
  }
  // Parsed: the marker is honoured in the object that holds it, wherever a step put it (redactKeysDeep).
  const own = ownNames(extra, undefined);
  return JSON.stringify(redactKeysDeep(value, (k) => isSignatureName(k, own)));
}

/** An execution as a read token sees it (readerJson on every step's input and output). */
export function readerExecution(e: Execution, extra?: string): Execution {
  return {
    ...e,
    steps: e.steps.map((s) => {
      const out = { ...s };
      const input = readerJson(s.input, extra);
      const output = readerJson(s.output, extra);
      if (input !== undefined) out.input = input;
      if (output !== undefined) out.output = output;
      return out;
    }),
  };
}

export function executionView(e: Execution) {
  return {
    id: e.id,
    requestId: e.requestId,
    flowId: e.flowId,
    status: e.status,
    attempts: e.attempts,
    createdAt: iso(e.createdAt),
    updatedAt: iso(e.updatedAt),
    finishedAt: iso(e.finishedAt),
    // Measured to the µs (performance.now); more digits are noise.
    queueDelayMs: e.queueDelayMs === undefined ? undefined : Math.round(e.queueDelayMs * 1000) / 1000,
    error: e.error,
    steps: e.steps.map((s) => ({
      ...s,
      startedAt: iso(s.startedAt),
      finishedAt: iso(s.finishedAt),
      durationMs: Math.round((s.finishedAt - s.startedAt) * 1000) / 1000,
    })),
  };
}
