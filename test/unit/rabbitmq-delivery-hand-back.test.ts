import type { Channel } from 'rabbitmq-client';
import { describe, expect, it } from 'vitest';
import { RabbitDelivery, type DeliveryHost } from '../../src/queue/rabbitmq/delivery.js';

/** A delivery on a fake channel; records what reached the host. */
function setup(opts: { active: boolean; returns?: number }) {
  const events: string[] = [];
  const ch = { active: opts.active } as unknown as Channel;
  const host: DeliveryHost = {
    logger: { warn: () => {}, info: () => {}, error: () => {} } as unknown as DeliveryHost['logger'],
    publishRetry: async () => void events.push('publishRetry'),
    publishDead: async () => void events.push('publishDead'),
    track: () => {},
    settled: () => void events.push('settled'),
    ack: () => (events.push('ack'), true),
    handBack: (c) => (events.push('nack-requeue'), c.active),
    deliveryLimit: 20,
  };
  const d = new RabbitDelivery({ id: 'j', flowId: 'f', requestId: 'r', attempts: 1, maxAttempts: 3, enqueuedAt: 0 }, ch, 7, host, opts.returns ?? 0);
  return { d, events };
}

describe('RabbitDelivery.handBack (a job of a flow no longer held here)', () => {
  it('requeues the message at its place once; later settles are no-ops', async () => {
    const { d, events } = setup({ active: true });
    expect(d.handBack()).toBe(true);
    expect(d.handBack()).toBe(true);
    await d.ack();
    d.autoAck();
    await expect(d.requeue('x')).resolves.toBe(true);
    expect(events).toEqual(['nack-requeue', 'settled']);
  });

  it('on a channel already gone (the broker requeued the message): no throw, nothing sent, settled once', async () => {
    const { d, events } = setup({ active: false });
    expect(d.handBack()).toBe(true);
    d.autoAck();
    expect(events).toEqual(['nack-requeue', 'settled']); // the host's nack finds the channel gone and sends nothing
  });

  it('declines a message the broker took back half its delivery limit already (requeue() it instead)', async () => {
    const { d, events } = setup({ active: true, returns: 10 });
    expect(d.handBack()).toBe(false);
    expect(events).toEqual([]);
    await expect(d.requeue('not held here')).resolves.toBe(true);
    expect(events).toEqual(['publishRetry', 'ack', 'settled']);
  });
});
