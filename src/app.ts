import { clientErrorHandler, frameworkErrors } from './http/client-errors.js';
import { afterEarlierAnswers, trackConnectionOrder } from './http/connection-order.js';
import { MAX_HEADER_LINES, requestHeadProblem } from './http/request-head.js';
import { lingering } from './ingress/linger.js';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { RequestLogController } from './http/request-log.js';
import { pino, type Logger } from 'pino';
import { adminApi } from './api/index.js';
import { openBackend } from './backends.js';
import { MessageCache } from './store/message-cache.js';
import type { AttachmentStore } from './attachments/contract.js';
import { createFsAttachmentStore } from './attachments/fs-store.js';
import { flowSecretCodec } from './auth/flow-secrets.js';
import { loadOrCreateMasterKey, SecretBox } from './auth/secret-box.js';
import { readFlowsDir, sameDefinition } from './api/flows-dir.js';
import type { Config } from './config/config.js';
import { finishesWithin } from './core/finishes-within.js';
import { type Flow, nextUpdatedAt } from './core/flow.js';
import { E, HookdError } from './core/errors.js';
import { RecurringFailure, RepeatedLog } from './core/repeated-log.js';
import { resolveAdminToken, tokenDigest } from './config/admin-token.js';
import { createExpressionWorkers } from './flow/expression-workers.js';
import { createFlowRunner } from './flow/runner.js';
import { FlowRates } from './queue/flow-rates.js';
import { installErrorHandling } from './http/error-handler.js';
import { createMetrics } from './http/metrics.js';
import { opsRoutes } from './http/ops-routes.js';
import { hookRoutes } from './ingress/hook-routes.js';
import type { Backend } from './store/backend.js';
import { FlowRegistry, UnreadableFlowError } from './store/flow-registry.js';
import { instanceExpireMs, startMembership } from './store/membership.js';
import { createHousekeeping, type Housekeeping } from './store/housekeeping.js';
import { type FlowOwnership, startFlowOwnership } from './flow-ownership.js';
import { createFlowQueueCleanup } from './flow-queue-cleanup.js';
import { DEFAULT_DELAY_LEVELS_MS } from './queue/rabbitmq/index.js';

/** Those of `paths` that exist with any permission for group or others, each with its mode: `<path> (0755)`. */
function readableByOthers(paths: readonly string[]): string[] {
  if (process.platform === 'win32') return [];
  const found: string[] = [];
  for (const p of paths) {
    let mode: number;
    try {
      mode = statSync(p).mode & 0o777;
    } catch {
      continue;
    }
    if ((mode & 0o077) !== 0) found.push(`${p} (${mode.toString(8).padStart(4, '0')})`);
  }
  return found;
}

/** Routes that keep answering while hookd shuts down. */
const OPS_PATHS = new Set(['/healthz', '/readyz', '/metrics']);

/** Key of the master key's fingerprint in the shared settings (several instances, one database). */
const MASTER_KEY_SETTING = 'master_key_fingerprint';

export interface App {
  server: FastifyInstance;
  backend: Backend;
  registry: FlowRegistry;
  /** Multipart files, binary bodies and large raw bodies (DATA_DIR/attachments, or PostgreSQL). */
  attachments: AttachmentStore;
  /** Retention purge and attachment sweep (hourly; also callable, e.g. by tests and operators). */
  housekeeping: Housekeeping;
  logger: Logger;
  /** Unknown to an instance whose cluster token was created by another instance (it has the hash). */
  adminToken: string | undefined;
  /** Listen on config.listenHost:listenPort; resolves with the bound address (http://host:port). */
  listen(): Promise<string>;
  /** Graceful stop: no new requests, in-flight ones finish, running steps finish or release. */
  close(): Promise<void>;
  /** Executions this process is running now (the shutdown says what it waits for). */
  readonly runningExecutions: number;
}

/** The composition root: the only place that picks concrete backends. */
/** Shorter admin tokens work (tests, local use) but are warned about at start. */
const MIN_ADMIN_TOKEN_LENGTH = 16;

export async function createApp(config: Config, options: { logger?: Logger } = {}): Promise<App> {
  const logger = options.logger ?? pino({ level: config.logLevel, base: { service: 'hookd' } });
  // Private when hookd creates it (whatever the umask): the database holds every request, headers
  // and bodies included. An existing directory keeps the mode its operator gave it.
  try {
    mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new Error(`DATA_DIR: cannot use ${config.dataDir} as a directory (${(err as Error).message})`);
  }

  // Composition root: the cache the stores fill and the runner reads, watched by the metrics. An
  // instance that runs no flows (WORKER_CONCURRENCY=0) would only fill it: it keeps none. Embedded,
  // this process runs every job it accepts, in queue order, so a full cache keeps what it holds;
  // distributed, other instances run many of them, so the oldest make room (message-cache.ts).
  const messageCache = new MessageCache(config.workerConcurrency > 0 ? config.messageCacheBytes : 0, {
    whenFull: config.databaseUrl ? 'drop-oldest' : 'keep-held',
  });
  // Before the backend, which feeds them; the queue's depth is read from it at each scrape.
  let opened: Backend | undefined;
  const metrics = createMetrics({
    messageCache,
    queue: () => opened?.queue,
    brokerConfirms: Boolean(config.rabbitmqUri && config.databaseUrl),
    embeddedStore: !config.databaseUrl,
    ready: async () => {
      if (shuttingDown) throw new Error('shutting down');
      if (opened === undefined) throw new Error('starting');
      await opened.checkWritable();
    },
  });
  const backend = await openBackend(config, logger, messageCache, {
    onConfirmed: (ms) => metrics.confirmSeconds?.observe(ms / 1000),
    onWalSync: (ms) => metrics.walSyncSeconds?.observe(ms / 1000),
    onWalRestart: () => metrics.walRestarts?.inc(),
  });
  opened = backend;
  if (config.databaseUrl && config.sqliteVacuumOnStart) logger.warn('SQLITE_VACUUM_ON_START is for the embedded SQLite database: ignored with DATABASE_URL');
  const embeddedFile = path.join(config.dataDir, 'hookd.db');
  if (!config.databaseUrl) {
    // Created private (0700, 0600), but an existing directory keeps its modes: one made by a build
    // before that (the umask's 0755 and 0644) left every stored request readable by other users.
    const readable = readableByOthers([config.dataDir, embeddedFile]);
    if (readable.length > 0) {
      logger.warn(
        { paths: readable },
        'DATA_DIR: other users can read the stored requests (hookd keeps the modes of an existing directory and database; earlier builds made them with the umask\'s): unless they should, chmod 700 the directory and 600 hookd.db (its -wal and -shm files follow at the next start)',
      );
    }
  }
  if (config.databaseUrl && existsSync(embeddedFile)) {
    // Moving from one process to a cluster: what the embedded database holds is not carried over.
    logger.warn(
      { file: embeddedFile },
      'DATA_DIR holds an embedded database that this instance (DATABASE_URL) does not read: its flows, requests, executions and queued jobs are not here. Bring flows over through the API, after the embedded instance finished its queue (docs/distributed.md, "Moving from one process")',
    );
  }
  // Shared by all instances when the backend offers it (PostgreSQL); else files in DATA_DIR.
  const attachments = backend.attachments ?? createFsAttachmentStore(config.dataDir);
  const secretBox = new SecretBox(loadOrCreateMasterKey(config.dataDir, config.secretKey));
  if (backend.settings) {
    // Instances sharing a database must seal credential secrets with one key: the first instance's
    // key fingerprint is stored, and an instance with another key refuses to start.
    const mine = secretBox.fingerprint();
    const cluster = await backend.settings.getOrSet(MASTER_KEY_SETTING, mine);
    if (cluster !== mine) {
      await backend.close();
      const which =
        config.secretKey === undefined || config.secretKey.trim() === ''
          ? `HOOKD_SECRET_KEY is not set, and the key of this DATA_DIR (${path.join(config.dataDir, 'secret.key')}, generated if it was not there) is not the key of the other instances on this database`
          : 'HOOKD_SECRET_KEY differs from the key of the other instances on this database';
      throw new Error(
        `${which}: credential secrets they sealed would not open here. ` +
          'Set HOOKD_SECRET_KEY to the same value on every instance (an instance that generated its key keeps it in DATA_DIR/secret.key). ' +
          'A key that is lost cannot be recovered: docs/distributed.md says how to start again with a new one.',
      );
    }
  }
  const registry = new FlowRegistry(backend.flows, flowSecretCodec(secretBox));
  const unreadable = (flowId: string, err: unknown) =>
    logger.error(
      { flowId, err: (err as Error).message },
      'flow left out: its credential secrets do not open with this HOOKD_SECRET_KEY (its webhook answers 404): send it again with its secrets (PUT /api/flows/{id}), or delete it',
    );
  // A queue per flow (RabbitMQ) consumes the queues of the started flows — of those with a
  // concurrency limit, only while this instance holds them (one instance per flow: the limit holds
  // for the cluster; flow-ownership.ts). Instances without workers hold none.
  const queue = backend.queue;
  let ownership: FlowOwnership | undefined;
  let startOwnership: (() => Promise<void>) | undefined;
  if (queue.watchFlows) {
    const watchFlows = queue.watchFlows.bind(queue);
    const owned = backend.flowOwners !== undefined && config.workerConcurrency > 0;
    const watch = () => watchFlows(flowStates(registry.values(), ownership, owned));
    registry.onChange = () => {
      watch();
      ownership?.refresh();
    };
    const owners = backend.flowOwners;
    if (owners !== undefined && owned) {
      startOwnership = async () => {
        ownership = await startFlowOwnership({
          owners,
          intervalMs: config.flowRefreshMs,
          limitedFlows: () => limitedFlows(registry.values()),
          busy: (flowId) => queue.holdsJobsOf?.(flowId) ?? false,
          onChange: (count) => {
            watch();
            metrics.flowsHeld.set(count);
          },
          logger,
        });
        // The first hold's change came before `ownership` was set, when watch() could not ask it.
        watch();
      };
    }
  } else if (queue.wakeStopped) {
    // The database queues: a flow started again (here, or by another instance: seen at the next
    // refresh) has its waiting jobs made due at once, not at their next look (up to a minute).
    const wakeStopped = queue.wakeStopped.bind(queue);
    const wasStopped = new Set<string>();
    registry.onChange = () => {
      for (const id of wasStopped) if (registry.get(id) === undefined) wasStopped.delete(id);
      for (const f of registry.values()) {
        if (f.status === 'stopped') wasStopped.add(f.id);
        else if (wasStopped.delete(f.id)) wakeStopped(f.id).catch((err: unknown) => logger.warn({ err, flowId: f.id }, 'waking the jobs of a started flow failed; they run at their next look'));
      }
    };
  }
  await registry.load(unreadable);
  // Several instances share one database: pick up flows the others created or changed.
  const refreshFailure = new RecurringFailure(logger, 'flow refresh failed (flows changed through other instances are not seen here meanwhile)', 'flow refresh works again');
  const refresh = config.databaseUrl
    ? setInterval(
        () =>
          registry.load(unreadable).then(
            () => refreshFailure.succeeded(),
            (err: unknown) => refreshFailure.failed({ err }),
          ),
        config.flowRefreshMs,
      )
    : undefined;
  refresh?.unref();
  if (config.flowsDir) {
    const flows = readFlowsDir(config.flowsDir, (id) => registry.get(id)); // its errors name the file
    const unchanged = (f: Flow) => {
      const stored = registry.get(f.id);
      return stored !== undefined && sameDefinition(stored, f);
    };
    const replaced = flows.filter((f) => registry.get(f.id) !== undefined && !unchanged(f));
    // A rolling upgrade: writing a flow seals its http step credential headers, which instances of
    // an earlier build would send sealed. Flows whose files did not change are left as stored
    // until a start with none of those running.
    const earlier = (await backend.instances?.earlier?.(instanceExpireMs(config.flowRefreshMs))) ?? 0;
    const kept = earlier > 0 ? flows.filter(unchanged) : [];
    for (const flow of flows) if (!kept.includes(flow)) await registry.put(flow);
    logger.info({ dir: config.flowsDir, count: flows.length }, 'flows loaded from FLOWS_DIR');
    if (kept.length > 0) {
      logger.warn(
        { dir: config.flowsDir, instances: earlier, flowIds: kept.map((f) => f.id) },
        `FLOWS_DIR: ${earlier} running instance${earlier === 1 ? '' : 's'} of an earlier hookd on this database: flows whose files did not change are left as stored (not written again, so those instances still read their http step credential headers); they are sealed at a start once every instance is upgraded`,
      );
    }
    if (replaced.length > 0) {
      logger.warn(
        { dir: config.flowsDir, flowIds: replaced.map((f) => f.id) },
        'FLOWS_DIR: stored flows that differed from their files (changed through the API since?) were replaced by the files',
      );
    }
  }

  // Several instances: one admin token for all of them (its hash is shared through the backend).
  const admin = await resolveAdminToken(config.dataDir, config.adminToken, backend.settings);
  if (admin.differsFromCluster) {
    logger.warn(
      'HOOKD_ADMIN_TOKEN is not the admin token of the cluster (the one the first instance without HOOKD_ADMIN_TOKEN made): this instance accepts only its own, instances without HOOKD_ADMIN_TOKEN only that one, so behind a load balancer API calls fail on one or the other. Give every instance the same HOOKD_ADMIN_TOKEN',
    );
  }
  if (admin.ignoredFile) {
    logger.warn({ file: admin.ignoredFile }, 'this DATA_DIR/admin-token is not the cluster admin token: the token of the instance that started first is valid on every instance');
  } else if (admin.token === undefined) {
    logger.info('admin token: the cluster token set by the instance that started first (printed there once, kept in its DATA_DIR)');
  }
  if (config.adminToken !== undefined && config.adminToken.length < MIN_ADMIN_TOKEN_LENGTH) {
    logger.warn({ length: config.adminToken.length }, `HOOKD_ADMIN_TOKEN is shorter than ${MIN_ADMIN_TOKEN_LENGTH} characters: easy to guess (read tokens must have 16; leave it unset and one is generated)`);
  }
  // Printed once, at the start that created it, once listening (a start that fails on a port in
  // use would print it above its error, where it is easily lost); afterwards it lives only in the
  // 0600 file.
  let tokenToShow = admin.generated ? admin.token : undefined;

  const apiTokens = { admin: admin.digest, readers: config.readTokens.map(tokenDigest) };
  if (apiTokens.readers.some((d) => d.equals(admin.digest))) {
    if (refresh) clearInterval(refresh);
    await backend.close();
    throw new Error('HOOKD_READ_TOKENS: a read token equals the admin token; give components their own token');
  }

  // Several instances: each enforces its share of every flow's rate limit.
  const membership = await startMembership(backend.instances, config.flowRefreshMs, logger, (n) => metrics.instances.set(n), config.workerConcurrency > 0);
  let shuttingDown = false;
  let publicUrl = config.publicUrl;

  const server = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    // No per-request log lines at info: at thousands of webhooks a second they cost more than they
    // tell. At debug one per request, without query or headers (request-log.ts).
    logController: new RequestLogController(),
    trustProxy: config.trustProxy,
    exposeHeadRoutes: false,
    // Requests that arrive while closing (on connections still open) are refused by the hook
    // below, in hookd's error shape and with Retry-After; fastify's own 503 has neither.
    return503OnClosing: false,
    // Errors before any route (malformed HTTP, a request timeout, a malformed URL) in hookd's shape.
    clientErrorHandler: clientErrorHandler(lingering),
    frameworkErrors,
    // API bodies (flow definitions) are small; /hook bodies are read by the ingress itself.
    bodyLimit: 1024 * 1024,
    // Flow and request ids go up to 128 characters (fastify's default stops params at 100: 414).
    routerOptions: { maxParamLength: 256 },
    // REQUEST_TIMEOUT: a request (its body included) must arrive whole within this, else 408 and
    // the connection is closed. A sender that stalls mid-body would otherwise hold its files, a
    // connection and a shutdown forever, and a file it finished more than the attachment sweep's
    // horizon before the rest of the request would be swept. Node looks at open requests every
    // connectionsCheckingInterval (30 s by default: too coarse for short timeouts), and only with a
    // headersTimeout no longer than the requestTimeout (its default is 60 s).
    requestTimeout: config.requestTimeoutMs,
    http: {
      // Checked by hookd, which answers in its error shape (http/request-head.ts).
      requireHostHeader: false,
      headersTimeout: Math.min(60_000, config.requestTimeoutMs),
      connectionsCheckingInterval: Math.min(30_000, Math.max(100, Math.floor(config.requestTimeoutMs / 5))),
    },
  });
  installErrorHandling(server);
  // A request pipelined behind another runs once the answer before it is sent, and not at all when
  // that answer closed the connection (its own answer could never go out): connection-order.ts.
  trackConnectionOrder(server.server);
  // Reached, the request is refused (431) rather than read with header lines dropped (request-head.ts).
  server.server.maxHeadersCount = MAX_HEADER_LINES;
  // One hook, called back (an async one costs a promise per request).
  server.addHook('onRequest', (request, reply, done) => {
    // /readyz answers its own 'shutting down'; /healthz and /metrics keep answering.
    if (shuttingDown && !OPS_PATHS.has(request.url.split('?')[0]!)) return done(new HookdError(E.SHUTTING_DOWN).withRetryAfter(1));
    const badHead = requestHeadProblem(request.raw);
    if (badHead !== undefined) return done(badHead);
    const mayRun = afterEarlierAnswers(reply.raw);
    if (mayRun === true) return done();
    // Not run, nothing sent (the connection closes after the answer before): the sender sends it again.
    if (mayRun === false) return void reply.hijack();
    void mayRun.then((ok) => (ok ? done() : void reply.hijack()));
  });
  const refusals = new RepeatedLog(logger);
  server.addHook('onClose', async () => refusals.flush());
  server.addHook('onResponse', (request, reply, done) => {
    if (request.url.startsWith('/hook/')) metrics.countResponse(reply.statusCode);
    done();
  });

  await server.register(hookRoutes, {
    activeFlow: (id: string) => registry.active(id),
    requests: backend.requests,
    payloadSizeLimit: config.payloadSizeLimit,
    rateLimitShare: membership.share,
    learnSecret: (flow: Flow, secret: string) => learnAsanaSecret(registry, flow.id, secret),
    freshFlow: async (id: string) => {
      // A flow whose secrets do not open is served as none (left out at load too).
      const flow = await registry.fetch(id).catch((err: unknown) => {
        if (err instanceof UnreadableFlowError) return undefined;
        throw err;
      });
      return flow?.status === 'started' ? flow : undefined;
    },
    attachments,
    attachmentSizeLimit: config.attachmentSizeLimit,
    defaultMaxAttempts: config.maxAttempts,
    onAccepted: (_flowId: string, ms: number) => metrics.commitSeconds.observe(ms / 1000),
    onAuthFailure: (flowId: string, reason: string, ip: string) => {
      metrics.authFailures.inc({ reason });
      // A sender with a stale secret (or a scan) is refused at every call: one line per flow and reason per window.
      refusals.info(`${flowId}\0${reason}`, { flowId, reason, ip }, 'webhook call refused');
    },
    onDiscardFailed: (ids: readonly string[], err: unknown) => logger.warn({ err, ids }, 'attachments of a refused request not deleted; the sweep will'),
    publicUrl: () => publicUrl,
  });
  await server.register(adminApi, {
    prefix: '/api',
    tokens: apiTokens,
    registry,
    backend,
    publicUrl: () => publicUrl,
    attachments,
    executionDataLimit: config.executionDataLimit,
    defaultMaxAttempts: config.maxAttempts,
    replayIdKey: secretBox.deriveKey('replay-copy-ids:v1'),
  });
  await server.register(opsRoutes, {
    checkWritable: () => backend.checkWritable(),
    isShuttingDown: () => shuttingDown,
    metrics: metrics.registry,
  });

  // Expressions beyond the fast path run on their own threads (created at their first use).
  const expressionWorkers = config.expressionWorkers > 0 ? createExpressionWorkers({ size: config.expressionWorkers }) : undefined;
  const rateShare = queue.watchFlows ? () => 1 : membership.workerShare;
  const runner = createFlowRunner({
    requests: backend.requests,
    executions: backend.executions,
    queue: backend.queue,
    getFlow: (id: string) => registry.get(id),
    loadFlow: (id: string) => registry.fetch(id),
    logger,
    concurrency: config.workerConcurrency,
    prefetch: config.workerPrefetch ?? config.workerConcurrency,
    flowLimits: () => registry.concurrencyLimits(),
    // With RabbitMQ one instance holds each flow with a rate (flow-ownership.ts): its whole rate.
    // The database queues: every instance with workers claims the flow's jobs, each at its share of the rate.
    flowRates: new FlowRates(() => registry.executionRates(), rateShare),
    callPacing: new FlowRates(() => registry.executionRates(), rateShare),
    // RabbitMQ: a job of a flow one instance at a time holds runs only while the hold is surely
    // this instance's (a process stalled past its lease hands it back unrun: flow-ownership.ts).
    ...(startOwnership !== undefined ? { mayRun: (flow: Flow) => mayRunHere(flow, ownership) } : {}),
    ...(expressionWorkers ? { expressionIsolate: expressionWorkers } : {}),
    onStepStarted: (e) => {
      if (e.stepIndex === 0 && e.firstDelivery) metrics.queueDelaySeconds.observe(Math.max(0, e.startedAt - e.receivedAt) / 1000);
    },
    onStepFinished: (e) => metrics.observeStep(e.stepType, e.status, (e.finishedAt - e.startedAt) / 1000),
    onExecutionFinished: (e) => metrics.countExecution(e.status),
    onCarriedRequest: (outcome) => metrics.countCarried(outcome),
    executionDataLimit: config.executionDataLimit,
    defaultMaxAttempts: config.maxAttempts,
    defaultBackoffMs: config.backoffMs,
    maxBackoffMs: config.maxBackoffMs,
    // The SQLite writer applies writes in call order, so an execution's records can be sent together.
    orderedWrites: backend.name === 'sqlite',
    attachments,
  });
  const housekeeping = createHousekeeping({ requests: backend.requests, attachments, retentionMs: config.retentionMs, logger });
  // Shorter, and a retry still in a delay queue could come back to a removed queue (docs/distributed.md).
  const safeGraceMs = Math.max(...DEFAULT_DELAY_LEVELS_MS) + 2 * config.flowRefreshMs;
  if (config.rabbitmqUri && config.deletedFlowGraceMs < safeGraceMs) {
    logger.warn(
      { deletedFlowGraceMs: config.deletedFlowGraceMs, safeMs: safeGraceMs },
      'DELETED_FLOW_GRACE is shorter than the longest retry delay (1 h) plus twice FLOW_REFRESH: a retry of a deleted flow may come back after its queue was removed and stay stuck in its delay queue',
    );
  }
  const flowQueueCleanup = createFlowQueueCleanup({
    flows: backend.flows,
    queue,
    graceMs: config.deletedFlowGraceMs,
    // A queue per flow: every instance retires a deleted flow's queue as soon as it learns of any
    // flow change. Otherwise the records are only forgotten once old.
    everyMs: queue.retireFlows ? config.flowRefreshMs : 60_000,
    logger,
  });

  let closing: Promise<void> | undefined;
  return {
    server,
    backend,
    registry,
    attachments,
    housekeeping,
    logger,
    adminToken: admin.token,
    get runningExecutions() {
      return runner.inFlight;
    },
    async listen() {
      const address = await server.listen({ host: config.listenHost, port: config.listenPort });
      if (tokenToShow !== undefined) {
        process.stdout.write(`\nhookd admin token (saved to ${admin.file}, shown once):\n  ${tokenToShow}\n\n`);
        tokenToShow = undefined;
      }
      // LISTEN_PORT=0 without PUBLIC_URL: the default URL names the port actually bound, not 0.
      const bound = server.server.address();
      if (config.listenPort === 0 && publicUrl.endsWith(':0') && bound !== null && typeof bound === 'object') {
        publicUrl = `${publicUrl.slice(0, -2)}:${bound.port}`;
      }
      // Workers start once the process is sure to run: a start that fails before (a port in use)
      // must not have leased jobs, whose leases would expire as spent attempts, start after start.
      // Limited flows' holds first: the consumers attach only to the queues of flows held here.
      await startOwnership?.();
      if (config.workerConcurrency > 0) runner.start();
      housekeeping.start();
      flowQueueCleanup.start();
      return address;
    },
    close() {
      closing ??= (async () => {
        shuttingDown = true;
        clearInterval(refresh);
        // Background passes end at their next step (a batch, a deleted flow); not waited for
        // before the window below.
        const passesStopped = Promise.all([housekeeping.stop(), flowQueueCleanup.stop()]);
        // One window for both, from now: the runner takes no new job, running steps finish while
        // requests in flight do.
        const stopped = await Promise.allSettled([closeServer(server, config.shutdownGraceMs, logger), runner.stop({ graceMs: config.shutdownGraceMs })]);
        await passesStopped;
        await expressionWorkers?.close();
        // The runner has stopped: the flows held here go to the other instances now.
        await ownership?.stop();
        await membership.stop();
        await backend.close();
        for (const r of stopped) if (r.status === 'rejected') throw r.reason;
      })();
      return closing;
    },
  };
}

/**
 * Stop listening and let requests in flight finish (a body still arriving, a commit) for up to the
 * grace period; then close what is left, so that a sender that stalls cannot hold the shutdown
 * (an orchestrator's SIGKILL would follow, with every leased job's attempt spent).
 */
async function closeServer(server: FastifyInstance, graceMs: number, logger: Logger): Promise<void> {
  const closed = server.close();
  if (!(await finishesWithin(closed, Math.max(1_000, graceMs)))) {
    const open = await new Promise<number>((resolve) => server.server.getConnections((err, n) => resolve(err ? -1 : n)));
    logger.warn({ connections: open }, 'shutdown grace over: closing the connections still open (requests not yet answered were not acknowledged: their senders retry)');
    server.server.closeAllConnections();
  }
  await closed;
}

/**
 * What a queue per flow needs to know of each flow (Queue.watchFlows): whether to consume its
 * queue here — a started flow, and with a concurrency limit only while this instance holds it.
 */
function* flowStates(flows: Iterable<Flow>, ownership: FlowOwnership | undefined, owned: boolean): Iterable<{ id: string; started: boolean; exclusive: boolean }> {
  for (const f of flows) {
    const consumed = f.status === 'started' && (!heldByOne(f) || ownership === undefined || ownership.holds(f.id));
    // Held by one instance: taken over only once its previous holder's consumer has gone.
    yield { id: f.id, started: consumed, exclusive: owned && heldByOne(f) };
  }
}

/**
 * Whether a job of the flow may run here (FlowRunnerOptions.mayRun, RabbitMQ): any flow not held
 * by one instance; one that is, only while this instance surely holds it (FlowOwnership.mayRun).
 */
function mayRunHere(f: Flow, ownership: FlowOwnership | undefined): boolean {
  if (!heldByOne(f)) return true;
  return ownership !== undefined && ownership.mayRun(f.id);
}

/** A flow one instance at a time runs (RabbitMQ): one with a concurrency limit or an execution rate. */
function heldByOne(f: Flow): boolean {
  return f.concurrency !== undefined || f.executionRate !== undefined;
}

/**
 * The flows one instance at a time holds (FlowOwnership): those with a concurrency limit or an
 * execution rate (the whole rate then applies at the holder), stopped
 * ones too — a stop through the holder must not free the flow for an instance whose flow list is a
 * refresh behind (it would still see the flow started and run its jobs).
 */
function limitedFlows(flows: Iterable<Flow>): string[] {
  const ids: string[] = [];
  for (const f of flows) if (heldByOne(f)) ids.push(f.id);
  return ids;
}

/**
 * An Asana handshake's secret becomes the flow's credential secret (sealed at rest like any):
 * written over the flow as the store has it now, only while it is still an `asana` credential
 * without a secret. Another instance that has not seen it yet reads the flow for each event
 * (IngressDeps.freshFlow) until its next refresh.
 */
async function learnAsanaSecret(registry: FlowRegistry, flowId: string, secret: string): Promise<void> {
  const current = await registry.fetch(flowId);
  const auth = current?.trigger.auth;
  if (current === undefined || auth?.type !== 'asana' || auth.secrets !== undefined) {
    throw new HookdError(E.CONFLICT, 'The flow changed meanwhile (or learned its Asana secret): try the handshake again');
  }
  const learned: Flow = {
    ...current,
    trigger: { ...current.trigger, auth: { type: 'asana', secrets: [{ value: secret, createdAt: new Date().toISOString() }] } },
    updatedAt: nextUpdatedAt(current),
  };
  if (!(await registry.put(learned, { updatedAt: current.updatedAt }))) {
    throw new HookdError(E.CONFLICT, 'The flow changed meanwhile: try the handshake again');
  }
}
