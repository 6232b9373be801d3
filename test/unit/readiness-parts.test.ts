import { describe, expect, it } from 'vitest';
import { checkEach } from '../../src/backends.js';
import { READY_CHECK_TIMEOUT_MS } from '../../src/http/ops-routes.js';

/**
 * PostgreSQL + RabbitMQ: /readyz (and hookd_ready) must say which of the two does not answer; a
 * silent one gave only "no answer from the store or queue within 2000 ms".
 */
describe('checkEach', () => {
  const never = () => new Promise<void>(() => {});
  const ok = async () => {};

  it('names the part that gave no answer, before the probe gives up on the whole', async () => {
    const t0 = Date.now();
    const err = await checkEach([
      { kind: 'store', name: 'PostgreSQL', check: ok },
      { kind: 'queue', name: 'RabbitMQ', check: never },
    ]).then(
      () => undefined,
      (e: unknown) => e as { statusCode: number; code: string; message: string },
    );
    expect(Date.now() - t0).toBeLessThan(READY_CHECK_TIMEOUT_MS);
    expect(err).toMatchObject({ statusCode: 503, code: 'QUEUE_UNAVAILABLE' });
    expect(err!.message).toMatch(/^Queue is unavailable: RabbitMQ gave no answer within \d+ ms$/);
  });

  it('passes a failure through as it is, and resolves when every part does', async () => {
    await expect(checkEach([{ kind: 'store', name: 'PostgreSQL', check: async () => { throw new Error('boom'); } }])).rejects.toThrow('boom');
    await expect(checkEach([{ kind: 'store', name: 'PostgreSQL', check: ok }, { kind: 'queue', name: 'RabbitMQ', check: ok }])).resolves.toBeUndefined();
  });
});
