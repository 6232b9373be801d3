import { isSealed } from './secret-box.js';
import type { CorsDef, IpAllowlistDef, WebhookAuth } from './schema.js';
import { secretValues } from './schema.js';
import { invalidCidrs } from './ip-allowlist.js';
import { standardWebhooksKey } from './schemes/standard-webhooks.js';

/** Handshakes signed like their events: anyone could have one answered without the signature check. */
const SIGNED_HANDSHAKES: Readonly<Record<string, string>> = {
  slack: 'Slack signs its url_verification',
  zoom: 'its answer is an HMAC under the secret token',
};

/**
 * Checks the schema cannot express; run after schema validation, before storing a flow. Returns one
 * message per problem (never echoing a secret), empty when the config is usable, each led by its
 * path within the trigger as the schema's problems are (`auth/secrets/0: …`).
 */
export function triggerSecurityProblems(fields: {
  auth?: WebhookAuth;
  ipAllowlist?: IpAllowlistDef;
  cors?: CorsDef;
  handshake?: { type: string };
}): string[] {
  const problems: string[] = [];
  const { auth } = fields;
  // Handshakes answered once their signature verified need the scheme that checks it.
  const handshake = fields.handshake?.type;
  const why = handshake === undefined ? undefined : SIGNED_HANDSHAKES[handshake];
  if (why !== undefined && auth?.type !== handshake) problems.push(`handshake: ${handshake} needs auth {type: ${handshake}} (${why})`);
  const secrets = secretValues(auth);
  if (new Set(secrets).size !== secrets.length) problems.push('auth/secrets: holds the same secret twice');
  // At rest a secret is sealed as v1:…:…:…; one that looks sealed would be stored as it is and
  // taken for sealed when read back (the flow would be left out after a restart).
  secrets.forEach((s, i) => {
    if (isSealed(s)) problems.push(`auth/secrets/${i}: has the form of a sealed secret (v1:…:…:…): choose another`);
  });
  if (auth?.type === 'standard-webhooks') {
    secrets.forEach((s, i) => {
      if (standardWebhooksKey(s).length === 0) problems.push(`auth/secrets/${i}: is not a whsec_<base64> key`);
    });
  }
  for (const bad of invalidCidrs(fields.ipAllowlist ?? [])) {
    problems.push(`ipAllowlist: ${bad} is not an address or CIDR`);
  }
  for (const o of fields.cors?.origins ?? []) {
    if (o === '*') continue;
    try {
      const u = new URL(o);
      if (u.origin === 'null' || u.pathname !== '/' || u.search || u.hash) throw new Error();
    } catch {
      problems.push(`cors/origins: ${o} is not an origin (scheme://host[:port])`);
    }
  }
  return problems;
}
