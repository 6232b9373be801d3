import { createHash, type Hash } from 'node:crypto';
import type { WriteStream } from 'node:fs';
import { type FileHandle, mkdir, open, readdir, readFile, rename, rm, rmdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { uuidv7 } from '../core/ids.js';
import { E, HookdError, isHookdError, unavailable } from '../core/errors.js';
import type { AttachmentRef } from '../core/message.js';
import type {
  AttachmentMeta,
  AttachmentStore,
  AttachmentWriter,
  ByteRange,
  OpenedAttachment,
  SweepResult,
} from './contract.js';

/**
 * Attachments as files under DATA_DIR/attachments, one folder per UTC day of the id's UUIDv7 time:
 *
 *   attachments/2025-06-01/<id>.part   bytes being written (renamed when finished)
 *   attachments/2025-06-01/<id>        the bytes, fsynced
 *   attachments/2025-06-01/<id>.json   the AttachmentRef, fsynced
 *
 * finish(): fsync the bytes, write + fsync the .json, rename .part → <id>, fsync the folder. An
 * attachment exists only when both <id> and <id>.json do; anything else is an unfinished write the
 * sweep removes. Ids are UUIDv7 (sortable by time) and validated before they touch a path.
 */
export class FsAttachmentStore implements AttachmentStore {
  constructor(readonly dir: string) {}

  /** Folders made (and made durable) by this process: concurrent writers wait for the same fsyncs. */
  private readonly folders = new Map<string, Promise<void>>();

  async create(meta: AttachmentMeta): Promise<AttachmentWriter> {
    const id = uuidv7();
    const folder = this.folderOf(id)!;
    try {
      let fh: FileHandle;
      try {
        await this.ensureFolder(folder);
        fh = await open(path.join(folder, `${id}.part`), 'wx', 0o600);
      } catch (err) {
        if (!isNotFound(err)) throw err;
        // The folder went away (a sweep of an emptied day): make it again.
        this.folders.delete(folder);
        await this.ensureFolder(folder);
        fh = await open(path.join(folder, `${id}.part`), 'wx', 0o600);
      }
      return new FsAttachmentWriter(id, folder, fh, meta);
    } catch (err) {
      throw unavailable('store', err);
    }
  }

  private ensureFolder(folder: string): Promise<void> {
    let ready = this.folders.get(folder);
    if (ready === undefined) {
      ready = (async () => {
        const created = await mkdir(folder, { recursive: true, mode: 0o700 });
        // A new folder is an entry in its parent: make the chain durable before files in it are.
        if (created !== undefined) {
          for (let d = folder; ; d = path.dirname(d)) {
            await fsyncDir(path.dirname(d));
            if (d === created || path.dirname(d) === d) break;
          }
        }
      })();
      ready.catch(() => this.folders.delete(folder));
      this.folders.set(folder, ready);
    }
    return ready;
  }

  async open(id: string, range?: ByteRange): Promise<OpenedAttachment | undefined> {
    const folder = this.folderOf(id);
    if (folder === undefined) return undefined;
    let ref: AttachmentRef;
    let fh: FileHandle;
    try {
      ref = JSON.parse(await readFile(path.join(folder, `${id}.json`), 'utf8')) as AttachmentRef;
      // Opened now: the bytes stay readable even if the attachment is deleted meanwhile.
      fh = await open(path.join(folder, id), 'r');
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw unavailable('store', err);
    }
    const start = Math.max(range?.start ?? 0, 0);
    const end = Math.min(range?.end ?? ref.size - 1, ref.size - 1);
    if (start > end) {
      await fh.close();
      return { ref, stream: Readable.from([]) };
    }
    const stream = fh.createReadStream({ start, end });
    return { ref, stream };
  }

  async delete(ids: readonly string[]): Promise<number> {
    let removed = 0;
    for (const id of ids) {
      const folder = this.folderOf(id);
      if (folder === undefined) continue;
      if (await removeFiles(folder, id)) removed++;
    }
    return removed;
  }

  async sweep(isReferenced: (id: string) => Promise<boolean>, olderThanMs: number): Promise<SweepResult> {
    const result: SweepResult = { scanned: 0, removed: 0, freedBytes: 0 };
    const cutoff = Date.now() - olderThanMs;
    let days: string[];
    try {
      days = await readdir(this.dir);
    } catch (err) {
      if (isNotFound(err)) return result;
      throw unavailable('store', err);
    }
    for (const day of days.filter((d) => DAY.test(d)).sort()) {
      const folder = path.join(this.dir, day);
      let names: string[];
      try {
        names = await readdir(folder);
      } catch (err) {
        if (isNotFound(err)) continue;
        throw unavailable('store', err);
      }
      const byId = new Map<string, Set<string>>();
      for (const name of names) {
        const id = name.replace(/\.(part|json)$/, '');
        if (!UUID.test(id)) continue;
        let kinds = byId.get(id);
        if (kinds === undefined) byId.set(id, (kinds = new Set()));
        kinds.add(name.slice(id.length) || 'data');
      }
      for (const [id, kinds] of byId) {
        result.scanned++;
        // The newest of the id's files decides its age: an upload in progress keeps touching .part.
        let newest = 0;
        let bytes = 0;
        for (const kind of kinds) {
          const s = await stat(path.join(folder, kind === 'data' ? id : id + kind)).catch(() => undefined);
          if (s === undefined) continue;
          newest = Math.max(newest, s.mtimeMs);
          if (kind !== '.json') bytes += s.size;
        }
        if (newest === 0 || newest > cutoff) continue;
        const complete = kinds.has('data') && kinds.has('.json');
        if (complete && (await isReferenced(id))) continue;
        if (await removeFiles(folder, id)) {
          result.removed++;
          result.freedBytes += bytes;
        }
      }
      // Folders of past days that are now empty go too (today's stays: writers are creating in it).
      if (day < dayOf(Date.now())) {
        await rmdir(folder).then(
          () => this.folders.delete(folder),
          () => undefined,
        );
      }
    }
    return result;
  }

  /** The folder of a UUIDv7 id, undefined for anything else (never a path from user input). */
  private folderOf(id: string): string | undefined {
    if (!UUID.test(id)) return undefined;
    return path.join(this.dir, dayOf(uuidv7Time(id)));
  }
}

/** The embedded store: DATA_DIR/attachments. */
export function createFsAttachmentStore(dataDir: string): FsAttachmentStore {
  return new FsAttachmentStore(path.join(dataDir, 'attachments'));
}

type WriterState = 'open' | 'finishing' | 'finished' | 'aborted';

class FsAttachmentWriter implements AttachmentWriter {
  private bytes = 0;
  private state: WriterState = 'open';
  private readonly hash: Hash = createHash('sha256');
  private readonly out: WriteStream;
  private failure: Error | undefined;
  /** Background flush of a large file while it is written (one at a time). */
  private flushing: Promise<void> | undefined;
  private finishing: Promise<AttachmentRef> | undefined;
  private unflushed = 0;
  private readonly maxBytes: number;

  constructor(
    readonly id: string,
    private readonly folder: string,
    private readonly fh: FileHandle,
    private readonly meta: AttachmentMeta,
  ) {
    this.maxBytes = meta.maxBytes ?? Number.POSITIVE_INFINITY;
    // 256 KiB lets fs coalesce small network chunks into few writes (writev).
    this.out = fh.createWriteStream({ highWaterMark: 256 * 1024, autoClose: false, emitClose: true });
    this.out.on('error', (err) => {
      this.failure ??= err;
    });
  }

  get size(): number {
    return this.bytes;
  }

  async write(chunk: Buffer): Promise<void> {
    if (this.state !== 'open') throw new Error(`attachment ${this.id} is ${this.state}`);
    if (this.failure) throw this.fail(this.failure);
    if (this.bytes + chunk.length > this.maxBytes) {
      await this.abort();
      throw new HookdError(E.PAYLOAD_TOO_LARGE, this.maxBytes);
    }
    this.bytes += chunk.length;
    this.hash.update(chunk);
    if (!this.out.write(chunk)) await this.drained();
    this.unflushed += chunk.length;
    if (this.unflushed >= FLUSH_EVERY && this.flushing === undefined) {
      // Large files: flush to disk while the rest still arrives, so finish() waits for the tail
      // only, not for a gigabyte of dirty pages (disk and network overlap).
      this.unflushed = 0;
      this.flushing = this.fh
        .datasync()
        .catch((err: Error) => {
          this.failure ??= err;
        })
        .finally(() => {
          this.flushing = undefined;
        });
    }
    if (this.failure) throw this.fail(this.failure);
  }

  finish(): Promise<AttachmentRef> {
    if (this.state !== 'open') return Promise.reject(new Error(`attachment ${this.id} is ${this.state}`));
    this.state = 'finishing';
    this.finishing = this.complete();
    return this.finishing;
  }

  private async complete(): Promise<AttachmentRef> {
    try {
      await new Promise<void>((resolve, reject) => {
        this.out.end((err?: Error | null) => (err ? reject(err) : resolve()));
      });
      await this.flushing;
      if (this.failure) throw this.failure;
      await this.fh.sync();
      await this.release();
      await this.fh.close();
      const ref: AttachmentRef = {
        id: this.id,
        ...(this.meta.field !== undefined ? { field: this.meta.field } : {}),
        ...(this.meta.filename !== undefined ? { filename: this.meta.filename } : {}),
        contentType: this.meta.contentType,
        size: this.bytes,
        sha256: this.hash.digest('hex'),
      };
      const metaFile = await open(path.join(this.folder, `${this.id}.json`), 'w', 0o600);
      try {
        await metaFile.writeFile(JSON.stringify(ref));
        await metaFile.sync();
      } finally {
        await metaFile.close();
      }
      await rename(path.join(this.folder, `${this.id}.part`), path.join(this.folder, this.id));
      await fsyncDir(this.folder);
      if (this.state === 'finishing') this.state = 'finished';
      return ref;
    } catch (err) {
      await this.discard();
      throw isHookdError(err) ? err : unavailable('store', err);
    }
  }

  async abort(): Promise<void> {
    if (this.state === 'aborted') return;
    const finishing = this.state === 'finishing' ? this.finishing : undefined;
    this.state = 'aborted';
    // Let a finish() in progress settle first, so no file appears after the removal.
    await finishing?.catch(() => undefined);
    await this.discard();
  }

  private async discard(): Promise<void> {
    this.state = 'aborted';
    await this.flushing;
    await this.release();
    await this.fh.close().catch(() => undefined);
    // Best effort: what cannot be removed now is an orphan the sweep takes later.
    await removeFiles(this.folder, this.id).catch(() => undefined);
  }

  /** The stream holds a reference on the FileHandle: close() would wait for it forever. */
  private release(): Promise<void> {
    if (this.out.closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.out.once('close', () => resolve());
      this.out.destroy();
    });
  }

  private drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.out.off('drain', done);
        this.out.off('error', done);
        this.out.off('close', done);
        resolve();
      };
      this.out.on('drain', done);
      this.out.on('error', done);
      this.out.on('close', done);
    });
  }

  private fail(err: Error): HookdError {
    void this.abort();
    return unavailable('store', err);
  }
}

const FLUSH_EVERY = 32 * 1024 * 1024;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const DAY = /^\d{4}-\d{2}-\d{2}$/;

/** Milliseconds since the epoch encoded in a UUIDv7's first 48 bits. */
function uuidv7Time(id: string): number {
  return parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
}

function dayOf(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** Remove an id's files (data, metadata, partial); true when any existed. */
async function removeFiles(folder: string, id: string): Promise<boolean> {
  let any = false;
  for (const name of [id, `${id}.json`, `${id}.part`]) {
    try {
      await rm(path.join(folder, name));
      any = true;
    } catch (err) {
      if (!isNotFound(err)) throw unavailable('store', err);
    }
  }
  return any;
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}
