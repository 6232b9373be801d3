import type { Flow } from '../core/flow.js';
import { mapSecrets, secretValues } from '../core/credentials.js';
import { E, HookdError } from '../core/errors.js';
import { isSealed, MASK_MARK, maskSecret, type SecretBox } from './secret-box.js';
import { mapStepCredentials, maskHeaderValue, resolveMaskedStepHeaders, stepCredentialValues } from './step-credentials.js';

/**
 * Secrets of a flow at rest — its credential's secrets and the credential headers of its http
 * steps (step-credentials.ts): sealed (AES-256-GCM, bound to the flow id) in the store, plain
 * only in this process's memory where the verifiers and the steps need them, masked in API answers.
 * A value stored plain (a flow saved before its kind was sealed) opens as itself and is sealed
 * at the flow's next save.
 */
export interface FlowSecretCodec {
  seal(flow: Flow): Flow;
  open(flow: Flow): Flow;
}

export function flowSecretCodec(box: SecretBox): FlowSecretCodec {
  const each = (flow: Flow, fn: (v: string) => string): Flow => mapStepCredentials(withAuth(flow, fn), fn);
  return {
    seal: (flow) => each(flow, (v) => (isSealed(v) ? v : box.seal(v, flow.id))),
    open: (flow) => each(flow, (v) => (isSealed(v) ? box.open(v, flow.id) : v)),
  };
}

function withAuth(flow: Flow, fn: (v: string) => string): Flow {
  return flow.trigger.auth ? { ...flow, trigger: { ...flow.trigger, auth: mapSecrets(flow.trigger.auth, fn) } } : flow;
}

/** The flow as the API shows it: every secret masked except those in `reveal` (just created). */
export function maskFlowSecrets(flow: Flow, reveal: ReadonlySet<string> = new Set()): Flow {
  const masked = withAuth(flow, (v) => (reveal.has(v) ? v : maskSecret(v)));
  return mapStepCredentials(masked, (v, name) => (reveal.has(v) ? v : maskHeaderValue(name, v)));
}

/**
 * PUT sends back what GET showed: a secret given as its masked hint (`…a1b2`, `whsec_…LaSw`) means
 * "keep the one I have". Hints are replaced in the request body, before it is validated (a hint
 * does not match a key format such as Standard Webhooks'); credential headers of http steps as
 * resolveMaskedStepHeaders says. A hint the flow does not hold is refused (400, every such path):
 * stored, it would become the secret itself.
 */
export function resolveMaskedInput(input: unknown, existing: Flow | undefined): unknown {
  const problems: string[] = [];
  const resolved = resolveMaskedStepHeaders(resolveMaskedTriggerSecrets(input, existing, problems), existing, problems);
  if (problems.length > 0) throw new HookdError(E.VALIDATION_FAILED, `Invalid flow definition: ${problems.join('; ')}`).withDetails(problems);
  return resolved;
}

/** The trigger's secrets: each existing secret stands for one hint at most (two short secrets both show as `…`). */
function resolveMaskedTriggerSecrets(input: unknown, existing: Flow | undefined, problems: string[]): unknown {
  const auth = (input as { trigger?: { auth?: { secrets?: unknown } } } | null)?.trigger?.auth;
  if (!Array.isArray(auth?.secrets)) return input;
  const unused = secretValues(existing?.trigger.auth);
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
  const root = input as { trigger: { auth: object } };
  return { ...root, trigger: { ...root.trigger, auth: { ...root.trigger.auth, secrets } } };
}

/**
 * The secrets and credential header values of `flow` that `existing` did not hold (shown once, in
 * the answer that created them).
 */
export function newSecrets(flow: Flow, existing: Flow | undefined): Set<string> {
  const old = new Set([...secretValues(existing?.trigger.auth), ...stepCredentialValues(existing)]);
  return new Set([...secretValues(flow.trigger.auth), ...stepCredentialValues(flow)].filter((v) => !old.has(v)));
}
