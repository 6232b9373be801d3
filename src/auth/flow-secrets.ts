import type { Flow } from '../core/flow.js';
import { mapSecrets, secretValues } from '../core/credentials.js';
import { E, HookdError } from '../core/errors.js';
import { isSealed, MASK_MARK, maskSecret, type SecretBox } from './secret-box.js';

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
 * PUT sends back what GET showed: a secret given as its masked hint (`…a1b2`, `whsec_…LaSw`) means
 * "keep the one I have". Hints are replaced in the request body, before it is validated (a hint
 * does not match a key format such as Standard Webhooks'), each existing secret standing for one
 * hint at most (two short secrets both show as `…`). A hint the flow does not hold is refused:
 * stored, it would become the secret itself.
 */
export function resolveMaskedInput(input: unknown, existing: Flow | undefined): unknown {
  const auth = (input as { trigger?: { auth?: { secrets?: unknown } } } | null)?.trigger?.auth;
  if (!Array.isArray(auth?.secrets)) return input;
  const unused = secretValues(existing?.trigger.auth);
  const problems: string[] = [];
  const resolve = (v: string, i: number): string => {
    if (!v.includes(MASK_MARK)) return v;
    const at = unused.findIndex((o) => maskSecret(o) === v);
    if (at < 0) {
      problems.push(`/trigger/auth/secrets/${i}: ${JSON.stringify(v)} is a masked secret this flow does not hold; send the secret itself`);
      return v;
    }
    return unused.splice(at, 1)[0]!;
  };
  const secrets = (auth.secrets as unknown[]).map((s, i) => {
    if (typeof s === 'string') return resolve(s, i);
    if (typeof s === 'object' && s !== null && typeof (s as { value?: unknown }).value === 'string') {
      return { ...s, value: resolve((s as { value: string }).value, i) };
    }
    return s;
  });
  if (problems.length > 0) throw new HookdError(E.VALIDATION_FAILED, `Invalid flow definition: ${problems.join('; ')}`).withDetails(problems);
  const root = input as { trigger: { auth: object } };
  return { ...root, trigger: { ...root.trigger, auth: { ...root.trigger.auth, secrets } } };
}

/** The secrets of `flow` that `existing` did not hold (shown once, in the answer that created them). */
export function newSecrets(flow: Flow, existing: Flow | undefined): Set<string> {
  const old = new Set(secretValues(existing?.trigger.auth));
  return new Set(secretValues(flow.trigger.auth).filter((v) => !old.has(v)));
}
