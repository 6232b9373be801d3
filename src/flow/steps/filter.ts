import type { FilterStepDef } from '../../core/flow.js';
import { compileExpression, type ExpressionIsolate, type ExpressionLimits } from '../expression.js';
import type { CompiledStep, StepContext, StepOutcome } from '../step.js';
import { expressionFailure } from '../step-failure.js';

/**
 * `filter`: the JSONata expression decides whether the execution goes on. A true result passes the
 * input through unchanged; a false one ends the execution as `filtered`. Non-boolean results are cast
 * the way JSONata's $boolean() casts them (no match → false).
 */
export function compileFilterStep(def: FilterStepDef, limits?: ExpressionLimits, isolate?: ExpressionIsolate): CompiledStep {
  const expression = compileExpression(def.expression, limits, isolate);
  return {
    def,
    pure: true,
    async run(input: unknown, ctx: StepContext): Promise<StepOutcome> {
      let result: unknown;
      try {
        result = await expression.evaluate(input, ctx.message);
      } catch (err) {
        throw expressionFailure(err);
      }
      return jsonataBoolean(result) ? { status: 'completed', output: input } : { status: 'filtered' };
    },
  };
}

/** JSONata's boolean cast ($boolean): empty, zero, null, functions and empty containers are false. */
export function jsonataBoolean(value: unknown): boolean {
  if (value === undefined || value === null) return false;
  if (typeof value === 'boolean') return value;
  if (typeof value === 'number') return value !== 0;
  if (typeof value === 'string') return value.length > 0;
  if (typeof value === 'function') return false;
  if (Array.isArray(value)) return value.some(jsonataBoolean);
  if (typeof value === 'object') return Object.keys(value).length > 0;
  return Boolean(value);
}
