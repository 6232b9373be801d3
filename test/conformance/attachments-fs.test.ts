import { mkdtempSync, readdirSync, rmSync, statSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createFsAttachmentStore } from '../../src/attachments/fs-store.js';
import { sleep } from './helpers.js';
import { describeAttachmentConformance } from './attachments.suite.js';

/** The embedded attachment store (files under DATA_DIR/attachments), one temporary DATA_DIR per test. */
describeAttachmentConformance('fs', async () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'hookd-att-'));
  const store = createFsAttachmentStore(dataDir);
  const files = () => filesUnder(store.dir).map((f) => path.relative(store.dir, f));
  return {
    store,
    async age(id, ms) {
      const mine = filesUnder(store.dir).filter((f) => path.basename(f).startsWith(id));
      // write() resolves once the stream took the bytes: wait until they reached a .part file, or
      // that late write would set its mtime back to now after utimes below.
      const deadline = Date.now() + 2_000;
      for (const f of mine.filter((f) => f.endsWith('.part'))) {
        while (statSync(f).size === 0 && Date.now() < deadline) await sleep(2);
      }
      const t = (Date.now() - ms) / 1000;
      for (const f of mine) utimesSync(f, t, t);
    },
    async leftovers() {
      return files();
    },
    async close() {
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
});

/** Every file (not folder) under dir, recursively; [] when dir does not exist. */
function filesUnder(dir: string): string[] {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.flatMap((e) => (e.isDirectory() ? filesUnder(path.join(dir, e.name)) : [path.join(dir, e.name)]));
}
