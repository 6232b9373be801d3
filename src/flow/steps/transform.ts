import type { TransformStepDef } from '../../core/flow.js';
import { compileExpression, orNull, type ExpressionIsolate, type ExpressionLimits } from '../expression.js';
import type { CompiledStep, StepContext, StepOutcome } from '../step.js';
import { expressionFailure } from '../step-failure.js';

/** `transform`: the JSONata expression's result over the input is the next step's input. */
export function compileTransformStep(def: TransformStepDef, limits?: ExpressionLimits, isolate?: ExpressionIsolate): CompiledStep {
  const expression = compileExpression(def.expression, limits, isolate);
  return {
    def,
    pure: true,
    async run(input: unknown, ctx: StepContext): Promise<StepOutcome> {
      try {
        return { status: 'completed', output: orNull(await expression.evaluate(input, ctx.message)) };
      } catch (err) {
        throw expressionFailure(err);
      }
    },
  };
}

