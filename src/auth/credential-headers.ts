/**
 * Which headers of the calls hookd makes (http steps) carry a credential: their values are sealed
 * at rest, masked in API answers and hidden from read tokens (step-credentials.ts, api/views.ts).
 *
 * The rule, on the name alone and in any case: `cookie`, and any name holding `auth`
 * (Authorization, Proxy-Authorization, X-Auth-Token), `token`, `secret`, `key` (X-Api-Key),
 * `password`, `passwd`, `signature` or `session`. Wide on purpose: a header taken for a credential
 * that is not one only shows masked, while one missed would sit in plain in the database.
 *
 * Not the rule for keys inside messages (flow/log-safe.ts): there `key`, `auth` or `session` would
 * hide ordinary data fields (`author`, `monkey`, `sessionCount`), so that list is narrower.
 */
const CREDENTIAL_HEADER = /^cookie$|auth|token|secret|key|passw(?:or)?d|signature|session/i;

export function isCredentialHeader(name: string): boolean {
  return CREDENTIAL_HEADER.test(name);
}
