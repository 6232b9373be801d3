import { E, HookdError, isHookdError, unavailable } from '../core/errors.js';
import type { AttachmentRef, ReceivedMessage } from '../core/message.js';
import type { AttachmentStore, AttachmentWriter } from './contract.js';

/** A replayed copy's own files, and the ids to remove if the copy is not stored after all. */
export interface CopiedFiles {
  fields: Pick<ReceivedMessage, 'attachments' | 'rawAttachment'>;
  ids: string[];
}

/**
 * Copies of a request's files in the attachment store (multipart files, a binary body, a large raw
 * body), for a replayed copy: a file belongs to one request — its retention and deletion follow
 * that request — so a copy gets files of its own. Streamed, one file at a time; each copy's
 * SHA-256 must be the original's: a file gone is ATTACHMENT_GONE, one changed or damaged at rest
 * ATTACHMENT_CHANGED (409s), never a silent difference; the store failing is a 503. A file
 * referenced twice (a binary body: attachments[0] and rawAttachment) is copied once. On failure
 * the copies made so far are removed.
 */
export async function copyFiles(store: AttachmentStore | undefined, m: ReceivedMessage): Promise<CopiedFiles> {
  const refs = [...(m.attachments ?? []), ...(m.rawAttachment ? [m.rawAttachment] : [])];
  if (refs.length === 0) return { fields: {}, ids: [] };
  if (store === undefined) throw new HookdError(E.CONFLICT, `Request ${m.id} has files, and this instance has no attachment store`);
  const copies = new Map<string, AttachmentRef>();
  const ids: string[] = [];
  try {
    for (const ref of refs) {
      if (copies.has(ref.id)) continue;
      copies.set(ref.id, await copyOne(store, m.id, ref, ids));
    }
  } catch (err) {
    await store.delete(ids).catch(() => undefined); // else the sweep takes them (unreferenced)
    throw isHookdError(err) ? err : unavailable('store', err);
  }
  const fields: CopiedFiles['fields'] = {};
  if (m.attachments) fields.attachments = m.attachments.map((a) => copies.get(a.id)!);
  if (m.rawAttachment) fields.rawAttachment = copies.get(m.rawAttachment.id)!;
  return { fields, ids };
}

async function copyOne(store: AttachmentStore, requestId: string, ref: AttachmentRef, ids: string[]): Promise<AttachmentRef> {
  const opened = await store.open(ref.id);
  if (opened === undefined) throw new HookdError(E.ATTACHMENT_GONE, requestId, ref.id);
  let writer: AttachmentWriter | undefined;
  try {
    writer = await store.create({
      contentType: ref.contentType,
      ...(ref.field !== undefined ? { field: ref.field } : {}),
      ...(ref.filename !== undefined ? { filename: ref.filename } : {}),
    });
    ids.push(writer.id);
    for await (const chunk of opened.stream) await writer.write(chunk as Buffer);
    const copy = await writer.finish();
    if (copy.sha256 !== ref.sha256 || copy.size !== ref.size) throw new HookdError(E.ATTACHMENT_CHANGED, requestId, ref.id);
    return copy;
  } catch (err) {
    opened.stream.destroy();
    await writer?.abort();
    // Removed while it was read (retention, a PostgreSQL store's row deleted): gone, as if before.
    throw isHookdError(err) && err.statusCode === 404 ? new HookdError(E.ATTACHMENT_GONE, requestId, ref.id) : err;
  }
}
