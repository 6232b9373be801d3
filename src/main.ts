#!/usr/bin/env node
import { createApp } from './app.js';
import { configInEffect, loadConfig } from './config/config.js';
import { hookdVersion } from './config/version.js';
import { formatDuration } from './config/parse.js';

/** `npm start`: one process, everything embedded unless DATABASE_URL / RABBITMQ_URI say otherwise. */
async function main(): Promise<void> {
  const config = loadConfig();
  const app = await createApp(config);
  let address: string;
  try {
    address = await app.listen();
  } catch (err) {
    // Release what start-up took (the data directory's lock, connections, the instance's record).
    await app.close().catch(() => {});
    const code = (err as NodeJS.ErrnoException).code;
    const where = `${config.listenHost}:${config.listenPort}`;
    if (code === 'EADDRINUSE') throw new Error(`LISTEN_PORT: ${where} is already in use (another hookd, or another server)`);
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EACCES') {
      throw new Error(`LISTEN_HOST/LISTEN_PORT: cannot listen on ${where} (${code}: ${(err as Error).message})`);
    }
    throw err;
  }
  // What runs here and with which settings (defaults included; no secret): the first line to read when paged.
  app.logger.info(
    {
      address,
      version: hookdVersion(),
      node: process.version,
      pid: process.pid,
      dataDir: config.dataDir,
      backend: app.backend.name,
      configFile: process.env.HOOKD_CONFIG || null,
      config: configInEffect(config),
    },
    'hookd listening',
  );

  let signals = 0;
  const shutdown = (signal: string) => {
    if (++signals > 1) {
      app.logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    app.logger.info(
      { signal, graceMs: config.shutdownGraceMs, runningExecutions: app.runningExecutions },
      `shutting down: no new requests or jobs; waiting up to ${formatDuration(config.shutdownGraceMs)} (SHUTDOWN_GRACE) for requests in flight and running steps, then aborting what still runs and handing its jobs back`,
    );
    const t0 = performance.now();
    app.close().then(
      () => {
        app.logger.info({ signal, ms: Math.round(performance.now() - t0) }, 'shut down');
        process.exit(0);
      },
      (err: unknown) => {
        app.logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err: unknown) => {
  process.stderr.write(`hookd failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
