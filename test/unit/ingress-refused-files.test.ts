import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { FsAttachmentStore } from '../../src/attachments/fs-store.js';
import { unavailable, type HookdError } from '../../src/core/errors.js';
import { normalizeFlow } from '../../src/core/flow.js';
import { installErrorHandling } from '../../src/http/error-handler.js';
import { hookRoutes } from '../../src/ingress/hook-routes.js';
import type { RequestStore } from '../../src/store/contracts.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** Files (finished attachments) under the store's folder, at any depth. */
function filesIn(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => e.name);
}

async function uploadRefusedWith(err: HookdError): Promise<{ status: number; files: string[] }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'hookd-refused-'));
  dirs.push(dir);
  const attachments = new FsAttachmentStore(dir);
  const app = Fastify();
  installErrorHandling(app);
  const flow = normalizeFlow({ steps: [] }, 'uploads', new Date());
  const requests = {
    accept: async () => {
      throw err;
    },
  } as unknown as RequestStore;
  await app.register(hookRoutes, { activeFlow: () => flow, requests, payloadSizeLimit: 1024 * 1024, attachments, defaultMaxAttempts: 1 });
  const boundary = 'b0undary';
  const body = [`--${boundary}`, 'Content-Disposition: form-data; name="file"; filename="a.bin"', 'Content-Type: application/octet-stream', '', 'x'.repeat(50_000), `--${boundary}--`, ''].join('\r\n');
  const res = await app.inject({ method: 'POST', url: '/hook/uploads', headers: { 'content-type': `multipart/form-data; boundary=${boundary}` }, payload: body });
  await app.close();
  return { status: res.statusCode, files: filesIn(dir) };
}

describe('files of a request the store refused', () => {
  it('stay when the 503 may hide a commit (the sweep takes them if no request references them)', async () => {
    const { status, files } = await uploadRefusedWith(unavailable('store', 'the writer died after the commit'));
    expect(status).toBe(503);
    expect(files.length).toBeGreaterThan(0);
  });

  it('are deleted at once when the store refused before writing anything (overloaded, closed)', async () => {
    const { status, files } = await uploadRefusedWith(unavailable('store', 'too many requests waiting').beforeAnyWrite());
    expect(status).toBe(503);
    expect(files).toEqual([]);
  });
});
