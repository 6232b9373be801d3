import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { type App, createApp } from '../../src/app.js';
import { type Config, loadConfig } from '../../src/config/config.js';
import { documentedAt, registerDocumented } from './documented-responses.js';

export const ROOT = path.resolve(import.meta.dirname, '../..');

export function tempDir(prefix = 'hookd-test-'): string {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

export interface RunningHookd {
  app: App;
  url: string;
  token: string;
  config: Config;
  api(method: string, url: string, body?: unknown): Promise<{ status: number; body: any }>;
  close(): Promise<void>;
}

/** hookd in this process, on a free loopback port, with its own temp DATA_DIR; `logger` to read its logs. */
export async function startHookd(env: Record<string, string> = {}, options: { logger?: pino.Logger } = {}): Promise<RunningHookd> {
  const dataDir = env.DATA_DIR ?? tempDir();
  const config = loadConfig({ LISTEN_HOST: '127.0.0.1', LISTEN_PORT: '0', DATA_DIR: dataDir, HOOKD_ADMIN_TOKEN: 'test-token', ...env });
  const app = await createApp(config, { logger: options.logger ?? pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }) });
  const url = await app.listen();
  // Alone (no cluster), an instance always knows its token.
  const token = app.adminToken!;
  const unregister = registerDocumented(url, token);
  return {
    app,
    url,
    token,
    config,
    api: (method, p, body) => adminCall(url, token, method, p, body),
    async close() {
      unregister();
      await app.close();
      if (!env.DATA_DIR) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export async function adminCall(base: string, token: string, method: string, p: string, body?: unknown) {
  const res = await fetch(base + p, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  const parsed = text ? JSON.parse(text) : undefined;
  // Every answer of an instance started here is checked against its own OpenAPI document.
  (await documentedAt(base))?.check(method, p, res.status, parsed, res.headers.get('content-type'));
  return { status: res.status, body: parsed };
}

export interface ChildHookd {
  proc: ChildProcess;
  url: string;
  exited: Promise<number | null>;
  output(): string;
}

/** hookd as a separate process (compiled dist/, as `npm start` runs it): for crash and signal tests. */
export async function spawnHookd(env: Record<string, string>): Promise<ChildHookd> {
  const proc = spawn(process.execPath, [path.join(ROOT, 'dist/src/main.js')], {
    env: { ...process.env, LISTEN_HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`hookd did not start:\n${out}`)), 20_000);
    const check = () => {
      const m = /"address":"(http:\/\/[^"]+)"/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    };
    proc.stdout!.on('data', check);
    proc.on('exit', () => {
      clearTimeout(timer);
      reject(new Error(`hookd exited during start:\n${out}`));
    });
  });
  return { proc, url, exited, output: () => out };
}

/** Poll until fn returns a truthy value (or throw after timeoutMs). */
export async function waitFor<T>(fn: () => Promise<T> | T, timeoutMs = 10_000, everyMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error('waitFor: timed out');
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
