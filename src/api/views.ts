import { maskFlowSecrets } from '../auth/flow-secrets.js';
import type { Execution } from '../core/execution.js';
import type { Flow } from '../core/flow.js';

const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());

/** A flow for API answers: secrets masked (except `reveal`: just created, shown this once). */
export function flowView(flow: Flow, publicUrl: string, reveal?: ReadonlySet<string>) {
  return { ...maskFlowSecrets(flow, reveal), webhookUrl: `${publicUrl}/hook/${encodeURIComponent(flow.id)}` };
}

export function executionView(e: Execution) {
  return {
    id: e.id,
    requestId: e.requestId,
    flowId: e.flowId,
    status: e.status,
    attempts: e.attempts,
    createdAt: iso(e.createdAt),
    updatedAt: iso(e.updatedAt),
    finishedAt: iso(e.finishedAt),
    queueDelayMs: e.queueDelayMs,
    error: e.error,
    steps: e.steps.map((s) => ({
      ...s,
      startedAt: iso(s.startedAt),
      finishedAt: iso(s.finishedAt),
      durationMs: Math.round((s.finishedAt - s.startedAt) * 1000) / 1000,
    })),
  };
}
