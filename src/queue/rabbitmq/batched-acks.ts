import type { Channel } from 'rabbitmq-client';

/**
 * Acks of one channel, sent once per event-loop turn: the acked tags below the lowest tag still
 * open go as ONE basic.ack with `multiple` (a quorum queue logs every settlement, so fewer, larger
 * settlements cost the broker about half the CPU per message: `npm run bench:acks`); the others
 * go one by one. `multiple` acks every unacked tag up to it, so every tag delivered on the channel
 * must be known here (opened) until it is acked through this class; everything else is handed
 * back with one nack of the whole channel (stop()) or by its close.
 */
export class BatchedAcks {
  /** Delivered and not yet acked or handed back. */
  private readonly open = new Set<number>();
  private pending: number[] = [];
  private scheduled = false;
  private readonly flushNow = (): void => this.flush();

  constructor(private readonly ch: Channel) {}

  /** A delivery of this channel that will be acked or forgotten later. */
  opened(tag: number): void {
    this.open.add(tag);
  }

  /** Ack at the end of this turn. False when the channel is already gone (the broker requeued it). */
  ack(tag: number): boolean {
    if (!this.ch.active) return false;
    this.pending.push(tag);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushNow);
    }
    return true;
  }

  /**
   * Requeue one delivery now (basic.nack requeue): no longer open here, so later `multiple` acks
   * pass over it (a requeued message is no longer outstanding on the channel). False when the
   * channel is already gone (the broker requeued it anyway).
   */
  handBack(tag: number): boolean {
    this.open.delete(tag);
    if (!this.ch.active) return false;
    try {
      this.ch.basicNack({ deliveryTag: tag, requeue: true });
      return true;
    } catch {
      return false; // closed meanwhile: requeued by the broker
    }
  }

  /** Send what is pending now (before a nack of everything, a channel close). */
  flush(): void {
    this.scheduled = false;
    const acked = this.pending;
    if (acked.length === 0) return;
    this.pending = [];
    for (const tag of acked) this.open.delete(tag);
    if (!this.ch.active) return; // the broker requeued them: delivered again
    let lowestOpen = Number.POSITIVE_INFINITY;
    for (const tag of this.open) if (tag < lowestOpen) lowestOpen = tag;
    let upTo = 0;
    try {
      for (const tag of acked) {
        if (tag < lowestOpen) upTo = Math.max(upTo, tag);
        else this.ch.basicAck({ deliveryTag: tag });
      }
      if (upTo > 0) this.ch.basicAck({ deliveryTag: upTo, multiple: true });
    } catch {
      // The channel closed meanwhile: the broker requeues what it had not seen acked.
    }
  }
}
