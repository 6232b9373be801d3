import { readFileSync } from 'node:fs';
import proxyAddr from '@fastify/proxy-addr';
import path from 'node:path';
import YAML from 'yaml';
import { DEFAULT_MESSAGE_CACHE_BYTES } from '../store/message-cache.js';
import { formatDuration, formatSize, parseBoolean, parseDuration, parseInteger, parseSize } from './parse.js';
import { maskUrlCredentials } from '../core/mask-url.js';

/**
 * hookd's configuration: the one documented place (docs/configuration.md mirrors this table).
 * Layers, later wins: built-in defaults < config file (HOOKD_CONFIG, YAML or JSON, same keys as the
 * environment variables) < environment variables.
 */
export interface Config {
  listenHost: string;
  listenPort: number;
  /** Base URL printed in webhookUrl fields (default http://localhost:<port>). */
  publicUrl: string;
  dataDir: string;
  /** Folder of flow definitions (*.yaml, *.yml, *.json) loaded at start. */
  flowsDir: string | undefined;
  logLevel: string;
  /** Admin token for /api; generated into DATA_DIR when unset. */
  adminToken: string | undefined;
  /** Bearer tokens that may only read /api (GET): for components outside hookd. */
  readTokens: string[];
  /** Master key for secrets at rest (64 hex chars or base64 of 32 bytes); generated into DATA_DIR when unset. */
  secretKey: string | undefined;
  /** Largest body that is buffered and parsed (OIH's variable name). */
  payloadSizeLimit: number;
  /** Total bytes of the files of one request (multipart parts, or a binary body). */
  attachmentSizeLimit: number;
  /** Requests older than this are purged with their executions and files; 0 = kept forever. */
  retentionMs: number;
  /** Trust X-Forwarded-For from these proxies (fastify trustProxy: true, or the proxies' addresses/CIDRs). */
  trustProxy: boolean | string;
  workerConcurrency: number;
  /** Worker threads for JSONata evaluations the fast path does not decide; 0: on the main thread. */
  expressionWorkers: number;
  /** Jobs leased ahead of free worker slots (embedded and PostgreSQL queues); undefined: as many as workerConcurrency. */
  workerPrefetch: number | undefined;
  /** Bytes of committed messages kept in memory until their first execution reads them. */
  messageCacheBytes: number;
  sqliteVacuumOnStart: boolean;
  leaseMs: number;
  maxAttempts: number;
  backoffMs: number;
  maxBackoffMs: number;
  /** A request must arrive whole within this (Node's requestTimeout); 408 after. */
  requestTimeoutMs: number;
  shutdownGraceMs: number;
  /** JSON bytes kept per step input/output in execution records. */
  executionDataLimit: number;
  /** postgres://… selects the PostgreSQL store (distributed mode). */
  databaseUrl: string | undefined;
  /** amqp://… selects the RabbitMQ queue (distributed mode). */
  rabbitmqUri: string | undefined;
  /** PostgreSQL schema for hookd's tables (default public). */
  databaseSchema: string | undefined;
  /** Exchange and queue names start with this (default hookd). */
  rabbitmqPrefix: string | undefined;
  /** The longest request JSON a job message carries, for flows with jobMessage.includeRequest (0: none). */
  jobPayloadBytes: number;
  /**
   * RabbitMQ: what a webhook's 2xx waits for. 'outbox': the request and its job committed in
   * PostgreSQL, then the job confirmed by the broker. 'broker': the job, carrying the request,
   * confirmed by the broker; a worker records the request in PostgreSQL before it runs the flow.
   */
  rabbitmqAccept: 'outbox' | 'broker';
  /** How often an instance re-reads flows others may have changed (distributed mode). */
  flowRefreshMs: number;
  /** How long after a flow's delete its RabbitMQ queue is removed (once empty). */
  deletedFlowGraceMs: number;
}

type Source = Record<string, string | number | boolean | null | undefined>;

interface Field<K extends keyof Config> {
  key: K;
  env: string;
  doc: string;
  default: (c: Partial<Config>) => Config[K];
  parse: (v: string | number | boolean, name: string) => Config[K];
}

const str = (v: string | number | boolean) => String(v);
const optStr = (v: string | number | boolean) => (String(v) === '' ? undefined : String(v));

function field<K extends keyof Config>(f: Field<K>): Field<K> {
  return f;
}

/** Every setting: environment variable, meaning, default. */
export const CONFIG_FIELDS = [
  field({ key: 'listenHost', env: 'LISTEN_HOST', doc: 'Interface to listen on', default: () => '0.0.0.0', parse: str }),
  field({ key: 'listenPort', env: 'LISTEN_PORT', doc: 'HTTP port', default: () => 3000, parse: (v, n) => parseInteger(v as string, n, 0, 65535) }),
  field({ key: 'publicUrl', env: 'PUBLIC_URL', doc: 'Base URL used in webhookUrl', default: (c) => `http://localhost:${c.listenPort ?? 3000}`, parse: (v, n) => parseBaseUrl(str(v), n) }),
  field({ key: 'dataDir', env: 'DATA_DIR', doc: 'Where the SQLite file, keys and attachments live', default: () => path.resolve('data'), parse: (v) => path.resolve(str(v)) }),
  field({ key: 'flowsDir', env: 'FLOWS_DIR', doc: 'Folder of flow files (YAML/JSON) loaded at start', default: () => undefined, parse: (v) => (optStr(v) ? path.resolve(str(v)) : undefined) }),
  field({ key: 'logLevel', env: 'LOG_LEVEL', doc: 'pino level: trace, debug, info, warn, error, fatal, silent', default: () => 'info', parse: (v, n) => oneOf(str(v).toLowerCase(), LOG_LEVELS, n) }),
  field({ key: 'adminToken', env: 'HOOKD_ADMIN_TOKEN', doc: 'Bearer token for /api, up to 512 characters; surrounding whitespace is ignored (generated into DATA_DIR/admin-token when unset)', default: () => undefined, parse: (v, n) => parseAdminToken(str(v), n) }),
  field({ key: 'readTokens', env: 'HOOKD_READ_TOKENS', doc: 'Comma-separated bearer tokens that may only read /api (GET): for components outside hookd that fetch requests and their files', default: () => [], parse: (v, n) => parseTokenList(str(v), n) }),
  field({ key: 'secretKey', env: 'HOOKD_SECRET_KEY', doc: 'Master key sealing credential secrets at rest (generated into DATA_DIR/secret.key when unset)', default: () => undefined, parse: optStr }),
  field({ key: 'payloadSizeLimit', env: 'PAYLOAD_SIZE_LIMIT', doc: 'Largest parsed body (413 beyond)', default: () => 10 * 1024 * 1024, parse: (v, n) => atLeast(parseSize(v as string, n), 1, n) }),
  field({ key: 'attachmentSizeLimit', env: 'ATTACHMENT_SIZE_LIMIT', doc: 'Largest total of files per request: multipart file parts, or a binary body (413 beyond)', default: () => 100 * 1024 * 1024, parse: (v, n) => parseSize(v as string, n) }),
  field({ key: 'retentionMs', env: 'RETENTION', doc: 'Requests older than this are purged with their executions and files (hourly); off = keep forever', default: () => 30 * 86_400_000, parse: (v, n) => parseRetention(v, n) }),
  field({ key: 'trustProxy', env: 'TRUST_PROXY', doc: 'Proxies trusted for X-Forwarded-For: true, or a comma-separated list of addresses, CIDRs, loopback, linklocal, uniquelocal', default: () => false, parse: (v) => parseTrustProxy(v) }),
  field({ key: 'workerConcurrency', env: 'WORKER_CONCURRENCY', doc: 'Flow executions run at once by this process', default: () => 64, parse: (v, n) => parseInteger(v as string, n, 0, 10_000) }),
  field({ key: 'expressionWorkers', env: 'EXPRESSION_WORKERS', doc: 'Worker threads that evaluate JSONata expressions (those beyond the plain field paths and constructors evaluated inline), so that a heavy one never stalls webhook intake; one running 500 ms past its time limit has its thread stopped. Up to as many extra threads start for light expressions while heavy ones hold every worker (ended when idle). 0 = on the main thread', default: () => 2, parse: (v, n) => parseInteger(v as string, n, 0, 64) }),
  field({ key: 'workerPrefetch', env: 'WORKER_PREFETCH', doc: 'Jobs leased ahead of free worker slots, waiting in this process (embedded and PostgreSQL queues; default WORKER_CONCURRENCY)', default: () => undefined, parse: (v, n) => parseInteger(v as string, n, 0, 10_000) }),
  field({ key: 'messageCacheBytes', env: 'MESSAGE_CACHE', doc: 'Memory for committed messages waiting for their first execution (saves reading them back; 0 = off)', default: () => DEFAULT_MESSAGE_CACHE_BYTES, parse: (v, n) => parseSize(v as string, n) }),
  field({ key: 'sqliteVacuumOnStart', env: 'SQLITE_VACUUM_ON_START', doc: 'Embedded mode: compact the database file at start, giving the space of purged requests back to the disk (a compact copy beside it, renamed over it); the start waits for it', default: () => false, parse: (v, n) => parseBoolean(v as string | boolean, n) }),
  field({ key: 'leaseMs', env: 'QUEUE_LEASE', doc: 'Lease of a claimed job (renewed while it runs; 1s to 1h)', default: () => 30_000, parse: (v, n) => within(parseDuration(v as string, n), 1_000, 3_600_000, n) }),
  field({ key: 'maxAttempts', env: 'MAX_ATTEMPTS', doc: 'Deliveries before a job is dead-lettered (flow.retry overrides)', default: () => 5, parse: (v, n) => parseInteger(v as string, n, 1, 100) }),
  field({ key: 'backoffMs', env: 'RETRY_BACKOFF', doc: 'First retry delay, doubled per attempt', default: () => 1000, parse: (v, n) => within(parseDuration(v as string, n), 0, MAX_TIMER_MS, n) }),
  field({ key: 'maxBackoffMs', env: 'RETRY_BACKOFF_MAX', doc: 'Longest retry delay', default: () => 3_600_000, parse: (v, n) => within(parseDuration(v as string, n), 0, MAX_TIMER_MS, n) }),
  field({ key: 'requestTimeoutMs', env: 'REQUEST_TIMEOUT', doc: 'A request, its body included, must arrive whole within this, else 408 and its connection is closed, or (sender still writing) the connection is reset (1s to 30m)', default: () => 300_000, parse: (v, n) => within(parseDuration(v as string, n), 1_000, 1_800_000, n) }),
  field({ key: 'shutdownGraceMs', env: 'SHUTDOWN_GRACE', doc: 'On SIGTERM, how long running steps may finish before their jobs are released', default: () => 10_000, parse: (v, n) => within(parseDuration(v as string, n), 0, MAX_TIMER_MS, n) }),
  field({ key: 'executionDataLimit', env: 'EXECUTION_DATA_LIMIT', doc: 'JSON kept per step input/output in execution records (at least 256 bytes: a truncated value is recorded as a marker of about 50 bytes with a preview)', default: () => 16 * 1024, parse: (v, n) => atLeast(parseSize(v as string, n), 256, n) }),
  field({ key: 'databaseUrl', env: 'DATABASE_URL', doc: 'postgres://… to store in PostgreSQL (distributed mode)', default: () => undefined, parse: (v, n) => withScheme(optStr(v), ['postgres:', 'postgresql:', 'socket:'], n) }),
  field({ key: 'databaseSchema', env: 'DATABASE_SCHEMA', doc: 'PostgreSQL schema for hookd tables (default public)', default: () => undefined, parse: optStr }),
  field({ key: 'rabbitmqPrefix', env: 'RABBITMQ_PREFIX', doc: 'Prefix of hookd exchange and queue names (default hookd)', default: () => undefined, parse: optStr }),
  field({ key: 'jobPayloadBytes', env: 'RABBITMQ_JOB_PAYLOAD', doc: 'Distributed mode: the longest request JSON (as GET /api/requests/{id} returns it, in UTF-8 bytes) that a job message carries, for flows with jobMessage.includeRequest; 0 = never', default: () => 64 * 1024, parse: (v, n) => parseSize(v as string, n) }),
  field({ key: 'rabbitmqAccept', env: 'RABBITMQ_ACCEPT', doc: "Distributed mode with RabbitMQ: what a webhook's 2xx waits for. outbox = the request committed in PostgreSQL and its job confirmed by the broker (readable through the API at once); broker = the job, carrying the request, confirmed by the broker, and the request recorded in PostgreSQL by the worker that takes the job (faster, and webhooks are still taken while PostgreSQL is down; requests with files, or over 256 KiB, go the outbox way). See docs/distributed.md", default: () => 'outbox' as const, parse: (v, n) => oneOf(str(v).toLowerCase(), ['outbox', 'broker'] as const, n) }),
  field({ key: 'flowRefreshMs', env: 'FLOW_REFRESH', doc: 'Distributed mode: how often flows changed by other instances are picked up, instances beat in the registry and holds on limited flows are renewed (RabbitMQ) (100ms to 1h)', default: () => 2000, parse: (v, n) => within(parseDuration(v as string, n), 100, 3_600_000, n) }),
  field({ key: 'deletedFlowGraceMs', env: 'DELETED_FLOW_GRACE', doc: "RabbitMQ: how long after a flow's delete its queue is removed, once empty (1s to 30d; keep it above the longest retry delay level, 1h, plus twice FLOW_REFRESH)", default: () => 65 * 60_000, parse: (v, n) => within(parseDuration(v as string, n), 1_000, 30 * 86_400_000, n) }),
  field({ key: 'rabbitmqUri', env: 'RABBITMQ_URI', doc: 'amqp://… to queue through RabbitMQ (distributed mode)', default: () => undefined, parse: (v, n) => withScheme(optStr(v), ['amqp:', 'amqps:'], n) }),
] as const;

function atLeast(value: number, min: number, name: string): number {
  // min 1: a limit of 0 would refuse every body (413).
  if (value < min) throw new Error(`${name}: at least ${min} bytes, got ${value}`);
  return value;
}

/** Tokens of 16 to 512 visible characters, comma-separated (several: one per component, or a rotation). */
function parseTokenList(v: string, name: string): string[] {
  const tokens = v.split(',').map((t) => t.trim()).filter((t) => t !== '');
  for (const t of tokens) {
    if (!/^[\x21-\x7e]{16,512}$/.test(t)) {
      throw new Error(`${name}: each token must be 16 to 512 visible ASCII characters without spaces (got one of ${t.length} characters)`);
    }
  }
  if (new Set(tokens).size !== tokens.length) throw new Error(`${name}: a token is listed twice`);
  return tokens;
}

/** A duration, or off / 0 / false / never: keep forever. */
function parseRetention(v: string | number | boolean, name: string): number {
  if (v === false || (typeof v === 'string' && /^\s*(off|false|never|0)\s*$/i.test(v))) return 0;
  if (typeof v === 'boolean') throw new Error(`${name}: expected a duration (e.g. 30d) or off, got "${v}"`);
  // 0 in any form (a YAML 0, "0s") is off; otherwise at least a minute: RETENTION=30 meant as days
  // is 30 ms, and would purge nearly everything.
  const ms = parseDuration(v, name);
  return ms === 0 ? 0 : within(ms, 60_000, Number.MAX_SAFE_INTEGER, name);
}

/** setTimeout's longest delay; Node fires longer ones after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

function within(value: number, min: number, max: number, name: string): number {
  if (!(value >= min && value <= max)) {
    const range = max === Number.MAX_SAFE_INTEGER ? `at least ${formatDuration(min)}` : `between ${formatDuration(min)} and ${formatDuration(max)}`;
    throw new Error(`${name}: must be ${range}, got ${formatDuration(value)}`);
  }
  return value;
}

function parseAdminToken(v: string, name: string): string {
  const token = v.trim(); // a secret mounted from a file often ends in a newline
  if (token.length > 512 || /\s/.test(token)) throw new Error(`${name}: expected at most 512 characters without whitespace`);
  return token;
}

function parseTrustProxy(v: string | number | boolean): boolean | string {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string' && /^(true|false|yes|no|on|off)$/i.test(v)) return parseBoolean(v, 'TRUST_PROXY');
  // fastify 5 ignores a hop count (it cannot tell a proxy from a client that sends the header):
  // refused, rather than silently taking every request for the proxy's.
  if (typeof v === 'number' || /^\s*\d+\s*$/.test(v)) {
    throw new Error('TRUST_PROXY: a hop count is not supported (fastify ignores it); name the proxies: addresses, CIDRs, loopback, linklocal, uniquelocal');
  }
  // What fastify's proxy-addr takes, checked by proxy-addr itself (else it fails at the first request).
  try {
    proxyAddr.compile(v.split(',').map((p) => p.trim()));
  } catch (err) {
    throw new Error(`TRUST_PROXY: ${(err as Error).message} (expected true/false or comma-separated addresses, CIDRs, address/netmask, loopback, linklocal, uniquelocal)`);
  }
  return v;
}

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

function oneOf<T extends string>(v: string, allowed: readonly T[], name: string): T {
  if (!(allowed as readonly string[]).includes(v)) throw new Error(`${name}: expected one of ${allowed.join(', ')}, got "${v}"`);
  return v as T;
}

/** PUBLIC_URL: an absolute http(s) URL; its trailing slashes dropped (webhookUrl appends /hook/…). */
function parseBaseUrl(v: string, name: string): string {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new Error(`${name}: expected an absolute URL such as https://hooks.example.com, got "${v}"`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`${name}: expected an http or https URL, got "${v}"`);
  return v.replace(/\/+$/, '');
}

/** A connection URL of one of these schemes (the backend follows from it); undefined stays unset. */
function withScheme(v: string | undefined, schemes: readonly string[], name: string): string | undefined {
  if (v === undefined) return undefined;
  let scheme: string;
  try {
    scheme = new URL(v).protocol;
  } catch {
    throw new Error(`${name}: expected a URL such as ${schemes[0]}//host/…`);
  }
  if (!schemes.includes(scheme)) throw new Error(`${name}: expected a ${schemes.join(' or ')}// URL, got one starting ${scheme}//`);
  return v;
}

function readConfigFile(file: string): Source {
  let data: unknown;
  try {
    const text = readFileSync(file, 'utf8');
    data = file.endsWith('.json') ? JSON.parse(text) : YAML.parse(text);
  } catch (err) {
    throw new Error(`HOOKD_CONFIG ${file}: ${(err as Error).message}`);
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) throw new Error(`HOOKD_CONFIG ${file}: expected a map of settings`);
  return data as Source;
}

const duration = (ms: unknown): string => formatDuration(ms as number);
const size = (bytes: unknown): string => formatSize(bytes as number);
const url = (v: unknown): string | null => (v === undefined ? null : withoutCredentials(v as string));

/**
 * How configInEffect shows a setting other than as its value: durations and sizes in the units
 * they are written in, and secrets never — only whether they are set or where they come from.
 */
const SHOWN: { [K in keyof Config]?: (v: Config[K]) => unknown } = {
  adminToken: (v) => (v === undefined ? 'DATA_DIR/admin-token' : 'set'),
  readTokens: (v) => (v.length === 0 ? 'none' : `${v.length} token${v.length === 1 ? '' : 's'}`),
  secretKey: (v) => (v === undefined ? 'DATA_DIR/secret.key' : 'set'),
  databaseUrl: url,
  rabbitmqUri: url,
  payloadSizeLimit: size,
  attachmentSizeLimit: size,
  messageCacheBytes: size,
  executionDataLimit: size,
  jobPayloadBytes: size,
  retentionMs: (v) => (v === 0 ? 'off' : duration(v)),
  leaseMs: duration,
  backoffMs: duration,
  maxBackoffMs: duration,
  requestTimeoutMs: duration,
  shutdownGraceMs: duration,
  flowRefreshMs: duration,
  deletedFlowGraceMs: duration,
};

/**
 * The settings in effect, by variable name, for the start's log line: what an operator needs to
 * know which configuration a process runs with (defaults included), without a secret — tokens and
 * keys are shown as set or not, connection URLs without their password (nor any query value that
 * looks like a credential).
 */
export function configInEffect(config: Config): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of CONFIG_FIELDS) {
    const value = config[f.key];
    const show = SHOWN[f.key] as ((v: unknown) => unknown) | undefined;
    out[f.env] = show !== undefined ? show(value) : (value ?? null);
  }
  return out;
}

/** A connection URL fit for a log: its password, and query values named like a credential, replaced by ***. */
function withoutCredentials(v: string): string {
  return maskUrlCredentials(v, '***') ?? '***';
}

/** Build the configuration from defaults, an optional file and the environment. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const file = env.HOOKD_CONFIG ? readConfigFile(env.HOOKD_CONFIG) : {};
  const out: Partial<Config> = {};
  const known = new Set<string>(CONFIG_FIELDS.map((f) => f.env));
  for (const key of Object.keys(file)) {
    if (!known.has(key)) throw new Error(`${env.HOOKD_CONFIG}: unknown setting "${key}"`);
  }
  for (const f of CONFIG_FIELDS) {
    // Unset, empty (`DATABASE_URL=` from a compose file) or a YAML key without a value (null): the
    // next layer decides. A null once became the string "null" (an admin token anyone could send).
    const given = (v: unknown): v is string | number | boolean => v !== undefined && v !== null && v !== '';
    const fromEnv = env[f.env];
    const fromFile = file[f.env];
    const raw = given(fromEnv) ? fromEnv : given(fromFile) ? fromFile : undefined;
    (out as Record<string, unknown>)[f.key] = raw === undefined ? f.default(out) : f.parse(raw, f.env);
  }
  return out as Config;
}
