/**
 * Credential and sender-policy configuration of a webhook trigger (auth, IP allowlist, rate limit,
 * CORS): domain types, so they live in core; the verifiers are in src/auth/.
 */
import Type, { type Static } from 'typebox';

/**
 * Schemas for the inbound security of a webhook trigger: `auth` (who may call), `ipAllowlist`,
 * `rateLimit` and `cors`. `authTriggerFields` is meant to be spread into the flow's WebhookTrigger.
 */

/** A header name: an RFC 9110 token, at most 128 characters. */
export const HEADER_NAME_PATTERN = "^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$";
const HeaderName = Type.String({ pattern: HEADER_NAME_PATTERN });
const QueryName = Type.String({ minLength: 1, maxLength: 128 });

/**
 * One secret of a rotation set. A bare string is accepted for hand-written configs; the object form
 * carries `createdAt` so the API can show "whsec_…a1b2, added 2024-05-01" next to a masked hint.
 * `value` is the plain secret in memory; at rest the store may keep it sealed (see secret-box.ts).
 */
function secretEntry(pattern?: string) {
  const value = Type.String({ minLength: 1, maxLength: 1024, ...(pattern ? { pattern } : {}) });
  return Type.Union([
    value,
    Type.Object(
      { value, createdAt: Type.Optional(Type.String({ maxLength: 64 })) },
      { additionalProperties: false },
    ),
  ]);
}

/** 1 secret, or 2 while rotating (old + new): both verify until one is removed. */
function secretList(pattern?: string) {
  return Type.Array(secretEntry(pattern), { minItems: 1, maxItems: 2 });
}

export const SecretEntry = secretEntry();
const Secrets = secretList();
/** Standard Webhooks secrets are base64 keys, optionally prefixed `whsec_`. */
const StandardWebhooksSecrets = secretList('^(whsec_)?[A-Za-z0-9+/]+={0,2}$');
const ToleranceSeconds = Type.Optional(Type.Integer({ minimum: 1, maximum: 3600 }));
/**
 * For signature schemes whose sender signs no event id: the verified signature stands for the
 * event, so a request whose signature the flow already stored (the sender's retry of the same
 * bytes, or a captured request sent again) is stored and run once. Off by default: a sender that
 * sends identical bytes as distinct events would have all but the first dropped.
 */
const DedupeBySignature = Type.Optional(Type.Boolean());

export const NoneAuth = Type.Object({ type: Type.Literal('none') }, { additionalProperties: false });

/** HTTP Basic; `secrets` are the accepted passwords. */
export const BasicAuth = Type.Object(
  {
    type: Type.Literal('basic'),
    username: Type.String({ minLength: 1, maxLength: 256, pattern: '^[^:]*$' }),
    secrets: Secrets,
  },
  { additionalProperties: false },
);

/** A key in a header (default `x-api-key`) or, when `query` is set, in that query parameter. */
export const ApiKeyAuth = Type.Object(
  {
    type: Type.Literal('apiKey'),
    header: Type.Optional(HeaderName),
    query: Type.Optional(QueryName),
    secrets: Secrets,
  },
  { additionalProperties: false },
);

/** A shared token: `?token=`/`?secret=`, `x-webhook-token`, `Authorization: Bearer`, or body field `token`. */
export const TokenAuth = Type.Object(
  { type: Type.Literal('token'), secrets: Secrets },
  { additionalProperties: false },
);

export const HmacAlgorithm = Type.Union([Type.Literal('sha1'), Type.Literal('sha256'), Type.Literal('sha512')]);
export const HmacEncoding = Type.Union([Type.Literal('hex'), Type.Literal('base64')]);

/** Generic HMAC over the raw body bytes; the header holds `${prefix}${encoded digest}`. */
export const HmacAuth = Type.Object(
  {
    type: Type.Literal('hmac'),
    /** Default sha256. */
    algorithm: Type.Optional(HmacAlgorithm),
    /** Default hex. */
    encoding: Type.Optional(HmacEncoding),
    header: HeaderName,
    /** e.g. `sha256=`; compared case-insensitively. */
    prefix: Type.Optional(Type.String({ maxLength: 64 })),
    secrets: Secrets,
    dedupeBySignature: DedupeBySignature,
  },
  { additionalProperties: false },
);

/** X-Hub-Signature-256: `sha256=` + hex HMAC-SHA256 of the body. */
export const GithubAuth = Type.Object(
  { type: Type.Literal('github'), secrets: Secrets, dedupeBySignature: DedupeBySignature },
  { additionalProperties: false },
);

/** Stripe-Signature: `t=…,v1=…[,v1=…]` over `${t}.${body}`; default tolerance 300 s. */
export const StripeAuth = Type.Object(
  { type: Type.Literal('stripe'), secrets: Secrets, toleranceSeconds: ToleranceSeconds },
  { additionalProperties: false },
);

/** webhook-id / webhook-timestamp / webhook-signature (or svix-*) over `${id}.${ts}.${body}`; 300 s. */
export const StandardWebhooksAuth = Type.Object(
  {
    type: Type.Literal('standard-webhooks'),
    secrets: StandardWebhooksSecrets,
    toleranceSeconds: ToleranceSeconds,
  },
  { additionalProperties: false },
);

/** X-Shopify-Hmac-Sha256: base64 HMAC-SHA256 of the body. */
export const ShopifyAuth = Type.Object(
  { type: Type.Literal('shopify'), secrets: Secrets, dedupeBySignature: DedupeBySignature },
  { additionalProperties: false },
);

/** X-Slack-Signature `v0=` hex over `v0:${ts}:${body}`, X-Slack-Request-Timestamp; 300 s. */
export const SlackAuth = Type.Object(
  { type: Type.Literal('slack'), secrets: Secrets, toleranceSeconds: ToleranceSeconds, dedupeBySignature: DedupeBySignature },
  { additionalProperties: false },
);

/** Zoom: X-Zm-Signature `v0=` hex over `v0:${ts}:${body}` (Slack's scheme), X-Zm-Request-Timestamp; 300 s. The secret is the app's secret token. */
export const ZoomAuth = Type.Object(
  { type: Type.Literal('zoom'), secrets: Secrets, toleranceSeconds: ToleranceSeconds, dedupeBySignature: DedupeBySignature },
  { additionalProperties: false },
);

/** Paddle Billing: Paddle-Signature `ts=…;h1=…[;h1=…]`, hex HMAC-SHA256 over `${ts}:${body}`; 300 s. The secret is the notification destination's secret key. */
export const PaddleAuth = Type.Object(
  { type: Type.Literal('paddle'), secrets: Secrets, toleranceSeconds: ToleranceSeconds },
  { additionalProperties: false },
);

/**
 * The webhook URL as configured at a provider that signs the URL it calls (Twilio, HubSpot), when a
 * proxy in front of hookd changes the path: it stands for PUBLIC_URL/hook/{flowId}.
 */
const SignedUrl = Type.Optional(Type.String({ pattern: '^https?://[^?#\\s]+$', maxLength: 2048 }));

/**
 * Twilio: X-Twilio-Signature, base64 HMAC-SHA1 (or HMAC-SHA256, as X-Twilio-Webhooks-Signature-Settings
 * names it) of the URL Twilio called followed by the form's parameters sorted by name; a JSON body
 * is covered by `bodySHA256` in the URL. The secrets are the account's auth tokens (primary and
 * secondary). `url`: the webhook URL as configured in Twilio, without its query, when a proxy in
 * front of hookd changes the path (default PUBLIC_URL + the path hookd was called at).
 */
export const TwilioAuth = Type.Object(
  {
    type: Type.Literal('twilio'),
    secrets: Secrets,
    url: SignedUrl,
    dedupeBySignature: DedupeBySignature,
  },
  { additionalProperties: false },
);

/**
 * HubSpot (signature v3): X-HubSpot-Signature-v3, base64 HMAC-SHA256 of method + URL + body +
 * X-HubSpot-Request-Timestamp (ms); 300 s. The secret is the app's client secret; `url` as Twilio's.
 */
export const HubspotAuth = Type.Object(
  {
    type: Type.Literal('hubspot'),
    secrets: Secrets,
    toleranceSeconds: ToleranceSeconds,
    url: SignedUrl,
    dedupeBySignature: DedupeBySignature,
  },
  { additionalProperties: false },
);

/**
 * Asana: `X-Hook-Signature: <hex HMAC-SHA256 of the body>`, under the secret Asana hands over in
 * its handshake (`X-Hook-Secret`), which hookd learns (ingress/asana-handshake.ts): defined
 * without `secrets`, the flow takes the first handshake's within ASANA_HANDSHAKE_WINDOW_MS of its
 * last change; events are refused until then. A secret given here (moving an existing webhook) is
 * used as it is.
 */
export const AsanaAuth = Type.Object(
  { type: Type.Literal('asana'), secrets: Type.Optional(Type.Array(SecretEntry, { minItems: 1, maxItems: 2 })), dedupeBySignature: DedupeBySignature },
  { additionalProperties: false },
);

/** `flow.trigger.auth`, discriminated on `type`. Absent means `none`. */
export const WebhookAuth = Type.Union([
  NoneAuth,
  BasicAuth,
  ApiKeyAuth,
  TokenAuth,
  HmacAuth,
  GithubAuth,
  StripeAuth,
  StandardWebhooksAuth,
  ShopifyAuth,
  SlackAuth,
  ZoomAuth,
  PaddleAuth,
  TwilioAuth,
  HubspotAuth,
  AsanaAuth,
]);

/** Client addresses allowed to call: IPv4/IPv6 addresses or CIDRs (see ip-allowlist.ts). */
export const IpAllowlist = Type.Array(Type.String({ minLength: 2, maxLength: 64 }), { maxItems: 1000 });

/** Token bucket per flow: refills `perSecond`, holds at most `burst`. */
export const RateLimit = Type.Object(
  {
    perSecond: Type.Number({ exclusiveMinimum: 0, maximum: 1_000_000 }),
    burst: Type.Integer({ minimum: 1, maximum: 1_000_000 }),
  },
  { additionalProperties: false },
);

/** An origin (`https://app.example.com`, no path) or `*`. */
export const CorsOrigin = Type.String({ pattern: '^(\\*|[A-Za-z][A-Za-z0-9+.-]*://[^/?#\\s]+)$', maxLength: 256 });

export const Cors = Type.Object(
  {
    origins: Type.Array(CorsOrigin, { minItems: 1, maxItems: 100 }),
    /** Extra request headers browsers may send (the auth scheme's headers are always allowed). */
    headers: Type.Optional(Type.Array(HeaderName, { maxItems: 50 })),
    /** Preflight cache lifetime; default 600. */
    maxAgeSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 86_400 })),
  },
  { additionalProperties: false },
);

/** Spread into the flow trigger schema: `{ type: 'webhook', ...authTriggerFields, … }`. */
export const authTriggerFields = {
  auth: Type.Optional(WebhookAuth),
  ipAllowlist: Type.Optional(IpAllowlist),
  rateLimit: Type.Optional(RateLimit),
  cors: Type.Optional(Cors),
};

export type WebhookAuth = Static<typeof WebhookAuth>;
export type WebhookAuthType = WebhookAuth['type'];
export type SecretEntryDef = Static<typeof SecretEntry>;
export type NoneAuthDef = Static<typeof NoneAuth>;
export type BasicAuthDef = Static<typeof BasicAuth>;
export type ApiKeyAuthDef = Static<typeof ApiKeyAuth>;
export type TokenAuthDef = Static<typeof TokenAuth>;
export type HmacAuthDef = Static<typeof HmacAuth>;
export type GithubAuthDef = Static<typeof GithubAuth>;
export type StripeAuthDef = Static<typeof StripeAuth>;
export type StandardWebhooksAuthDef = Static<typeof StandardWebhooksAuth>;
export type ShopifyAuthDef = Static<typeof ShopifyAuth>;
export type SlackAuthDef = Static<typeof SlackAuth>;
export type ZoomAuthDef = Static<typeof ZoomAuth>;
export type PaddleAuthDef = Static<typeof PaddleAuth>;
export type TwilioAuthDef = Static<typeof TwilioAuth>;
export type HubspotAuthDef = Static<typeof HubspotAuth>;
export type AsanaAuthDef = Static<typeof AsanaAuth>;
export type HmacAlgorithmDef = Static<typeof HmacAlgorithm>;
export type HmacEncodingDef = Static<typeof HmacEncoding>;
export type IpAllowlistDef = Static<typeof IpAllowlist>;
export type RateLimitDef = Static<typeof RateLimit>;
export type CorsDef = Static<typeof Cors>;

/** A secret in object form. */
export interface SecretRecord {
  value: string;
  createdAt?: string;
}

/** Auth configs that carry secrets (every type but `none`; `asana` once it has learned one). */
export type SecretBearingAuth = Exclude<WebhookAuth, NoneAuthDef | AsanaAuthDef> | Required<AsanaAuthDef>;

export function hasSecrets(auth: WebhookAuth | undefined): auth is SecretBearingAuth {
  return auth !== undefined && auth.type !== 'none' && (auth.type !== 'asana' || auth.secrets !== undefined);
}

/** The plain secret values of an auth config (empty for none/undefined). */
export function secretValues(auth: WebhookAuth | undefined): string[] {
  if (!hasSecrets(auth)) return [];
  return auth.secrets.map((s) => (typeof s === 'string' ? s : s.value));
}

/**
 * A copy of the config with every secret in object form and its value passed through `fn` — to
 * seal before storing, open after loading, or mask for the API. Strings get `createdAt` if given.
 */
export function mapSecrets<A extends WebhookAuth | undefined>(
  auth: A,
  fn: (value: string) => string,
  createdAt?: string,
): A {
  if (!hasSecrets(auth)) return auth;
  const secrets = auth.secrets.map((s): SecretRecord => {
    if (typeof s === 'string') return createdAt ? { value: fn(s), createdAt } : { value: fn(s) };
    return { ...s, value: fn(s.value) };
  });
  return { ...auth, secrets } as A;
}
