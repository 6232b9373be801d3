import type { Flow } from '../core/flow.js';

/** The header of Asana's handshake: the webhook's signing secret, to be echoed back. */
export const ASANA_SECRET_HEADER = 'x-hook-secret';
/**
 * How long after a flow was last saved it takes an Asana handshake, while it holds no secret: the
 * secret is trusted on first use, so the window in which anyone who knows the URL could hand over
 * a secret of theirs is the few minutes in which the webhook is being created.
 */
export const ASANA_HANDSHAKE_WINDOW_MS = 10 * 60_000;
/** Why a handshake after the window is refused (the window in the words the answer uses). */
export const ASANA_WINDOW_CLOSED = `Asana handshakes are taken within ${ASANA_HANDSHAKE_WINDOW_MS / 60_000} minutes of saving the flow: save it again, then create the webhook`;

/**
 * A call that would be an Asana event to a flow holding no secret yet (a POST without the
 * handshake header): refused here, unless another instance learned the secret meanwhile.
 */
export function awaitsAsanaSecret(flow: Flow, method: string, headers: Record<string, string | string[] | undefined>): boolean {
  const auth = flow.trigger.auth;
  return auth?.type === 'asana' && auth.secrets === undefined && method === 'POST' && headers[ASANA_SECRET_HEADER] === undefined;
}

/** Printable ASCII without spaces, as Asana's (hex) secrets are. */
const SECRET = /^[\x21-\x7e]{8,512}$/;

/**
 * Asana's handshake: a POST with `X-Hook-Secret` to a flow whose credential is `asana`. `{secret}`:
 * learn it (then echo it); `'held'`: the flow holds a secret already (a new handshake needs the
 * flow saved without it); `'closed'`: saved longer ago than the window; `'invalid'`: not one
 * usable value. Undefined: not an Asana handshake.
 */
export function asanaHandshake(
  flow: Flow,
  method: string,
  request: { readonly headersDistinct: Record<string, string[] | undefined> },
  now: number,
): { secret: string } | 'held' | 'closed' | 'invalid' | undefined {
  const auth = flow.trigger.auth;
  if (auth?.type !== 'asana' || method !== 'POST') return undefined;
  const values = request.headersDistinct[ASANA_SECRET_HEADER];
  if (values === undefined) return undefined;
  const secret = values.length === 1 ? values[0]! : '';
  if (!SECRET.test(secret)) return 'invalid';
  if (auth.secrets !== undefined) return 'held';
  if (now - Date.parse(flow.updatedAt) > ASANA_HANDSHAKE_WINDOW_MS) return 'closed';
  return { secret };
}
