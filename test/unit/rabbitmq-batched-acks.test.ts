import type { Channel } from 'rabbitmq-client';
import { describe, expect, it } from 'vitest';
import { BatchedAcks } from '../../src/queue/rabbitmq/batched-acks.js';

/** A channel that records the acks it is asked to send. */
function fakeChannel() {
  const sent: Array<{ deliveryTag: number; multiple?: boolean }> = [];
  const ch = { active: true, basicAck: (a: { deliveryTag: number; multiple?: boolean }) => void sent.push(a) };
  return { ch: ch as unknown as Channel & { active: boolean }, sent };
}

describe('BatchedAcks', () => {
  it('acks a finished prefix with one multiple ack, the rest one by one, never a tag still open', () => {
    const { ch, sent } = fakeChannel();
    const acks = new BatchedAcks(ch);
    for (let tag = 1; tag <= 6; tag++) acks.opened(tag);
    // 1, 2, 3 and 5 finished; 4 and 6 still running.
    for (const tag of [3, 1, 5, 2]) expect(acks.ack(tag)).toBe(true);
    acks.flush();
    expect(sent).toEqual([{ deliveryTag: 5 }, { deliveryTag: 3, multiple: true }]);
    sent.length = 0;
    acks.ack(6);
    acks.flush();
    expect(sent).toEqual([{ deliveryTag: 6 }]); // 4 is still open: no multiple over it
    sent.length = 0;
    acks.ack(4);
    acks.flush();
    expect(sent).toEqual([{ deliveryTag: 4, multiple: true }]);
  });

  it('a tag still open is never covered by a multiple ack, and nothing is sent for a closed channel', () => {
    const { ch, sent } = fakeChannel();
    const acks = new BatchedAcks(ch);
    for (let tag = 1; tag <= 3; tag++) acks.opened(tag);
    acks.ack(2); // 1 is still open: 2 goes alone
    acks.flush();
    expect(sent).toEqual([{ deliveryTag: 2 }]);
    sent.length = 0;
    acks.ack(3);
    ch.active = false;
    acks.flush();
    expect(sent).toEqual([]);
    expect(acks.ack(3)).toBe(false);
  });

  it('sends once per event-loop turn on its own', async () => {
    const { ch, sent } = fakeChannel();
    const acks = new BatchedAcks(ch);
    for (let tag = 1; tag <= 50; tag++) acks.opened(tag);
    for (let tag = 1; tag <= 50; tag++) acks.ack(tag);
    expect(sent).toEqual([]);
    await new Promise((r) => setImmediate(r));
    expect(sent).toEqual([{ deliveryTag: 50, multiple: true }]);
  });
});
