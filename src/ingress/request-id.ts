import { singleHeader } from '../auth/result.js';
import type { WebhookAuth } from '../auth/schema.js';
import { ID_RE } from '../core/flow.js';
import { scopedId, uuidv7 } from '../core/ids.js';

export { flowScopedRequestId } from '../core/ids.js';

/** The sender's x-request-id when sane (≤ 128 chars of [A-Za-z0-9._-]), else a new UUIDv7. */
export function requestIdFrom(header: string | string[] | undefined): string {
  return typeof header === 'string' && ID_RE.test(header) ? header : uuidv7();
}

/**
 * The event id a signature covers, for schemes whose senders give every event one: Standard
 * Webhooks / Svix (`webhook-id`, signed with the body), Stripe (the event's `id`) and Paddle (the
 * delivery's `notification_id`), both in the signed body. Undefined for other schemes, or when there is none.
 */
export function signedEventId(auth: WebhookAuth | undefined, headers: Record<string, string | string[] | undefined>, body: unknown): string | undefined {
  if (auth?.type === 'standard-webhooks') {
    // The id of the header set the signature was checked with (parseStandardWebhooksSignature):
    // svix-* only when there is no webhook-signature. Another id header is not signed.
    // singleHeader as the parser reads them: an empty or repeated header is no header.
    const svix = singleHeader(headers, 'webhook-signature') === undefined && singleHeader(headers, 'svix-signature') !== undefined;
    return headerValue(headers, svix ? 'svix-id' : 'webhook-id');
  }
  if ((auth?.type === 'stripe' || auth?.type === 'paddle') && body !== null && typeof body === 'object' && !Array.isArray(body)) {
    // In the signed body: Stripe's event `id`; Paddle's `notification_id` — the same for its
    // retries of a delivery, a new one when someone replays the event from Paddle (which must run).
    const id = auth.type === 'stripe' ? (body as { id?: unknown }).id : (body as { notification_id?: unknown }).notification_id;
    return typeof id === 'string' && id !== '' ? id : undefined;
  }
  return undefined;
}

/**
 * The id that makes every delivery of one event one request: the signed event id (signedEventId);
 * else, on a credential with `dedupeBySignature`, the verified signature (`signature`: the bytes
 * AuthResult gives; only the sender can make another for the same bytes, so whoever resends a
 * captured request gets the first one's id); else, for senders whose signature covers no id, the
 * header they give every delivery of an event:
 * Twilio's `I-Twilio-Idempotency-Token` (the same on each of its retries of one webhook request,
 * after a timeout or a 5xx; new for every other request), Shopify's `X-Shopify-Event-Id` (the
 * same on its retries, and on the webhooks of several subscriptions to one event: Shopify's own
 * advice for dropping duplicates), else its `X-Shopify-Webhook-Id` (the same on retries). Not
 * signed: whoever resends a captured request can change it, as with x-request-id, whose place it
 * takes; it cannot be used to drop another request (the ids are not guessable).
 */
export function senderEventId(
  auth: WebhookAuth | undefined,
  headers: Record<string, string | string[] | undefined>,
  body: unknown,
  signature?: Buffer,
): string | undefined {
  const signed = signedEventId(auth, headers, body);
  if (signed !== undefined) return signed;
  if (signature !== undefined && auth !== undefined && 'dedupeBySignature' in auth && auth.dedupeBySignature === true) {
    return `sig:${signature.toString('base64')}`;
  }
  if (auth?.type === 'twilio') return headerValue(headers, 'i-twilio-idempotency-token');
  if (auth?.type === 'shopify') return headerValue(headers, 'x-shopify-event-id') ?? headerValue(headers, 'x-shopify-webhook-id');
  return undefined;
}

function headerValue(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const value = singleHeader(headers, name);
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/**
 * The request id of a signed event: the same for every delivery of that event to this flow, so a
 * repeat (the sender's retry, or a replay of the signed request within the tolerance) is stored
 * once and runs once — what these senders ask receivers to do. Derived from flow and event id:
 * one sender fans one event out to several endpoints (two flows) with the same id.
 */
export function eventRequestId(flowId: string, eventId: string): string {
  return scopedId('evt', flowId, eventId);
}

