/**
 * The flow runner: consumes the job queue and runs each request through its flow's steps.
 *
 * Guarantees
 * - One execution per request: `executions.begin` is get-or-create, so a redelivered job continues
 *   the same execution. It resumes at the stored cursor (next step index + its full input); steps
 *   recorded as completed are not run again.
 * - Side effects of steps are AT-LEAST-ONCE. The cursor moves only after a step's record is
 *   written, so a crash (or a lost ack, or a lease that expires) after an http call but before its
 *   record re-runs that call on redelivery. Every http call carries
 *   `Idempotency-Key: <requestId>:<stepId>`, stable across retries, so receivers can drop repeats.
 * - Nothing is acknowledged before the execution is final in the store: records and status are
 *   written (in order) before ack/nack/deadLetter.
 *
 * Failures
 * - The store or queue unavailable (503) while handling a job: the slot waits 1–5 s (Retry-After),
 *   then gives the job back without spending an attempt (Delivery.requeue), however long the outage.
 * - A step that fails retryably (http non-2xx, network error, timeout) is recorded as failed, the
 *   execution goes `retrying` and the job is nacked with backoff; once the queue reports the job dead
 *   (attempts exhausted) the execution is `dead`. Failures that cannot heal by waiting (JSONata syntax
 *   or evaluation errors, an invalid step definition) dead-letter at once.
 * - Deleted flow or missing request → dead letter with the reason. A stopped flow keeps its
 *   messages: they are delayed (nack with backoff, capped) until the flow is started again.
 *
 * Latency
 * - No reads beyond the request itself (flows come from the in-memory registry, compiled JSONata is
 *   cached per flow version). When the first step is pure (transform, filter, log) and this is the
 *   job's first delivery, it starts while `begin` is still being written; its result is used only if
 *   `begin` confirms the execution starts at step 0 with the message as input, which is exactly what
 *   the speculative run computed. Steps with side effects (http) always wait for `begin`.
 * - Step records are written behind the steps (one ordered write chain per execution); the chain is
 *   flushed before anything is acknowledged.
 */
import { setMaxListeners } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import { isHookdError } from '../core/errors.js';
import { finishesWithin } from '../core/finishes-within.js';
import {
  FINAL_STATUSES,
  MESSAGE_INPUT,
  type Execution,
  type ExecutionStatus,
  type StepRecord,
  type StepStatus,
} from '../core/execution.js';
import type { AttachmentStore } from '../attachments/contract.js';
import type { Flow } from '../core/flow.js';
import { stoppedFlowNote, type Job } from '../core/job.js';
import { type ReceivedMessage, toMessageView } from '../core/message.js';
import type { Consumer, Delivery, FlowRateGate, Queue } from '../queue/contract.js';
import type { ExecutionStore, RequestStore, StatusChange } from '../store/contracts.js';
import { backoffDelay, type BackoffPolicy } from './backoff.js';
import { preciseNow } from '../core/clock.js';
import { CompiledFlowCache, describeCompileError } from './compile.js';
import type { ExpressionIsolate, ExpressionLimits } from './expression.js';
import type { RunnerLogger } from './logger.js';
import type { CompiledStep, RequestPayload, StepContext, StepOutcome } from './step.js';
import { isStepFailure, StepFailure } from './step-failure.js';
import { recordJson } from './truncate.js';
import { RepeatedLog } from '../core/repeated-log.js';
import { formatDuration } from '../core/duration.js';

export interface StepStartedEvent {
  flowId: string;
  requestId: string;
  stepId: string;
  stepType: string;
  stepIndex: number;
  attempt: number;
  /** When the request was received (epoch ms). */
  receivedAt: number;
  startedAt: number;
  /** The job's first delivery (not a retry, not a retried dead letter, whose attempts start at 1 again). */
  firstDelivery: boolean;
}

export interface StepFinishedEvent extends StepStartedEvent {
  finishedAt: number;
  status: StepStatus;
  error?: string;
}

export interface ExecutionFinishedEvent {
  flowId: string;
  requestId: string;
  executionId: string;
  status: ExecutionStatus;
  attempt: number;
  finishedAt: number;
  error?: string;
}

/** Optional observation points (metrics, benchmarks). Called synchronously; errors are ignored. */
export interface FlowRunnerHooks {
  onStepStarted?(event: StepStartedEvent): void;
  onStepFinished?(event: StepFinishedEvent): void;
  /** A delivery ended the execution: completed, filtered or dead. */
  onExecutionFinished?(event: ExecutionFinishedEvent): void;
  /**
   * A request its job carried (RABBITMQ_ACCEPT=broker) was looked up in the store on the way in:
   * recorded (now, or by an earlier delivery of the job), or a duplicate of another request with
   * its id (a sender's retry: acked unrun).
   */
  onCarriedRequest?(outcome: 'recorded' | 'duplicate'): void;
}

export interface FlowRunnerOptions extends FlowRunnerHooks {
  requests: RequestStore;
  executions: ExecutionStore;
  queue: Queue;
  /** In-memory registry lookup, kept current by the API. */
  getFlow(id: string): Flow | undefined;
  /**
   * Read a flow the registry does not know yet from the store (another instance may have created it
   * moments ago, before this one's refresh). Consulted before a job is dead-lettered as "deleted".
   */
  loadFlow?(id: string): Promise<Flow | undefined>;
  logger: RunnerLogger;
  /** Jobs handled at once. */
  concurrency: number;
  /** Jobs leased ahead of the free slots (queues that support it; see ConsumeOptions). Default 0. */
  prefetch?: number;
  /** Flows that limit their executions at once (Flow.concurrency), by id: passed to the queue's consumer. */
  flowLimits?: () => ReadonlyMap<string, number>;
  /** Flows whose executions start only so many per second (Flow.executionRate): passed to the queue's consumer. */
  flowRates?: FlowRateGate;
  /**
   * The same rates, paced again right before an attempt's first step with side effects: the
   * consumer takes a start when it hands the job over, and what comes before that step (reading
   * the message, the execution record's write) takes a varying time under load, which bunched the
   * calls a receiver saw (≈ 20 % over the rate within a second during heavy intake). `reserve`
   * gives how long to wait for the flow's next start (FlowRates.reserve; a second bucket).
   */
  callPacing?: { reserve(flowId: string): number };
  /**
   * Whether a job of this flow (as the runner has it) may run in this process now (RabbitMQ: a
   * flow one instance at a time holds, FlowOwnership.mayRun). Asked when a job starts and right
   * before each step with side effects (an http call): a job of a flow no longer held here — the
   * hold lapsed while this process was stalled, and another instance may run the flow's later
   * jobs by now — is handed back unrun from there (its cursor kept, no attempt spent), never
   * running its call. Absent: every flow may run.
   */
  mayRun?: (flow: Flow) => boolean;
  /** UTF-8 bytes of JSON kept per step input/output in execution records. */
  executionDataLimit: number;
  /** Used when a stopped flow's job has to be queued again (flow.retry.maxAttempts overrides). */
  defaultMaxAttempts: number;
  defaultBackoffMs: number;
  maxBackoffMs: number;
  /** Longest delay before a stopped flow's job is looked at again (default 60 s). */
  stoppedFlowRecheckMs?: number;
  /** JSONata guardrails (default 1 s, depth 1000). */
  expressionLimits?: ExpressionLimits;
  /** Where expressions the fast path does not decide are evaluated (default: this thread). */
  expressionIsolate?: ExpressionIsolate;
  /** Largest http step response body read (default 10 MiB). */
  maxResponseBytes?: number;
  /** Where requests' files and large raw bodies are: the http step's forwardAttachment reads them. */
  attachments?: AttachmentStore;
  /**
   * The execution store applies writes in the order they are called, even when several are in
   * flight (true of the embedded SQLite backend: one writer thread, FIFO, group commit). The runner
   * then issues a step's record without waiting for the previous one, so an execution's records and
   * final status share one commit instead of one round trip each. Leave false for stores that may
   * reorder concurrent calls (a connection pool). Acknowledgements always wait for the writes.
   */
  orderedWrites?: boolean;
  /** Jitter source, [0, 1) (tests). */
  random?: () => number;
}

export interface FlowRunner {
  /** Start consuming the queue (no-op when already running). */
  start(): void;
  /**
   * Stop taking jobs. Running executions get graceMs to finish; the jobs of those still running are
   * released by the consumer (redelivered elsewhere, resuming at their cursor), and their handlers
   * are aborted without writing anything more.
   */
  stop(options?: { graceMs?: number }): Promise<void>;
  /** Jobs being handled now. */
  readonly inFlight: number;
}

interface StepRun {
  startedAt: number;
  finishedAt: number;
  outcome?: StepOutcome;
  failure?: StepFailure;
}

/** The record of a step run that produced an outcome (status completed; callers adjust it). */
function stepRecord(step: CompiledStep, attempt: number, run: StepRun, inputJson: string | undefined): StepRecord {
  const record: StepRecord = {
    stepId: step.def.id,
    type: step.def.type,
    status: 'completed',
    attempt,
    startedAt: run.startedAt,
    finishedAt: run.finishedAt,
  };
  if (inputJson !== undefined) record.input = inputJson;
  return record;
}

/** One start()…stop() period. Handlers check `released` before every write once stop gave their jobs back. */
interface Session {
  consumer: Consumer | undefined;
  controller: AbortController;
  released: boolean;
  /** stop() was called: running steps finish, no further step starts (the job is handed back). */
  stopping: boolean;
  active: Set<Promise<void>>;
}

const DEFAULT_STOPPED_RECHECK_MS = 60_000;
const DEAD_ATTEMPTS_EXHAUSTED = 'execution dead: attempts exhausted (in the dead letters: GET /api/dead-letters?flowId=…; once the cause is fixed, POST /api/dead-letters/retry)';
const DEAD_WILL_NOT_HEAL = 'execution dead: failure will not heal by retrying (the error says why; once fixed, retry its dead letter or replay the request)';
/** How long stop() waits for aborted handlers to unwind before their jobs are released. */
const UNWIND_MS = 2_000;

export function createFlowRunner(o: FlowRunnerOptions): FlowRunner {
  const compiled = new CompiledFlowCache({
    ...(o.expressionLimits ? { limits: o.expressionLimits } : {}),
    ...(o.expressionIsolate ? { isolate: o.expressionIsolate } : {}),
    ...(o.maxResponseBytes !== undefined ? { http: { maxResponseBytes: o.maxResponseBytes } } : {}),
  });
  const random = o.random ?? Math.random;
  // Per-request failures (a receiver down fails every job of its flow): one line per flow, step
  // and outcome per window, not one per job and retry.
  const repeated = new RepeatedLog(o.logger);
  const stoppedRecheckMs = o.stoppedFlowRecheckMs ?? DEFAULT_STOPPED_RECHECK_MS;
  let session: Session | undefined;

  const policyOf = (flow: Flow | undefined): BackoffPolicy => ({
    backoffMs: flow?.retry?.backoffMs ?? o.defaultBackoffMs,
    maxBackoffMs: flow?.retry?.maxBackoffMs ?? o.maxBackoffMs,
  });

  function hook<E>(fn: ((e: E) => void) | undefined, event: E): void {
    if (fn === undefined) return;
    try {
      fn.call(o, event);
    } catch (err) {
      o.logger.warn({ err }, 'flow runner hook threw');
    }
  }

  /** Runs one step; never rejects (unexpected errors become retryable failures). */
  async function runStep(
    step: CompiledStep,
    index: number,
    input: unknown,
    ctx: StepContext,
    receivedAt: number,
    startedAt: number = preciseNow(),
    first = false,
  ): Promise<StepRun> {
    const started: StepStartedEvent = {
      flowId: ctx.flowId,
      requestId: ctx.requestId,
      stepId: step.def.id,
      stepType: step.def.type,
      stepIndex: index,
      attempt: ctx.attempt,
      receivedAt,
      startedAt,
      firstDelivery: first,
    };
    hook(o.onStepStarted, started);
    const run: StepRun = { startedAt, finishedAt: startedAt };
    try {
      run.outcome = await step.run(input, ctx);
    } catch (err) {
      run.failure = isStepFailure(err)
        ? err
        : new StepFailure(`unexpected error: ${err instanceof Error ? err.message : String(err)}`, {
            retryable: true,
            cause: err,
          });
    }
    run.finishedAt = preciseNow();
    const finished: StepFinishedEvent = {
      ...started,
      finishedAt: run.finishedAt,
      status: run.failure ? 'failed' : (run.outcome?.status ?? 'completed'),
    };
    if (run.failure) finished.error = run.failure.message;
    hook(o.onStepFinished, finished);
    return run;
  }

  /** `outageSince`: the job is being handled again in place since the store went away then (a limited flow's order). */
  async function handle(s: Session, d: Delivery, outageSince?: number): Promise<void> {
    let job = d.job;
    const log = { flowId: job.flowId, requestId: job.requestId, jobId: job.id, attempt: job.attempts };
    let executionId: string | undefined;
    let flow: Flow | undefined;
    let carried: ReceivedMessage | undefined;
    try {
      if (job.carried !== undefined && o.requests.recordCarried !== undefined) {
        // The queue was the request's only record: the store has it before anything else happens
        // to the job (a dead letter, a run), so that every execution points to a stored request.
        const recorded = await o.requests.recordCarried(job.carried);
        hook(o.onCarriedRequest, recorded.kind);
        if (s.released) return;
        if (recorded.kind === 'duplicate') {
          o.logger.debug({ ...log, storedAs: recorded.requestId }, 'a request with this id is stored already (a sender\'s retry): its own job runs it, this one is done');
          await d.ack();
          return;
        }
        carried = recorded.message;
        if (carried.id !== job.requestId) {
          // Stored under the flow's own id for the sender's: the job names it from now on.
          if (d.renameRequest === undefined) throw new Error(`the queue cannot rename the request of job ${job.id} (${job.requestId} → ${carried.id})`);
          d.renameRequest(carried.id);
          job = d.job;
          log.requestId = job.requestId;
        }
      }
      if (d.exhausted !== undefined) {
        // A job that keeps killing its worker: dead now, its execution with it, rather than once
        // more and then dead-lettered by the queue alone (the execution left running).
        await abandon(s, d, d.exhausted);
        return;
      }
      flow = o.getFlow(job.flowId) ?? (await o.loadFlow?.(job.flowId));
      if (flow === undefined) {
        await abandon(s, d, `flow ${job.flowId} does not exist (deleted); job dead-lettered`);
        return;
      }
      if (flow.status !== 'started') {
        await park(s, d, flow);
        return;
      }
      if (o.mayRun !== undefined && !o.mayRun(flow)) {
        await handOver(s, d, undefined, `handed back unrun: flow ${flow.id} is no longer held by this instance`);
        return;
      }
      const plan = compiled.get(flow);
      const message = carried ?? (await o.requests.getForExecution(job.requestId, job));
      if (s.released) return;
      if (message === undefined) {
        await abandon(s, d, `request ${job.requestId} is not in the request store; job dead-lettered`);
        return;
      }

      // Only pure steps, first delivery: run them all, then record the run and ack in one go.
      let prerun: StepRun[] | undefined;
      if (plan.ok && firstDelivery(job) && plan.steps.every((st) => st.pure)) {
        const pure = await runPure(s, d, plan.steps, message);
        if (pure === true) return;
        // A step failed: the regular path below records these runs (the failed one last) without
        // running them again — a slow expression is not evaluated twice, a log step not repeated.
        prerun = pure;
      }

      const t0 = preciseNow();
      const beginning = o.executions.begin({
        requestId: job.requestId,
        flowId: job.flowId,
        attempt: job.attempts,
        now: t0,
        queueDelayMs: t0 - message.receivedAt,
      });
      const view = toMessageView(message);
      const payload = payloadOf(message);
      const ctxFor = (step: CompiledStep): StepContext => stepContext(s, job, step, view, payload);

      // Speculative first step: see "Latency" above.
      const first = plan.ok ? plan.steps[0] : undefined;
      const speculative =
        prerun === undefined && first !== undefined && first.pure && firstDelivery(job)
          ? runStep(first, 0, view, ctxFor(first), message.receivedAt, t0, true)
          : undefined;

      const exec: Execution = await beginning;
      executionId = exec.id;
      if (s.released) return;

      const done = finishedAs(exec, flow.steps.length);
      if (done !== undefined) {
        // A repeat delivery of a finished execution (ack lost, job re-queued): nothing left to run.
        // begin() may have flipped the status back to running: put the final one back first.
        if (exec.status !== done) await o.executions.setStatus(exec.id, done, preciseNow());
        if (s.released) return;
        await d.ack();
        return;
      }
      // A `dead` execution delivered again was put back on purpose (queue.retryDead): resume it.

      const writer = new ExecutionWriter(o.executions, exec.id, o.orderedWrites === true);
      const finish = (status: ExecutionStatus, error?: string): void => {
        const event: ExecutionFinishedEvent = {
          flowId: job.flowId,
          requestId: job.requestId,
          executionId: exec.id,
          status,
          attempt: job.attempts,
          finishedAt: preciseNow(),
        };
        if (error !== undefined) event.error = error;
        hook(o.onExecutionFinished, event);
      };

      if (!plan.ok) {
        const error = `flow ${flow.id} cannot run: ${plan.errors.map(describeCompileError).join('; ')}`;
        const bad = plan.errors[0]!;
        const at = preciseNow();
        writer.record({
          stepId: bad.stepId,
          type: bad.type,
          status: 'failed',
          attempt: job.attempts,
          startedAt: at,
          finishedAt: at,
          error,
        });
        await deadNow(s, d, writer, error, log);
        if (!s.released) finish('dead', error);
        return;
      }

      const steps = plan.steps;
      let index = 0;
      let input: unknown = view;
      // The speculative run computed step 0 over the message view: valid only without a cursor.
      const useSpeculative = speculative !== undefined && exec.cursor === undefined;
      const usePrerun = prerun !== undefined && exec.cursor === undefined;
      let inputJson: string | undefined = MESSAGE_INPUT; // the message: not recorded again
      if (exec.cursor !== undefined) {
        const at = resumeIndex(exec.cursor, steps);
        if (at === undefined) {
          // Edited since: the step to resume at is gone. Running whatever now sits at its position
          // could repeat a done step or skip the undone one; an operator decides (dead letter).
          const error = `flow ${flow.id} was changed: step "${exec.cursor.nextStepId}", where this execution was to resume, no longer exists (replay the request to run the flow as it is now)`;
          await deadNow(s, d, writer, error, log);
          if (!s.released) finish('dead', error);
          return;
        }
        index = at;
        input = exec.cursor.input;
        inputJson = recordJson(input, o.executionDataLimit);
      }

      let paced = o.callPacing === undefined;
      let finished = false;
      for (let i = index; i < steps.length; i++) {
        const step = steps[i]!;
        if (!paced && !step.pure && !(usePrerun && prerun !== undefined && i < prerun.length)) {
          // The attempt's first call out: at its flow's rate (callPacing). The wait holds the
          // slot; it is short, since the consumer started the job at that rate already.
          paced = true;
          const wait = o.callPacing!.reserve(flow.id);
          if (wait > 0) await holdSlot(wait, s.controller.signal);
          if (s.released) {
            await writer.settle();
            return;
          }
        }
        if (o.mayRun !== undefined && !step.pure && !(usePrerun && prerun !== undefined && i < prerun.length) && !o.mayRun(flow)) {
          // The flow's hold may have lapsed (this process was stalled): another instance may run
          // its later jobs by now. This call must not start beside theirs, nor after them.
          await handOver(s, d, writer, `handed back at step "${step.def.id}": flow ${flow.id} is no longer held by this instance`);
          return;
        }
        if (s.stopping && i > index && !(usePrerun && prerun !== undefined && i < prerun.length)) {
          // Shutting down: the running step finished, the next one does not start (it could be
          // cut off by the grace and then run again). Its cursor is recorded: hand the job back
          // without spending an attempt; the next process resumes at this step.
          await writer.flush();
          // A database queue whose database is down cannot take it back yet: try again until it
          // can or the grace is over (then the consumer releases it) — never run the next step.
          const note = `handed back at step "${step.def.id}": the runner stopped`;
          while (!s.released && !(await d.requeue(note))) await holdSlot(1_000, s.controller.signal);
          return;
        }
        const run =
          usePrerun && prerun !== undefined && i < prerun.length
            ? prerun[i]!
            : i === 0 && useSpeculative && speculative !== undefined
              ? await speculative
              : await runStep(step, i, input, ctxFor(step), message.receivedAt, undefined, firstDelivery(job));
        if (s.released) {
          // The job was given back: keep what is recorded so far (the redelivery resumes there), no more.
          await writer.settle();
          return;
        }
        const record = stepRecord(step, job.attempts, run, inputJson);

        if (run.failure !== undefined || run.outcome === undefined) {
          const failure = run.failure ?? new StepFailure('step produced no outcome', { retryable: true });
          const error = `step "${step.def.id}" (${step.def.type}): ${failure.message}`;
          record.status = 'failed';
          record.error = error;
          // What the step can tell of its failure (an http step: the request sent, the answer).
          const failedOutput = failure.output === undefined ? undefined : recordJson(failure.output, o.executionDataLimit);
          if (failedOutput !== undefined) record.output = failedOutput;
          writer.record(record);
          if (!failure.retryable) {
            await deadNow(s, d, writer, error, { ...log, stepId: step.def.id });
            if (!s.released) finish('dead', error);
            return;
          }
          const outcome = await retryLater(s, d, writer, flow, failure, error, { ...log, stepId: step.def.id });
          if (outcome === 'dead') finish('dead', error);
          return;
        }

        if (run.outcome.status === 'filtered') {
          record.status = 'filtered';
          writer.record(record, undefined, { status: 'filtered', now: preciseNow() });
          if (!(await ackAfterWrites(s, d, writer))) return;
          finish('filtered');
          return;
        }

        const output = run.outcome.output;
        const outputJson = recordJson(output, o.executionDataLimit);
        if (outputJson !== undefined) record.output = outputJson;
        // The last step's record carries the final status: one write, never a step recorded
        // with its execution still running.
        const last = i === steps.length - 1;
        if (last) finished = true;
        writer.record(record, { nextStep: i + 1, nextStepId: steps[i + 1]?.def.id ?? null, input: output }, last ? { status: 'completed', now: preciseNow() } : undefined);
        input = output;
        inputJson = outputJson;
      }

      // Resumed past the last step (its record written, the status not: a crash between the two
      // writes of an earlier build): the status alone.
      if (!finished) writer.status('completed', preciseNow());
      if (!(await ackAfterWrites(s, d, writer))) return;
      finish('completed');
    } catch (err) {
      if (s.released) return;
      const reason = err instanceof Error ? err.message : String(err);
      const error = `runner error: ${reason}`;
      if (isHookdError(err) && err.statusCode === 503) {
        // The store (or queue) is down, not the job: hold the slot a moment, so that jobs do not
        // spin through the queue during an outage, then give the job back without spending an
        // attempt. A long outage (RabbitMQ up, PostgreSQL down) must not send every job to the
        // dead letters; it resumes at its cursor once the store is back.
        // The error's Retry-After, 1–5 s. A database queue in the same database cannot take the job
        // back while it is down: the job stays held (its lease extended) and is given back later.
        const holdMs = Math.min(5_000, Math.max(1_000, (err.retryAfter ?? 1) * 1000));
        // A flow with a concurrency limit runs its jobs in the queue's order (with 1, one after
        // another). Given back, this job would go behind later ones (RabbitMQ takes it back as a
        // new message at the queue's end), so it is held and handled again in place instead, for
        // up to ORDERED_OUTAGE_HOLD_MS of outage (RabbitMQ closes a channel that holds a delivery
        // 30 min), unless the runner stops.
        const since = outageSince ?? Date.now();
        const inPlace = flow?.concurrency !== undefined && Date.now() - since < ORDERED_OUTAGE_HOLD_MS;
        if (outageSince === undefined) {
          // Every job of the flow, at every redelivery while the outage lasts: summed up per flow.
          if (inPlace) repeated.warn(`${job.flowId}\0\0outage-held`, { ...log, err: reason }, 'store unavailable: job held, to be handled again in place (its flow keeps its order)');
          else repeated.warn(`${job.flowId}\0\0outage`, { ...log, err: reason }, 'store unavailable: job given back without spending an attempt');
        }
        await holdSlot(holdMs, s.controller.signal);
        if (inPlace && !s.released && !s.stopping) return handle(s, d, since);
        while (!s.released && !(await d.requeue(error))) await holdSlot(holdMs, s.controller.signal);
        return;
      }
      // Anything else (a bug): give the job back with backoff; it resumes at its cursor.
      o.logger.error({ ...log, err }, 'flow runner could not handle a job');
      try {
        const outcome = await d.nack({ delayMs: backoffDelay(job.attempts, policyOf(flow), random), error });
        if (outcome === 'dead' && executionId !== undefined) {
          await o.executions.setStatus(executionId, 'dead', preciseNow(), error);
        }
      } catch (nackErr) {
        // Unsettled: the handler must not return, which would ack the job. Thrown, the consumer
        // nacks it once more and, failing that, leaves it to its lease (or hands it back to the broker).
        o.logger.error({ ...log, err: nackErr }, 'flow runner could not nack a job');
        throw nackErr;
      }
    }
  }

  /**
   * A job of a flow no longer held here (FlowRunnerOptions.mayRun): its records so far written
   * (the next holder resumes at its cursor), then handed back without spending an attempt — at its
   * place in the queue when the queue can (Delivery.handBack), so that the flow's next holder runs
   * it before the jobs behind it; else as requeue() does, tried again until taken (or released).
   * A delivery whose channel is gone was requeued by the broker already: both are no-ops then.
   */
  async function handOver(s: Session, d: Delivery, writer: ExecutionWriter | undefined, note: string): Promise<void> {
    if (writer !== undefined) await writer.flush();
    if (s.released) return;
    o.logger.warn({ flowId: d.job.flowId, requestId: d.job.requestId, jobId: d.job.id, attempt: d.job.attempts }, note);
    if (d.handBack?.() === true) return;
    while (!s.released && !(await d.requeue(note))) await holdSlot(1_000, s.controller.signal);
  }

  /** What a step sees of its job; pure steps get no payload (they never forward bytes). */
  function stepContext(s: Session, job: Job, step: CompiledStep, message: unknown, payload?: RequestPayload): StepContext {
    const ctx: StepContext = {
      flowId: job.flowId,
      requestId: job.requestId,
      stepId: step.def.id,
      attempt: job.attempts,
      logger: o.logger,
      signal: s.controller.signal,
      message,
    };
    if (payload !== undefined) ctx.payload = payload;
    return ctx;
  }

  function payloadOf(m: ReceivedMessage): RequestPayload {
    const store = o.attachments;
    const p: RequestPayload = {
      contentType: m.contentType,
      rawBody: m.rawBody,
      attachments: m.attachments ?? [],
      open: async (id) => (store === undefined ? undefined : store.open(id)),
    };
    if (m.rawAttachment !== undefined) p.rawAttachment = m.rawAttachment;
    return p;
  }

  /**
   * The fast path for flows of pure steps (transform, filter, log) on a job's first delivery: no
   * checkpoint is needed along the way — a repeat would compute the same — so the whole run is one
   * write (saveRun) followed by the ack, which share a group commit when writes are ordered. True
   * when done (recorded and acked, or given back); when a step fails, nothing is written and the
   * runs so far (the failed one last) are returned for the regular path to record as they are.
   */
  async function runPure(s: Session, d: Delivery, steps: readonly CompiledStep[], message: ReceivedMessage): Promise<true | StepRun[]> {
    const job = d.job;
    const startedAt = preciseNow();
    const view = toMessageView(message);
    let input: unknown = view;
    let inputJson: string | undefined = MESSAGE_INPUT; // the message: not recorded again
    const records: StepRecord[] = [];
    const runs: StepRun[] = [];
    let status: 'completed' | 'filtered' = 'completed';
    for (let i = 0; i < steps.length; i++) {
      const step = steps[i]!;
      const run = await runStep(step, i, input, stepContext(s, job, step, view), message.receivedAt, i === 0 ? startedAt : undefined, true);
      if (s.released) return true; // given back: nothing written, the redelivery starts over
      runs.push(run);
      if (run.failure !== undefined || run.outcome === undefined) return runs;
      const record = stepRecord(step, job.attempts, run, inputJson);
      if (run.outcome.status === 'filtered') {
        record.status = 'filtered';
        records.push(record);
        status = 'filtered';
        break;
      }
      const outputJson = recordJson(run.outcome.output, o.executionDataLimit);
      if (outputJson !== undefined) record.output = outputJson;
      records.push(record);
      input = run.outcome.output;
      inputJson = outputJson;
    }
    const finishedAt = preciseNow();
    const saved = o.executions.saveRun({
      requestId: job.requestId,
      flowId: job.flowId,
      attempt: job.attempts,
      startedAt,
      finishedAt,
      queueDelayMs: startedAt - message.receivedAt,
      status,
      steps: records,
    });
    let executionId: string;
    if (o.orderedWrites === true) {
      const acked = d.ack();
      acked.catch(() => undefined); // awaited below, after the write it follows
      executionId = await saved;
      await acked;
    } else {
      executionId = await saved;
      if (s.released) return true;
      await d.ack();
    }
    hook(o.onExecutionFinished, { flowId: job.flowId, requestId: job.requestId, executionId, status, attempt: job.attempts, finishedAt });
    return true;
  }

  /**
   * Acknowledge once the execution's writes are stored. With ordered writes the ack is issued right
   * behind them, so it shares their group commit (one commit per job instead of two); either both
   * commit or the batch fails as a whole (a database error fails every op of a batch, run-batch.ts).
   * No ack is issued once one of the execution's writes is known to have failed. Returns false when
   * the job was released meanwhile.
   */
  async function ackAfterWrites(s: Session, d: Delivery, writer: ExecutionWriter): Promise<boolean> {
    if (o.orderedWrites !== true) {
      await writer.flush();
      if (s.released) return false;
      await d.ack();
      return true;
    }
    if (s.released) return false;
    // A write of this execution already failed: no ack (flush throws that failure to the caller).
    if (writer.hasFailed) await writer.flush();
    const acked = d.ack();
    acked.catch(() => undefined); // awaited below, after the writes it follows
    await writer.flush();
    await acked;
    return true;
  }

  /** Retryable failure: status first (dead when this was the last attempt), then nack. */
  async function retryLater(
    s: Session,
    d: Delivery,
    writer: ExecutionWriter,
    flow: Flow,
    failure: StepFailure,
    error: string,
    log: object,
  ): Promise<'retry' | 'dead' | undefined> {
    const job = d.job;
    const policy = policyOf(flow);
    const backoff = backoffDelay(job.attempts, policy, random);
    let delayMs = backoff;
    let setBy = '';
    if (failure.retryAfterMs !== undefined) {
      delayMs = Math.max(delayMs, Math.min(failure.retryAfterMs, policy.maxBackoffMs));
      if (delayMs > backoff) {
        const capped = failure.retryAfterMs > policy.maxBackoffMs ? ', capped at maxBackoffMs' : '';
        setBy = ` (the answer's Retry-After, ${delayText(failure.retryAfterMs)}${capped})`;
      }
    }
    // A retrying execution says where it stands: which attempt failed, and when the next is due.
    const retryingError = `${error} — attempt ${job.attempts} of ${job.maxAttempts} failed; next attempt in ${delayText(delayMs)}${setBy}`;
    // The queue dead-letters once attempts reach maxAttempts; writing `dead` before the nack means a
    // crash in between never leaves a dead-lettered job with a `retrying` execution.
    const expectDead = job.attempts >= job.maxAttempts;
    writer.status(expectDead ? 'dead' : 'retrying', preciseNow(), expectDead ? error : retryingError);
    await writer.flush();
    if (s.released) return undefined;
    const outcome = await d.nack({ delayMs, error });
    if ((outcome === 'dead') !== expectDead) {
      await o.executions.setStatus(writer.executionId, outcome === 'dead' ? 'dead' : 'retrying', preciseNow(), outcome === 'dead' ? error : retryingError);
    }
    const key = `${flow.id}\0${(log as { stepId?: string }).stepId ?? ''}`;
    if (outcome === 'dead') repeated.warn(`${key}\0dead`, { ...log, error }, DEAD_ATTEMPTS_EXHAUSTED);
    else repeated.info(`${key}\0retry`, { ...log, error, delayMs }, 'step failed; retrying');
    return outcome;
  }

  /** Non-retryable failure: execution dead, job straight to the dead letters. */
  async function deadNow(s: Session, d: Delivery, writer: ExecutionWriter, error: string, log: object): Promise<void> {
    writer.status('dead', preciseNow(), error);
    await writer.flush();
    if (s.released) return;
    await d.deadLetter(error);
    const { flowId, stepId } = log as { flowId?: string; stepId?: string };
    repeated.warn(`${flowId ?? ''}\0${stepId ?? ''}\0dead-now`, { ...log, error }, DEAD_WILL_NOT_HEAL);
  }

  /** The job cannot run (flow deleted, request gone): dead-letter it and close its execution if any. */
  async function abandon(s: Session, d: Delivery, error: string): Promise<void> {
    if (s.released) return;
    await d.deadLetter(error);
    repeated.warn(`${d.job.flowId}\0\0abandoned`, { flowId: d.job.flowId, requestId: d.job.requestId, jobId: d.job.id, error }, 'job dead-lettered');
    const exec = await o.executions.getByRequest(d.job.requestId);
    if (exec !== undefined && !FINAL_STATUSES.has(exec.status)) {
      await o.executions.setStatus(exec.id, 'dead', preciseNow(), error);
    }
  }

  /**
   * Stopped flow: keep the job, look again later (an uncounted nack: waiting spends no attempt and
   * never dead-letters). Starting the flow makes it due at once (Queue.wakeStopped, app.ts).
   */
  async function park(s: Session, d: Delivery, flow: Flow): Promise<void> {
    if (s.released) return;
    const job = d.job;
    // Waiting is not failing: no attempt is spent, however long the flow stays stopped, and
    // starting it makes the job due at once (Queue.wakeStopped) rather than at its next look.
    await d.nack({ delayMs: stoppedRecheckMs, error: stoppedFlowNote(flow.id), uncounted: true });
  }

  return {
    start(): void {
      if (session !== undefined) return;
      const s: Session = { consumer: undefined, controller: new AbortController(), released: false, stopping: false, active: new Set() };
      // Every running call listens to it (call-signal.ts, holdSlot), and removes its listener when
      // done: more than 10 at once is the normal case, not the leak Node's warning suspects.
      setMaxListeners(0, s.controller.signal);
      session = s;
      s.consumer = o.queue.consume(
        (d) => {
          const p = handle(s, d);
          s.active.add(p);
          // Both ways, so a handler that throws (the consumer nacks it) is no unhandled rejection here.
          const done = () => s.active.delete(p);
          p.then(done, done);
          return p;
        },
        { concurrency: o.concurrency, prefetch: o.prefetch ?? 0, ...(o.flowLimits ? { flowLimits: o.flowLimits } : {}), ...(o.flowRates ? { flowRates: o.flowRates } : {}) },
      );
    },

    async stop(options?: { graceMs?: number }): Promise<void> {
      const s = session;
      if (s === undefined) return;
      session = undefined;
      s.stopping = true;
      // Handlers still running after the grace: their jobs are about to be released, so they must
      // not write any more; aborted (steps' HTTP calls too) before the jobs are given back.
      const abortRunning = async (): Promise<void> => {
        s.released = true;
        if (s.active.size > 0) {
          o.logger.warn(
            { executions: s.active.size, graceMs: options?.graceMs },
            'shutdown grace over: aborting the steps still running; their jobs are handed back without spending an attempt and resume at that step in the next process',
          );
        }
        s.controller.abort();
        if (s.active.size > 0) await finishesWithin(Promise.allSettled([...s.active]), UNWIND_MS);
      };
      await s.consumer?.stop({ ...options, beforeRelease: abortRunning });
      if (!s.released) await abortRunning(); // a consumer that never called it (nothing was running)
      repeated.flush();
    },

    get inFlight(): number {
      return session?.active.size ?? 0;
    },
  };
}

/**
 * The final status of an execution that has nothing left to run, else undefined. Judged from its
 * records as well as its status: the store's begin() sets `running` even on a finished execution, so
 * a filtered step record or a cursor past the last step is what proves the work was done.
 */
export function finishedAs(exec: Execution, stepCount: number): 'completed' | 'filtered' | undefined {
  if (exec.status === 'completed' || exec.status === 'filtered') return exec.status;
  const last = exec.steps[exec.steps.length - 1];
  if (last?.status === 'filtered') return 'filtered';
  const cursor = exec.cursor;
  if (cursor === undefined) return undefined;
  if (cursor.nextStepId === null) return 'completed';
  if (cursor.nextStepId === undefined && stepCount > 0 && cursor.nextStep >= stepCount) return 'completed';
  return undefined;
}

/** Where a cursor resumes in the flow's steps now: by step id (by position for old cursors); undefined when that step is gone. */
export function resumeIndex(cursor: NonNullable<Execution['cursor']>, steps: readonly CompiledStep[]): number | undefined {
  if (cursor.nextStepId === null) return steps.length;
  if (cursor.nextStepId === undefined) return cursor.nextStep;
  const at = steps.findIndex((st) => st.def.id === cursor.nextStepId);
  return at < 0 ? undefined : at;
}

/**
 * The writes of one execution, applied strictly in order while the steps run ahead. The first failed
 * write stops the chain; flush() rethrows it so nothing is acknowledged over a missing record.
 */
class ExecutionWriter {
  private chain: Promise<void> = Promise.resolve();
  private failed = false;
  private failure: unknown;

  constructor(
    private readonly store: ExecutionStore,
    readonly executionId: string,
    /** The store applies writes in call order: issue each at once (they share a group commit). */
    private readonly ordered: boolean,
  ) {}

  record(record: StepRecord, cursor?: Execution['cursor'], finish?: StatusChange): void {
    this.push(() => this.store.recordStep(this.executionId, record, cursor, finish));
  }

  status(status: ExecutionStatus, at: number, error?: string): void {
    this.push(() => this.store.setStatus(this.executionId, status, at, error));
  }

  /** A write failed (later ones were skipped); flush() throws its error. */
  get hasFailed(): boolean {
    return this.failed;
  }

  async flush(): Promise<void> {
    await this.chain;
    if (this.failed) throw this.failure;
  }

  /** Wait for the queued writes, whatever their outcome. */
  async settle(): Promise<void> {
    await this.chain;
  }

  private push(write: () => Promise<void>): void {
    const fail = (err: unknown): void => {
      if (!this.failed) {
        this.failed = true;
        this.failure = err;
      }
    };
    if (this.ordered) {
      if (this.failed) return;
      const issued = write().catch(fail);
      this.chain = this.chain.then(() => issued);
    } else {
      this.chain = this.chain.then(() => (this.failed ? undefined : write())).catch(fail);
    }
  }
}

/**
 * How long a job of a flow with a concurrency limit is held and handled again in place while the
 * store is down, before it is given back like any other (then behind later jobs).
 */
export const ORDERED_OUTAGE_HOLD_MS = 10 * 60_000;

/** Resolves after ms, or at once when the session is stopped (the consumer then releases the job). */
function holdSlot(ms: number, signal: AbortSignal): Promise<void> {
  return delay(ms, undefined, { signal }).catch(() => undefined);
}

/**
 * A job's first delivery, with no execution yet: the fast paths (all pure steps in one write, the
 * speculative first step) may start a fresh record. A job with an error is not: a retried dead
 * letter (attempts start at 1 again, its execution is resumed, its records kept) or a stopped
 * flow's job that waited (no execution, but rare: the regular path costs a read more).
 */
function firstDelivery(job: Job): boolean {
  return job.attempts === 1 && job.lastError === undefined;
}

/** A retry delay as settings write it (formatDuration), whole seconds from one up: `850 ms`, `4s`, `1m 30s`, `2h`. */
function delayText(ms: number): string {
  return formatDuration(ms < 1_000 ? Math.round(ms) : Math.round(ms / 1_000) * 1_000);
}
