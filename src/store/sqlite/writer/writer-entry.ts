import { createHash } from 'node:crypto';
import { existsSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** What `new Worker(entry, { eval })` runs for the writer thread. */
export interface WriterEntry {
  entry: URL | string;
  eval: boolean;
}

let fromSources: Promise<WriterEntry> | undefined;

/**
 * Compiled (dist/…/writer-thread.js): the file itself, under plain node.
 *
 * From sources (vitest, tsx: this file is .ts), the worker cannot load .ts on its own, and
 * `execArgv: ['--import', 'tsx']` does not apply tsx's hooks to a worker's entry on Node 20. So the
 * writer is bundled with esbuild (which tsx and vite ship) once per process, leaving only the native
 * better-sqlite3 external: a worker then starts in ~60 ms instead of ~500 ms with tsx. If esbuild is
 * not available, a bootstrap registers tsx's ESM API inside the worker before importing the writer.
 */
export function writerEntry(): Promise<WriterEntry> {
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return Promise.resolve({ entry: new URL('./writer-thread.js', here), eval: false });
  fromSources ??= bundle(here).catch(() => tsxBootstrap(here));
  return fromSources;
}

interface EsbuildPlugin {
  name: string;
  setup(build: {
    onResolve(options: { filter: RegExp }, cb: () => { path: string; external: boolean }): void;
  }): void;
}

interface Esbuild {
  build(options: {
    entryPoints: string[];
    bundle: boolean;
    platform: 'node';
    format: 'esm';
    target: string;
    write: false;
    outfile: string;
    logLevel: 'silent';
    plugins: EsbuildPlugin[];
  }): Promise<{ outputFiles: Array<{ text: string }> }>;
}

async function bundle(here: string): Promise<WriterEntry> {
  const require = createRequire(here);
  const esbuild = require('esbuild') as Esbuild;
  const nativeDriver = pathToFileURL(require.resolve('better-sqlite3')).href;
  const built = await esbuild.build({
    entryPoints: [fileURLToPath(new URL('./writer-thread.ts', here))],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    write: false,
    outfile: 'writer-thread.mjs',
    logLevel: 'silent',
    plugins: [
      {
        name: 'native-driver-by-path',
        setup(build) {
          build.onResolve({ filter: /^better-sqlite3$/ }, () => ({ path: nativeDriver, external: true }));
        },
      },
    ],
  });
  const code = built.outputFiles[0]!.text;
  // Named by content: processes share one file per version of the sources, and none is left per
  // process (test runners kill their workers without running exit handlers).
  const digest = createHash('sha256').update(code).digest('hex').slice(0, 16);
  const outfile = join(tmpdir(), `hookd-sqlite-writer-${digest}.mjs`);
  if (!existsSync(outfile)) {
    const partial = `${outfile}.${process.pid}.${Date.now()}.tmp`;
    writeFileSync(partial, code);
    renameSync(partial, outfile); // atomic: a concurrent process never imports a half-written file
  }
  return { entry: pathToFileURL(outfile), eval: false };
}

function tsxBootstrap(here: string): WriterEntry {
  const tsxDir = dirname(createRequire(here).resolve('tsx/package.json'));
  const api = pathToFileURL(join(tsxDir, 'dist/esm/api/index.mjs')).href;
  const writer = new URL('./writer-thread.ts', here).href;
  return {
    entry: `import(${JSON.stringify(api)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(writer)}); });`,
    eval: true,
  };
}
