import type { LogStepDef } from '../../core/flow.js';
import { loggableInput } from '../log-safe.js';
import type { CompiledStep, StepContext, StepOutcome } from '../step.js';

/**
 * `log`: writes the input to the log with the flow, request and step ids (credentials redacted,
 * size bounded: log-safe.ts); passes the input on unchanged.
 */
export function compileLogStep(def: LogStepDef): CompiledStep {
  const level = def.level ?? 'info';
  const message = def.message ?? `log step ${def.id}`;
  return {
    def,
    // Only the process log is touched: safe to start before the execution record is confirmed.
    pure: true,
    async run(input: unknown, ctx: StepContext): Promise<StepOutcome> {
      ctx.logger[level](
        { flowId: ctx.flowId, requestId: ctx.requestId, stepId: ctx.stepId, attempt: ctx.attempt, input: loggableInput(input) },
        message,
      );
      return { status: 'completed', output: input };
    },
  };
}
