/**
 * The first connection to a PostgreSQL that never answers (a host that drops packets, a firewall):
 * the start says where and how long it waited, not only pg's "Connection terminated
 * unexpectedly" (a new user's review).
 */
import net from 'node:net';
import { expect, it } from 'vitest';
import { openPostgresStores } from '../../src/store/postgres/index.js';
import { DATABASE_URL } from './pg-schema.js';

it('a server that accepts the connection and never answers: a 503 naming the address and the wait', async () => {
  const sockets: net.Socket[] = [];
  const silent = net.createServer((s) => void sockets.push(s));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const port = (silent.address() as net.AddressInfo).port;
  const url = new URL(DATABASE_URL);
  url.host = `127.0.0.1:${port}`;
  try {
    const err = await openPostgresStores({ connectionString: url.toString(), connectTimeoutMs: 500, logger: { warn: () => {}, error: () => {}, info: () => {} } }).then(
      () => undefined,
      (e: unknown) => e as { statusCode?: number; message: string },
    );
    expect(err?.statusCode).toBe(503);
    expect(err?.message).toMatch(new RegExp(`^Storage is unavailable: PostgreSQL at 127\\.0\\.0\\.1:${port} did not answer within 0\\.5 s \\(a host that drops packets, or a firewall\\?\\): `));
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => silent.close(() => resolve()));
  }
});

it('a server (or proxy in front of it) that closes the connection at once: said so, not "did not answer within 5 s"', async () => {
  // What a TCP proxy or load balancer does whose PostgreSQL behind it is down: accept, then close.
  const closing = net.createServer((s) => s.destroy());
  await new Promise<void>((resolve) => closing.listen(0, '127.0.0.1', resolve));
  const port = (closing.address() as net.AddressInfo).port;
  const url = new URL(DATABASE_URL);
  url.host = `127.0.0.1:${port}`;
  try {
    const t0 = Date.now();
    const err = await openPostgresStores({ connectionString: url.toString(), connectTimeoutMs: 5_000, logger: { warn: () => {}, error: () => {}, info: () => {} } }).then(
      () => undefined,
      (e: unknown) => e as { statusCode?: number; message: string },
    );
    expect(Date.now() - t0).toBeLessThan(4_000);
    expect(err?.statusCode).toBe(503);
    expect(err?.message).not.toMatch(/did not answer within/);
    expect(err?.message).toMatch(new RegExp(`^Storage is unavailable: PostgreSQL at 127\\.0\\.0\\.1:${port} closed the connection before answering`));
  } finally {
    await new Promise<void>((resolve) => closing.close(() => resolve()));
  }
});
