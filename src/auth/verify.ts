import type { WebhookAuth } from './schema.js';
import type { AuthHeaders, AuthRequest, AuthResult } from './result.js';
import type { BodyVerifier, FinishRequest } from './schemes/scheme.js';
import { noneVerifier } from './schemes/none.js';
import { basicVerifier } from './schemes/basic.js';
import { apiKeyVerifier } from './schemes/api-key.js';
import { tokenVerifier } from './schemes/token.js';
import { hmacVerifier } from './schemes/hmac.js';
import { githubVerifier } from './schemes/github.js';
import { paddleVerifier } from './schemes/paddle.js';
import { stripeVerifier } from './schemes/stripe.js';
import { standardWebhooksVerifier } from './schemes/standard-webhooks.js';
import { shopifyVerifier } from './schemes/shopify.js';
import { slackVerifier } from './schemes/slack.js';
import { zoomVerifier } from './schemes/zoom.js';
import { twilioVerifier } from './schemes/twilio.js';
import { hubspotVerifier } from './schemes/hubspot.js';
import { asanaVerifier } from './schemes/asana.js';

export type { AuthRequest, AuthResult, AuthFailure, AuthFailureReason } from './result.js';
export type { BodyVerifier, FinishRequest } from './schemes/scheme.js';
export { redactHeaders, redactQuery, redactBody, redactRawBody, credentialLocations, type CredentialLocations } from './redact.js';

/**
 * What schemes that sign the request line see of it (Twilio, HubSpot): the method, and the URL as
 * the sender called it (AuthRequest.url).
 */
export interface SignedTarget {
  method: string;
  url?: string;
}

/**
 * Starts checking one request from its (lower-cased) headers, before the body is read. Feed the raw
 * body bytes, exactly as received, to update() in any chunking; finish() gives the verdict. For
 * signature schemes the header-derived prefix (`${t}.`, `${id}.${ts}.`, `v0:${ts}:`) is hashed first,
 * so the body is never buffered for verification.
 */
export function createBodyVerifier(auth: WebhookAuth | undefined, headers: AuthHeaders, target?: SignedTarget): BodyVerifier {
  if (auth === undefined) return noneVerifier();
  switch (auth.type) {
    case 'none':
      return noneVerifier();
    case 'basic':
      return basicVerifier(auth, headers);
    case 'apiKey':
      return apiKeyVerifier(auth, headers);
    case 'token':
      return tokenVerifier(auth, headers);
    case 'hmac':
      return hmacVerifier(auth, headers);
    case 'github':
      return githubVerifier(auth, headers);
    case 'stripe':
      return stripeVerifier(auth, headers);
    case 'standard-webhooks':
      return standardWebhooksVerifier(auth, headers);
    case 'shopify':
      return shopifyVerifier(auth, headers);
    case 'slack':
      return slackVerifier(auth, headers);
    case 'zoom':
      return zoomVerifier(auth, headers);
    case 'paddle':
      return paddleVerifier(auth, headers);
    case 'twilio':
      return twilioVerifier(auth, headers, target?.url);
    case 'hubspot':
      return hubspotVerifier(auth, headers, target);
    case 'asana':
      return asanaVerifier(auth, headers);
    default: {
      const unknown: never = auth;
      throw new Error(`Unknown auth type ${(unknown as { type: string }).type}`);
    }
  }
}

/** Verifies a request whose body is already in memory. */
export function verifyRequest(auth: WebhookAuth | undefined, req: AuthRequest): AuthResult {
  const v = createBodyVerifier(auth, req.headers, { method: req.method, ...(req.url !== undefined ? { url: req.url } : {}) });
  if (v.early) return v.early;
  if (v.needsBody) v.update(req.rawBody);
  const { rawBody: _raw, ...rest } = req;
  return v.finish(rest satisfies FinishRequest);
}

/**
 * For HEAD (and other probes that carry no body): should the answer reveal that this flow exists?
 * True for unprotected flows and for requests whose credentials verify (signatures over the empty
 * body); false means "answer exactly as for an unknown flow" — 404, same body, no WWW-Authenticate —
 * so an unauthenticated caller cannot tell a protected flow from a missing one.
 */
export function probeMayReveal(auth: WebhookAuth | undefined, req: AuthRequest): boolean {
  if (auth === undefined || auth.type === 'none') return true;
  return verifyRequest(auth, req).ok;
}
