import { v7 as uuidv7 } from 'uuid';
import { expect } from 'vitest';
import { HookdError } from '../../src/core/errors.js';
import type { ReceivedMessage } from '../../src/core/message.js';

/** Shared by the conformance suites: message factory, polling, deferreds, expected rejections. */

let seq = 0;

export function makeMessage(overrides: Partial<ReceivedMessage> = {}): ReceivedMessage {
  seq++;
  const raw = Buffer.from(JSON.stringify({ n: seq }));
  return {
    id: uuidv7(),
    flowId: 'flow-a',
    receivedAt: Date.now() + 0.25,
    method: 'POST',
    path: '',
    query: {},
    headers: { 'content-type': 'application/json' },
    contentType: 'application/json',
    body: { n: seq },
    rawBody: raw,
    clientIp: '127.0.0.1',
    ...overrides,
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Poll until cond() holds; fail with `what` after timeoutMs. */
export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(2);
  }
}

export interface Deferred<T = void> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(err: unknown): void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** The HookdError a promise rejects with (the test fails if it resolves, or rejects otherwise). */
export async function rejection(p: Promise<unknown>): Promise<HookdError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(HookdError);
  return err as HookdError;
}
