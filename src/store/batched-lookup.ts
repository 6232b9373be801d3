/**
 * Lookups by key made in one event-loop turn go to the database as one query. Under load the flow
 * runner reads one request per job, many at once. On PostgreSQL one statement per read made each a
 * round trip and a socket write of its own (a tenth of the process's CPU); on SQLite every read
 * transaction after a commit by the writer thread starts with an empty page cache, so one query
 * for many keys walks the B-tree's upper pages once instead of once per key.
 * Each caller resolves with its own row (or undefined); a failed query rejects every caller of it.
 */
export class BatchedLookup<K, V> {
  private waiting = new Map<K, Array<{ resolve(v: V | undefined): void; reject(err: unknown): void }>>();
  private scheduled = false;
  private readonly flushNow = (): void => this.flush();

  constructor(
    private readonly fetch: (keys: K[]) => Promise<Map<K, V>>,
    private readonly maxKeys = 500,
  ) {}

  get(key: K): Promise<V | undefined> {
    return new Promise<V | undefined>((resolve, reject) => {
      const list = this.waiting.get(key);
      if (list) list.push({ resolve, reject });
      else this.waiting.set(key, [{ resolve, reject }]);
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(this.flushNow);
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const all = this.waiting;
    this.waiting = new Map();
    const keys = [...all.keys()];
    for (let i = 0; i < keys.length; i += this.maxKeys) {
      const chunk = keys.slice(i, i + this.maxKeys);
      this.fetch(chunk).then(
        (found) => {
          for (const k of chunk) for (const w of all.get(k)!) w.resolve(found.get(k));
        },
        (err: unknown) => {
          for (const k of chunk) for (const w of all.get(k)!) w.reject(err);
        },
      );
    }
  }
}
