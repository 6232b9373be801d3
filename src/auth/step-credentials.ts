import type { Flow } from '../core/flow.js';
import { isCredentialHeader } from './credential-headers.js';
import { MASK_MARK, maskSecret } from './secret-box.js';

/**
 * The credentials of a flow's own calls: the values of its http steps' credential headers
 * (credential-headers.ts). Sealed, masked and resolved from a masked hint like the trigger's
 * secrets (flow-secrets.ts applies these next to those). Header values are literal strings (no
 * templates), so what is sealed is exactly what is sent.
 */

/**
 * A copy of the flow with every credential header value of its http steps passed through `fn`;
 * the flow itself when it has none (the registry caches compiled steps per flow object).
 */
export function mapStepCredentials(flow: Flow, fn: (value: string, name: string) => string): Flow {
  let changed = false;
  const steps = flow.steps.map((step) => {
    if (step.type !== 'http' || step.headers === undefined) return step;
    const entries = Object.entries(step.headers);
    if (!entries.some(([name]) => isCredentialHeader(name))) return step;
    changed = true;
    // fromEntries defines own keys: a header named `__proto__` stays a header.
    return { ...step, headers: Object.fromEntries(entries.map(([name, v]) => [name, isCredentialHeader(name) ? fn(v, name) : v])) };
  });
  return changed ? { ...flow, steps } : flow;
}

/** Every credential header value of the flow's http steps. */
export function stepCredentialValues(flow: Flow | undefined): string[] {
  const values: string[] = [];
  if (flow !== undefined) mapStepCredentials(flow, (v) => (values.push(v), v));
  return values;
}

/** `Bearer abc…` (an auth-scheme, RFC 9110 §11.4, then the credential). */
const AUTH_SCHEME = /^([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*) +(\S[\s\S]*)$/;

/**
 * A header value as the API shows it: maskSecret's hint, after the scheme of an Authorization or
 * Proxy-Authorization value, which tells what kind of credential it is (`Bearer …a1b2`).
 */
export function maskHeaderValue(name: string, value: string): string {
  const scheme = /^(?:proxy-)?authorization$/i.test(name) ? AUTH_SCHEME.exec(value) : null;
  return scheme ? `${scheme[1]} ${maskSecret(scheme[2]!)}` : maskSecret(value);
}

interface Held {
  stepId: string;
  origin: string | undefined;
  name: string;
  value: string;
  hint: string;
}

/**
 * PUT sends back what GET showed: a credential header given as its masked hint means "keep the
 * value I have". The hint is looked up among the flow's credential header values — the same step
 * id and header name first (two short values both show as `…`), then any. It is kept only for a
 * step calling the origin it was given for: a masked value never goes to a host whose owner was
 * not given it with the value itself. A hint the flow does not hold is a problem (its path):
 * stored, it would become the header's value. Problems are added to `problems`.
 */
export function resolveMaskedStepHeaders(input: unknown, existing: Flow | undefined, problems: string[]): unknown {
  const steps = (input as { steps?: unknown } | null)?.steps;
  if (!Array.isArray(steps)) return input;
  const held: Held[] = [];
  for (const step of existing?.steps ?? []) {
    if (step.type !== 'http') continue;
    const origin = originOf(step.url);
    for (const [name, value] of Object.entries(step.headers ?? {})) {
      if (isCredentialHeader(name)) held.push({ stepId: step.id, origin, name: name.toLowerCase(), value, hint: maskHeaderValue(name, value) });
    }
  }
  let changed = false;
  const resolved = steps.map((step: unknown, i) => {
    const headers = (step as { headers?: unknown } | null)?.headers;
    if (headers === null || typeof headers !== 'object' || Array.isArray(headers)) return step;
    const s = step as { id?: unknown; url?: unknown };
    const stepId = typeof s.id === 'string' ? s.id : `step-${i + 1}`; // normalizeFlow's default
    const origin = typeof s.url === 'string' ? originOf(s.url) : undefined;
    const out = Object.entries(headers as Record<string, unknown>).map(([name, v]): [string, unknown] => {
      if (typeof v !== 'string' || !v.includes(MASK_MARK) || !isCredentialHeader(name)) return [name, v];
      const same = held.filter((h) => h.hint === v);
      const here = same.filter((h) => origin !== undefined && h.origin === origin);
      const lower = name.toLowerCase();
      const pick = here.find((h) => h.stepId === stepId && h.name === lower) ?? here.find((h) => h.name === lower) ?? here[0];
      if (pick === undefined) {
        const path = `/steps/${i}/headers/${pointerToken(name)}`;
        problems.push(
          same.length > 0
            ? `${path}: ${JSON.stringify(v)} is a masked value given for calls to another origin than this step's url; send the value itself`
            : `${path}: ${JSON.stringify(v)} is a masked value this flow does not hold; send the value itself`,
        );
        return [name, v];
      }
      changed = true;
      return [name, pick.value];
    });
    return { ...(step as object), headers: Object.fromEntries(out) };
  });
  return changed ? { ...(input as object), steps: resolved } : input;
}

function originOf(url: string): string | undefined {
  try {
    return new URL(url).origin;
  } catch {
    return undefined;
  }
}

/** A JSON Pointer reference token (RFC 6901): `~` and `/` escaped. */
function pointerToken(name: string): string {
  return name.replaceAll('~', '~0').replaceAll('/', '~1');
}
