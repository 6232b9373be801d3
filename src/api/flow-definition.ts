import { randomBytes } from 'node:crypto';
import { invalidInput } from './checked-body.js';
import Type, { type TSchema } from 'typebox';
import { Compile } from 'typebox/compile';
import { triggerSecurityProblems } from '../auth/validate.js';
import { WebhookAuth } from '../core/credentials.js';
import { describeSchemaErrors as describe, type SchemaError } from '../core/schema-errors.js';
import { flowProblems } from '../flow/compile.js';
import { expressionProblem } from '../flow/expression-problems.js';
import {
  duplicateStepId,
  FilterStep,
  type Flow,
  FlowInput,
  type FlowInputDef,
  HttpStep,
  ID_RE,
  LogStep,
  normalizeFlow,
  TransformStep,
} from '../core/flow.js';

/**
 * Validation of flow definitions (API bodies and FLOWS_DIR files): the schema, then what a schema
 * cannot say (step ids unique, JSONata expressions compile). Errors name the path and the rule.
 */
const STEP_SCHEMAS: Record<string, TSchema> = {
  transform: TransformStep,
  filter: FilterStep,
  http: HttpStep,
  log: LogStep,
};
const stepCheckers = Object.fromEntries(Object.entries(STEP_SCHEMAS).map(([k, s]) => [k, Compile(s)]));
// The envelope is checked with steps as plain objects; each step is then checked against its type's
// schema, which gives "steps/1: must have property expression" instead of a wall of anyOf errors.
const envelope = Compile(
  Type.Object({ ...FlowInput.properties, steps: Type.Optional(Type.Array(Type.Object({ type: Type.String() }), { maxItems: 100 })) }, { additionalProperties: false }),
);

// trigger.auth is a union discriminated on `type`: checked against its type's schema alone, so a
// bad hmac credential is told what hmac needs, not that it is neither basic nor apiKey.
const AUTH_PATH = '/trigger/auth';
const authCheckers = new Map(
  (WebhookAuth as unknown as { anyOf: Array<TSchema & { properties: { type: { const: string } } }> }).anyOf.map(
    (member) => [member.properties.type.const, Compile(member)] as const,
  ),
);

function authProblems(auth: unknown): string[] | undefined {
  if (typeof auth !== 'object' || auth === null || Array.isArray(auth)) return undefined;
  const type = (auth as { type?: unknown }).type;
  const checker = typeof type === 'string' ? authCheckers.get(type) : undefined;
  if (checker === undefined) {
    return [`${AUTH_PATH}/type: ${type === undefined ? 'is required' : `unknown auth type ${JSON.stringify(type)}`} (one of ${[...authCheckers.keys()].join(', ')})`];
  }
  return checker.Check(auth) ? [] : describe(checker.Errors(auth) as Iterable<SchemaError>, AUTH_PATH);
}

function fail(problems: string[]): never {
  throw invalidInput('flow definition', problems);
}

/** Validate user input; returns it typed or throws VALIDATION_FAILED (400) listing every problem. */
export function validateFlowInput(input: unknown): FlowInputDef {
  if (!envelope.Check(input)) {
    const errors = [...(envelope.Errors(input) as Iterable<SchemaError>)];
    const auth = authProblems((input as { trigger?: { auth?: unknown } } | null)?.trigger?.auth);
    if (auth === undefined) fail(describe(errors));
    const inAuth = (e: SchemaError): boolean => e.instancePath === AUTH_PATH || e.instancePath.startsWith(`${AUTH_PATH}/`);
    fail([...describe(errors.filter((e) => !inAuth(e))), ...auth]);
  }
  const steps = (input as { steps?: Array<{ type: string }> }).steps ?? [];
  const problems: string[] = [];
  steps.forEach((step, i) => {
    const checker = stepCheckers[step.type];
    if (!checker) {
      problems.push(`/steps/${i}/type: unknown step type "${step.type}" (one of ${Object.keys(STEP_SCHEMAS).join(', ')})`);
      return;
    }
    if (!checker.Check(step)) problems.push(...describe(checker.Errors(step) as Iterable<SchemaError>, `/steps/${i}`));
    for (const key of ['expression', 'body'] as const) {
      const expr = (step as Record<string, unknown>)[key];
      if (typeof expr !== 'string') continue;
      const problem = expressionProblem(expr);
      if (problem !== undefined) problems.push(`/steps/${i}/${key}: ${problem}`);
    }
    if (step.type === 'http') problems.push(...placeholderProblems(step as { url?: unknown; headers?: unknown }, `/steps/${i}`));
  });
  const retry = (input as { retry?: { backoffMs?: number; maxBackoffMs?: number } }).retry;
  if (retry?.backoffMs !== undefined && retry.maxBackoffMs !== undefined && retry.maxBackoffMs < retry.backoffMs) {
    // Every delay would be maxBackoffMs: backoffMs would say nothing (the two swapped, most likely).
    problems.push(`/retry/maxBackoffMs: ${retry.maxBackoffMs} is below backoffMs (${retry.backoffMs}): the delays start at backoffMs and double up to maxBackoffMs`);
  }
  if (problems.length > 0) fail(problems);
  return input as FlowInputDef;
}

/** A template placeholder as other tools write them: `{{body.id}}`, `${body.id}`. */
const PLACEHOLDER = /\{\{[^{}]*\}\}|\$\{[^{}]*\}/;

/**
 * An http step's url and headers are sent as written: a placeholder in them was called literally
 * (`/orders/%7B%7Bbody.id%7D%7D`) on every message. Only the placeholder is quoted (a header may
 * hold a credential).
 */
function placeholderProblems(step: { url?: unknown; headers?: unknown }, at: string): string[] {
  const problems: string[] = [];
  const say = (where: string, found: string) =>
    problems.push(`${where}: ${JSON.stringify(found)} would be sent as written: an http step's url and headers are literal (hookd fills in no values); the body is the step's expression (\`body\`)`);
  const inUrl = typeof step.url === 'string' ? PLACEHOLDER.exec(step.url) : null;
  if (inUrl !== null) say(`${at}/url`, inUrl[0]);
  if (typeof step.headers === 'object' && step.headers !== null) {
    for (const [name, value] of Object.entries(step.headers)) {
      const found = typeof value === 'string' ? PLACEHOLDER.exec(value) : null;
      if (found !== null) say(`${at}/headers/${name}`, found[0]);
    }
  }
  return problems;
}

/** Unguessable by default: a flow id is part of a public URL. */
export function newFlowId(): string {
  return randomBytes(12).toString('base64url');
}

/** Validate + apply defaults; throws VALIDATION_FAILED on duplicate step ids. */
export function buildFlow(input: unknown, id: string, existing?: Flow): Flow {
  // The URL's id, on PUT, passes no schema: the same rule as a body id (URLs, file names, AMQP keys).
  if (!ID_RE.test(id)) fail([`/id: "${id}" must be 1 to 128 characters of A-Z a-z 0-9 . _ - (and not . or ..)`]);
  const valid = validateFlowInput(upperCaseMethods(input));
  if (valid.id !== undefined && valid.id !== id) fail([`/id: "${valid.id}" does not match the URL's flow id "${id}"`]);
  const flow = normalizeFlow(valid, id, new Date(), existing);
  const dup = duplicateStepId(flow);
  if (dup !== undefined) fail([`/steps: step id "${dup}" is used twice`]);
  // What only running code can tell: URLs, step options; credential configs that cannot work.
  const problems = [...flowProblems(flow), ...triggerSecurityProblems(flow.trigger).map((p) => `/trigger/${p}`)];
  if (problems.length > 0) fail(problems);
  return flow;
}

/** An http step's `method` as HTTP spells it (`post` → `POST`): as curl and fetch take either. */
function upperCaseMethods(input: unknown): unknown {
  const steps = (input as { steps?: unknown } | null)?.steps;
  if (!Array.isArray(steps)) return input;
  const lower = (step: unknown): boolean => typeof (step as { method?: unknown } | null)?.method === 'string';
  if (!steps.some(lower)) return input;
  return {
    ...(input as object),
    steps: steps.map((step: unknown) => (lower(step) ? { ...(step as object), method: (step as { method: string }).method.toUpperCase() } : step)),
  };
}
