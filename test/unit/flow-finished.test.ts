import { describe, expect, it } from 'vitest';
import type { Execution, StepRecord } from '../../src/core/execution.js';
import { finishedAs } from '../../src/flow/runner.js';

const step = (stepId: string, status: StepRecord['status']): StepRecord => ({
  stepId,
  type: 'transform',
  status,
  attempt: 1,
  startedAt: 1,
  finishedAt: 2,
});

const exec = (over: Partial<Execution>): Execution => ({
  id: 'e',
  requestId: 'r',
  flowId: 'f',
  status: 'running',
  attempts: 1,
  createdAt: 0,
  updatedAt: 0,
  steps: [],
  ...over,
});

describe('finishedAs (has a redelivered execution anything left to run?)', () => {
  it('trusts a final status', () => {
    expect(finishedAs(exec({ status: 'completed' }), 3)).toBe('completed');
    expect(finishedAs(exec({ status: 'filtered' }), 3)).toBe('filtered');
  });

  it('recognises a finished execution that begin() set back to running', () => {
    expect(finishedAs(exec({ steps: [step('a', 'completed'), step('b', 'filtered')] }), 3)).toBe('filtered');
    expect(finishedAs(exec({ steps: [step('a', 'completed'), step('b', 'completed')], cursor: { nextStep: 2, input: 1 } }), 2)).toBe(
      'completed',
    );
  });

  it('by step id: none left is done, whatever the flow has now; a step left to run is not', () => {
    expect(finishedAs(exec({ steps: [step('a', 'completed')], cursor: { nextStep: 1, nextStepId: null, input: 1 } }), 3)).toBe('completed');
    // A flow shrunk since: the position is past its end, the step to run is not done.
    expect(finishedAs(exec({ steps: [step('a', 'completed')], cursor: { nextStep: 1, nextStepId: 'b', input: 1 } }), 1)).toBeUndefined();
  });

  it('leaves unfinished and dead executions to run', () => {
    expect(finishedAs(exec({}), 2)).toBeUndefined();
    expect(finishedAs(exec({ steps: [step('a', 'completed')], cursor: { nextStep: 1, input: 1 } }), 2)).toBeUndefined();
    expect(finishedAs(exec({ status: 'retrying', steps: [step('a', 'failed')] }), 2)).toBeUndefined();
    expect(finishedAs(exec({ status: 'dead', steps: [step('a', 'completed'), step('b', 'failed')], cursor: { nextStep: 1, input: 1 } }), 2)).toBeUndefined();
  });
});
