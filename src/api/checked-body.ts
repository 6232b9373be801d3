import type { Static, TSchema } from 'typebox';
import { Compile } from 'typebox/compile';
import { E, HookdError } from '../core/errors.js';
import { describeSchemaErrors, type SchemaError } from '../core/schema-errors.js';

/**
 * A checker for a small API body (an action's options), strict where fastify's ajv is lenient: it
 * removes unknown properties of `additionalProperties: false` objects silently, so a misspelt
 * option (`flowIds`) would widen an action instead of failing it. Absent (no body) is `{}`.
 */
export function bodyChecker<S extends TSchema>(schema: S, what: string): (body: unknown) => Static<S> {
  const checker = Compile(schema);
  return (body) => {
    const value = body ?? {};
    if (checker.Check(value)) return value as Static<S>;
    throw invalidInput(what, describeSchemaErrors(checker.Errors(value) as Iterable<SchemaError>));
  };
}

/** VALIDATION_FAILED (400) for `what`: every problem in the message and, one by one, in `details`. */
export function invalidInput(what: string, problems: readonly string[]): HookdError {
  return new HookdError(E.VALIDATION_FAILED, `Invalid ${what}: ${problems.join('; ')}`).withDetails([...problems]);
}
