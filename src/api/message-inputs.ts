import { type Execution, MESSAGE_INPUT } from '../core/execution.js';
import { toMessageView, type MessageView, type ReceivedMessage } from '../core/message.js';
import { recordJson } from '../flow/truncate.js';
import type { RequestStore } from '../store/contracts.js';

/**
 * Executions as the API shows them: a step input recorded as MESSAGE_INPUT (the received message,
 * not stored twice) becomes the message's JSON, truncated to EXECUTION_DATA_LIMIT as the runner
 * would have recorded it. The requests are read a few at a time (READ_AT_ONCE; concurrent reads
 * share one query): a round trip per few executions, so that a page never holds every body at
 * once. The retention purge removes executions with their requests; should a request be gone all the same,
 * the input is left out.
 */
export async function withMessageInputs(
  executions: readonly Execution[],
  requests: RequestStore,
  limit: number,
  view: (m: ReceivedMessage) => MessageView = toMessageView,
): Promise<Execution[]> {
  // A few requests at a time: each is read whole (bodies up to PAYLOAD_SIZE_LIMIT) and kept only
  // as its truncated JSON, so a page of 1,000 executions never holds 1,000 bodies at once.
  const out: Execution[] = [];
  for (let i = 0; i < executions.length; i += READ_AT_ONCE) {
    out.push(...(await withInputs(executions.slice(i, i + READ_AT_ONCE), requests, limit, view)));
  }
  return out;
}

const READ_AT_ONCE = 16;

function withInputs(executions: readonly Execution[], requests: RequestStore, limit: number, view: (m: ReceivedMessage) => MessageView): Promise<Execution[]> {
  return Promise.all(
    executions.map(async (e) => {
      if (!e.steps.some((s) => s.input === MESSAGE_INPUT)) return e;
      const message = await requests.get(e.requestId);
      const json = message === undefined ? undefined : recordJson(view(message), limit);
      return {
        ...e,
        steps: e.steps.map((s) => {
          if (s.input !== MESSAGE_INPUT) return s;
          const { input: _stored, ...rest } = s;
          return json === undefined ? rest : { ...rest, input: json };
        }),
      };
    }),
  );
}
