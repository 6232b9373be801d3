import type { Flow } from '../core/flow.js';
import { mapSecrets, secretValues } from '../core/credentials.js';
import { isSealed, maskSecret, type SecretBox } from './secret-box.js';

/**
 * Secrets of a flow's credential at rest: sealed (AES-256-GCM, bound to the flow id) in the store,
 * plain only in this process's memory where the verifiers need them, masked in API answers.
 */
export interface FlowSecretCodec {
  seal(flow: Flow): Flow;
  open(flow: Flow): Flow;
}

export function flowSecretCodec(box: SecretBox): FlowSecretCodec {
  const withAuth = (flow: Flow, fn: (v: string) => string): Flow =>
    flow.trigger.auth ? { ...flow, trigger: { ...flow.trigger, auth: mapSecrets(flow.trigger.auth, fn) } } : flow;
  return {
    seal: (flow) => withAuth(flow, (v) => (isSealed(v) ? v : box.seal(v, flow.id))),
    open: (flow) => withAuth(flow, (v) => (isSealed(v) ? box.open(v, flow.id) : v)),
  };
}

/** The flow as the API shows it: every secret masked except those in `reveal` (just created). */
export function maskFlowSecrets(flow: Flow, reveal: ReadonlySet<string> = new Set()): Flow {
  const auth = flow.trigger.auth;
  if (!auth) return flow;
  return { ...flow, trigger: { ...flow.trigger, auth: mapSecrets(auth, (v) => (reveal.has(v) ? v : maskSecret(v))) } };
}

/**
 * PUT sends back what GET showed: a secret given as its masked hint means "keep the one I have".
 * Returns the flow with hints replaced by the existing plain secrets, and the secrets that are new.
 */
export function resolveMaskedSecrets(flow: Flow, existing: Flow | undefined): { flow: Flow; added: Set<string> } {
  const auth = flow.trigger.auth;
  const old = secretValues(existing?.trigger.auth);
  const added = new Set<string>();
  if (!auth) return { flow, added };
  const resolved = mapSecrets(auth, (v) => {
    const kept = old.find((o) => maskSecret(o) === v && o !== v);
    if (kept !== undefined) return kept;
    if (!old.includes(v)) added.add(v);
    return v;
  });
  return { flow: { ...flow, trigger: { ...flow.trigger, auth: resolved } }, added };
}
