import { createHmac } from 'node:crypto';
import type { AttachmentStore } from '../attachments/contract.js';
import { copyFiles } from '../attachments/copy-files.js';
import { preciseNow } from '../core/clock.js';
import { isHookdError } from '../core/errors.js';
import type { Flow } from '../core/flow.js';
import { renameOriginAttachment, REPLAY_OF_HEADER, type ReceivedMessage } from '../core/message.js';
import type { AcceptOutcome, RequestStore } from '../store/contracts.js';

export interface ReplayerDeps {
  requests: RequestStore;
  /** See bulkCopyId. */
  replayIdKey: Buffer;
  defaultMaxAttempts: number;
  /** Where requests' files are: a replayed copy gets copies of them. */
  attachments?: AttachmentStore;
}

/**
 * A replay: a copy of a stored request with its own id and time of receipt, the same method, path,
 * query, headers (plus `x-hookd-replay-of: <id>`) and exact body bytes, and files of its own
 * (copy-files.ts), accepted like a webhook — committed with its job (distributed: confirmed by the
 * broker) — for the target flow to run as it is defined now.
 */
export class Replayer {
  constructor(private readonly deps: ReplayerDeps) {}

  /** bulkCopyId under this cluster's key. */
  bulkCopyId(originalId: string, flowId: string, until: number): string {
    return bulkCopyId(this.deps.replayIdKey, originalId, flowId, until);
  }

  /** Accept a copy of `original` with this id into `flow`: 'stored', or 'duplicate' when a copy with this id is stored already. */
  async replay(original: ReceivedMessage, flow: Flow, id: string): Promise<AcceptOutcome> {
    return this.accept(await this.prepare(original, flow, id));
  }

  /** The copy, its files copied (ATTACHMENT_GONE / ATTACHMENT_CHANGED when they cannot be). */
  async prepare(original: ReceivedMessage, flow: Flow, id: string): Promise<PreparedCopy> {
    const files = await copyFiles(this.deps.attachments, original);
    const message: ReceivedMessage = {
      ...original,
      ...files.fields,
      // payloadType base64 names the raw body's file in the body: the copy's names its own.
      body: renameOriginAttachment(original.body, original.rawAttachment?.id, files.fields.rawAttachment?.id),
      id,
      flowId: flow.id,
      receivedAt: preciseNow(),
      headers: { ...original.headers, [REPLAY_OF_HEADER]: original.id },
    };
    return { message, replayOf: original.id, flow, fileIds: files.ids };
  }

  /**
   * Accept a prepared copy. Its copied files are removed unless it was stored — or may have been
   * (a 503 after the write: the attachment sweep removes them later if no request references them).
   */
  async accept(p: PreparedCopy): Promise<AcceptOutcome> {
    let keep = false;
    try {
      const outcome = await this.deps.requests.accept(p.message, {
        maxAttempts: p.flow.retry?.maxAttempts ?? this.deps.defaultMaxAttempts,
        includeRequest: p.flow.jobMessage?.includeRequest === true,
      });
      keep = outcome.kind === 'stored';
      return outcome;
    } catch (err) {
      keep = isHookdError(err) && err.statusCode === 503 && err.nothingStored !== true;
      throw err;
    } finally {
      if (!keep) await this.discard(p);
    }
  }

  /** A prepared copy that will not be accepted: its files go. Never throws. */
  async discard(p: PreparedCopy): Promise<void> {
    if (p.fileIds.length > 0) await this.deps.attachments?.delete(p.fileIds).catch(() => undefined);
  }
}

export interface PreparedCopy {
  message: ReceivedMessage;
  /** The original's id. */
  replayOf: string;
  flow: Flow;
  /** Its files in the attachment store, made for it. */
  fileIds: string[];
}

/** Whether a request is itself a replayed copy. */
export const isReplay = (m: ReceivedMessage): boolean => m.headers[REPLAY_OF_HEADER] !== undefined;

/**
 * The id of a bulk replay's copy: the same original replayed into the same flow by calls with the
 * same `until` gets the same id, so a call repeated stores nothing twice. Keyed (HMAC under a key
 * derived from the master key): a sender, who chooses its own request ids, cannot compute a future
 * copy's id and take it first.
 */
export function bulkCopyId(key: Buffer, originalId: string, flowId: string, until: number): string {
  return `rp-${createHmac('sha256', key).update(`${flowId}\n${until}\n${originalId}`).digest('base64url').slice(0, 32)}`;
}
