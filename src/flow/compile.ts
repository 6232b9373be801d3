import type { Flow, StepDef } from '../core/flow.js';
import type { ExpressionIsolate, ExpressionLimits } from './expression.js';
import type { CompiledStep } from './step.js';
import { compileFilterStep } from './steps/filter.js';
import { compileHttpStep, type HttpStepOptions } from './steps/http.js';
import { compileLogStep } from './steps/log.js';
import { compileTransformStep } from './steps/transform.js';

export interface CompileOptions {
  limits?: ExpressionLimits;
  /** Where expressions the fast path does not decide are evaluated (expression-workers.ts). */
  isolate?: ExpressionIsolate;
  http?: HttpStepOptions;
}

/** A step that cannot run as written (JSONata syntax error, bad URL…). */
export interface StepCompileError {
  index: number;
  stepId: string;
  type: string;
  message: string;
}

export type CompiledFlow =
  | { ok: true; steps: CompiledStep[] }
  /** Some steps do not compile: the flow cannot run; `errors` lists each of them. */
  | { ok: false; errors: StepCompileError[] };

export function compileStep(def: StepDef, options: CompileOptions = {}): CompiledStep {
  switch (def.type) {
    case 'transform':
      return compileTransformStep(def, options.limits, options.isolate);
    case 'filter':
      return compileFilterStep(def, options.limits, options.isolate);
    case 'http':
      return compileHttpStep(def, { ...options.http, ...(options.limits ? { limits: options.limits } : {}), ...(options.isolate ? { isolate: options.isolate } : {}) });
    case 'log':
      return compileLogStep(def);
    default: {
      const unknown: { type?: unknown } = def;
      throw new Error(`unknown step type ${String(unknown.type)}`);
    }
  }
}

export function compileFlow(flow: Flow, options: CompileOptions = {}): CompiledFlow {
  const steps: CompiledStep[] = [];
  const errors: StepCompileError[] = [];
  flow.steps.forEach((def, index) => {
    try {
      steps.push(compileStep(def, options));
    } catch (err) {
      errors.push({ index, stepId: def.id, type: def.type, message: err instanceof Error ? err.message : String(err) });
    }
  });
  return errors.length > 0 ? { ok: false, errors } : { ok: true, steps };
}

/**
 * For the management API: the problems that would stop this flow from running, one line per step
 * (empty when it compiles). Lets a PUT with a broken expression fail with a 400 instead of
 * dead-lettering every message later.
 */
export function flowProblems(flow: Flow, options: CompileOptions = {}): string[] {
  const compiled = compileFlow(flow, options);
  // Located as the schema's problems are (`/steps/0/…: …`); the id alone would say `step-1` for /steps/0.
  return compiled.ok ? [] : compiled.errors.map((e) => `/steps/${e.index} (${e.type} step "${e.stepId}"): ${e.message}`);
}

export function describeCompileError(e: StepCompileError): string {
  return `step "${e.stepId}" (${e.type}): ${e.message}`;
}

/**
 * Compiled flows per flow version. The registry replaces a Flow object on every change, so the
 * object identity is the version; a WeakMap lets old versions go with their objects.
 */
export class CompiledFlowCache {
  private readonly byFlow = new WeakMap<Flow, CompiledFlow>();

  constructor(private readonly options: CompileOptions = {}) {}

  get(flow: Flow): CompiledFlow {
    let compiled = this.byFlow.get(flow);
    if (compiled === undefined) {
      compiled = compileFlow(flow, this.options);
      this.byFlow.set(flow, compiled);
    }
    return compiled;
  }
}
