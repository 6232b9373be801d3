import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONFIG_FIELDS, configInEffect, loadConfig } from '../../src/config/config.js';

describe('HOOKD_READ_TOKENS', () => {
  it('is a comma-separated list, spaces around commas ignored; none by default', () => {
    expect(loadConfig({}).readTokens).toEqual([]);
    expect(loadConfig({ HOOKD_READ_TOKENS: '' }).readTokens).toEqual([]);
    expect(loadConfig({ HOOKD_READ_TOKENS: ' aaaaaaaaaaaaaaaa , bbbbbbbbbbbbbbbb,' }).readTokens).toEqual(['aaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbb']);
  });

  it('refuses short, spaced or repeated tokens with the variable named', () => {
    expect(() => loadConfig({ HOOKD_READ_TOKENS: 'short' })).toThrow(/HOOKD_READ_TOKENS: each token must be 16 to 512/);
    expect(() => loadConfig({ HOOKD_READ_TOKENS: 'has a space in the middle' })).toThrow(/HOOKD_READ_TOKENS/);
    expect(() => loadConfig({ HOOKD_READ_TOKENS: 'é'.repeat(20) })).toThrow(/HOOKD_READ_TOKENS/);
    expect(() => loadConfig({ HOOKD_READ_TOKENS: `${'a'.repeat(16)},${'a'.repeat(16)}` })).toThrow(/listed twice/);
    expect(loadConfig({ HOOKD_READ_TOKENS: 'x'.repeat(512) }).readTokens).toHaveLength(1);
    expect(() => loadConfig({ HOOKD_READ_TOKENS: 'x'.repeat(513) })).toThrow(/HOOKD_READ_TOKENS/);
  });
});

describe('EXECUTION_DATA_LIMIT', () => {
  it('is at least 256 bytes, so that a truncation marker fits', () => {
    expect(loadConfig({ EXECUTION_DATA_LIMIT: '256' }).executionDataLimit).toBe(256);
    expect(() => loadConfig({ EXECUTION_DATA_LIMIT: '0' })).toThrow(/EXECUTION_DATA_LIMIT: at least 256 bytes/);
  });
});

describe('layers and values', () => {
  const withFile = (yaml: string, env: Record<string, string> = {}) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'hookd-config-'));
    const file = path.join(dir, 'hookd.yaml');
    writeFileSync(file, yaml);
    try {
      return loadConfig({ HOOKD_CONFIG: file, ...env });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  it('a file key without a value is unset, not the string "null"', () => {
    const c = withFile('HOOKD_ADMIN_TOKEN:\nDATABASE_SCHEMA: ~\nPUBLIC_URL:\n');
    expect(c.adminToken).toBeUndefined(); // generated at start, as when unset
    expect(c.databaseSchema).toBeUndefined();
    expect(c.publicUrl).toBe('http://localhost:3000');
  });

  it('an empty environment variable leaves the file value in place', () => {
    expect(withFile('LISTEN_PORT: 4100\n', { LISTEN_PORT: '' }).listenPort).toBe(4100);
    expect(withFile('LISTEN_PORT: 4100\n', { LISTEN_PORT: '4200' }).listenPort).toBe(4200);
  });

  it('the admin token is trimmed (a secret file ends in a newline) and has no inner whitespace', () => {
    expect(loadConfig({ HOOKD_ADMIN_TOKEN: 'abcdefghijklmnop\n' }).adminToken).toBe('abcdefghijklmnop');
    expect(() => loadConfig({ HOOKD_ADMIN_TOKEN: 'two words' })).toThrow(/HOOKD_ADMIN_TOKEN/);
  });

  it('refuses durations that would break leases, timers or retention', () => {
    expect(() => loadConfig({ QUEUE_LEASE: '0' })).toThrow(/QUEUE_LEASE/);
    expect(() => loadConfig({ QUEUE_LEASE: '30' })).toThrow(/QUEUE_LEASE/); // 30 ms, meant as seconds
    expect(loadConfig({ QUEUE_LEASE: '30s' }).leaseMs).toBe(30_000);
    expect(() => loadConfig({ FLOW_REFRESH: '0' })).toThrow(/FLOW_REFRESH/);
    expect(() => loadConfig({ RETRY_BACKOFF_MAX: '30d' })).toThrow(/RETRY_BACKOFF_MAX/); // beyond a timer's range
    expect(() => loadConfig({ RETENTION: '30' })).toThrow(/RETENTION/); // 30 ms, meant as days
    expect(() => loadConfig({ REQUEST_TIMEOUT: '31m' })).toThrow(/REQUEST_TIMEOUT/); // must stay under the sweep's 1 h
    expect(loadConfig({}).requestTimeoutMs).toBe(300_000);
    expect(loadConfig({ RETENTION: 'off' }).retentionMs).toBe(0);
    expect(loadConfig({ RETENTION: '1h' }).retentionMs).toBe(3_600_000);
    expect(() => withFile('RETRY_BACKOFF: -5\n')).toThrow(/RETRY_BACKOFF/);
    expect(() => withFile('PAYLOAD_SIZE_LIMIT: 1.5\n')).toThrow(/PAYLOAD_SIZE_LIMIT/);
  });

  it('says a duration out of range in the units settings are written in', () => {
    expect(() => loadConfig({ RETENTION: '30s' })).toThrow('RETENTION: must be at least 1m, got 30s');
    expect(() => loadConfig({ QUEUE_LEASE: '2h' })).toThrow('QUEUE_LEASE: must be between 1s and 1h, got 2h');
    expect(() => loadConfig({ QUEUE_LEASE: '30' })).toThrow('QUEUE_LEASE: must be between 1s and 1h, got 30 ms');
    expect(() => loadConfig({ RETRY_BACKOFF_MAX: '30d' })).toThrow('RETRY_BACKOFF_MAX: must be between 0 ms and 24d 20h 31m 23.647s, got 30d');
    expect(() => loadConfig({ FLOW_REFRESH: '90m' })).toThrow('FLOW_REFRESH: must be between 100 ms and 1h, got 1h 30m');
  });

  it('integers are digits: a blank or hex value is refused, not read as 0 or 16', () => {
    expect(() => loadConfig({ WORKER_CONCURRENCY: ' ' })).toThrow(/WORKER_CONCURRENCY/);
    expect(() => loadConfig({ WORKER_CONCURRENCY: '0x10' })).toThrow(/WORKER_CONCURRENCY/);
    expect(loadConfig({ WORKER_CONCURRENCY: '16' }).workerConcurrency).toBe(16);
  });
});

describe('RETENTION off', () => {
  it('0 in any form is off (a YAML number, 0s), not a value below the minimum', () => {
    for (const v of ['0', '0s', 'off']) expect(loadConfig({ RETENTION: v }).retentionMs, v).toBe(0);
    const dir = mkdtempSync(path.join(tmpdir(), 'hookd-config-'));
    try {
      const file = path.join(dir, 'hookd.yaml');
      writeFileSync(file, 'RETENTION: 0\n');
      expect(loadConfig({ HOOKD_CONFIG: file }).retentionMs).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('values refused at start, with the setting named', () => {
  it('log level, public URL, size limit, backend URLs, trusted proxies, config file', () => {
    expect(() => loadConfig({ LOG_LEVEL: 'verbose' })).toThrow(/^LOG_LEVEL: expected one of trace, debug, info, warn, error, fatal, silent, got "verbose"$/);
    expect(loadConfig({ LOG_LEVEL: 'WARN' }).logLevel).toBe('warn');
    expect(() => loadConfig({ PUBLIC_URL: 'not a url' })).toThrow(/^PUBLIC_URL: expected an absolute URL/);
    expect(() => loadConfig({ PUBLIC_URL: 'ftp://x' })).toThrow(/^PUBLIC_URL: expected an http or https URL/);
    expect(loadConfig({ PUBLIC_URL: 'https://hooks.example.com//' }).publicUrl).toBe('https://hooks.example.com');
    expect(() => loadConfig({ PAYLOAD_SIZE_LIMIT: '0' })).toThrow(/^PAYLOAD_SIZE_LIMIT: at least 1 bytes/);
    expect(() => loadConfig({ DATABASE_URL: 'mysql://x/y' })).toThrow(/^DATABASE_URL: expected a postgres: or postgresql: or socket:\/\/ URL/);
    expect(loadConfig({ DATABASE_URL: 'postgresql://u@h/db' }).databaseUrl).toBe('postgresql://u@h/db');
    expect(() => loadConfig({ RABBITMQ_URI: 'http://x' })).toThrow(/^RABBITMQ_URI: expected a amqp: or amqps:\/\/ URL/);
    expect(loadConfig({ TRUST_PROXY: 'yes' }).trustProxy).toBe(true);
    expect(loadConfig({ TRUST_PROXY: '10.0.0.0/8, 127.0.0.1, ::1/128' }).trustProxy).toBe('10.0.0.0/8, 127.0.0.1, ::1/128');
    expect(() => loadConfig({ TRUST_PROXY: 'not-a-cidr' })).toThrow(/^TRUST_PROXY: invalid IP address: not-a-cidr/);
    // What proxy-addr (fastify's) would refuse at the first request is refused at start.
    for (const bad of ['10.0.0.0/33', '10.0.0.0/0', 'Loopback', '::1/ffff::']) expect(() => loadConfig({ TRUST_PROXY: bad }), bad).toThrow(/^TRUST_PROXY/);
    expect(loadConfig({ TRUST_PROXY: 'loopback, 10.0.0.0/255.0.0.0' }).trustProxy).toBe('loopback, 10.0.0.0/255.0.0.0'); // proxy-addr's forms
    // fastify 5 ignores hop counts: refused, not silently without effect.
    expect(() => loadConfig({ TRUST_PROXY: '2' })).toThrow(/^TRUST_PROXY: a hop count is not supported/);
    expect(() => loadConfig({ HOOKD_CONFIG: '/nonexistent/hookd.yaml' })).toThrow(/^HOOKD_CONFIG \/nonexistent\/hookd\.yaml: ENOENT/);
    const bad = path.join(mkdtempSync(path.join(tmpdir(), 'hookd-config-')), 'bad.json');
    writeFileSync(bad, '{"LOG_LEVEL": }');
    expect(() => loadConfig({ HOOKD_CONFIG: bad })).toThrow(new RegExp(`^HOOKD_CONFIG ${bad.replace(/[.]/g, '\\.')}: `));
  });
});

describe('the settings in effect, as the start logs them', () => {
  const env = {
    LISTEN_PORT: '3100',
    HOOKD_ADMIN_TOKEN: 'admin-token-never-logged',
    HOOKD_READ_TOKENS: 'reader-token-never-logged-1,reader-token-never-logged-2',
    HOOKD_SECRET_KEY: 'aa'.repeat(32),
    DATABASE_URL: 'postgres://hookd:db-password-never-logged@db.example:5432/hooks?sslmode=require&password=other-never-logged',
    DATABASE_SCHEMA: 'hooks',
    RABBITMQ_URI: 'amqps://svc:mq-password-never-logged@mq.example/prod',
    RETENTION: '7d',
    WORKER_CONCURRENCY: '16',
  };

  it('names every setting by its variable, with durations and sizes as written, and no secret', () => {
    const shown = configInEffect(loadConfig(env));
    expect(Object.keys(shown).sort()).toEqual(CONFIG_FIELDS.map((f) => f.env).sort());
    expect(shown).toMatchObject({
      LISTEN_PORT: 3100,
      RETENTION: '7d',
      WORKER_CONCURRENCY: 16,
      PAYLOAD_SIZE_LIMIT: '10mb',
      DATABASE_SCHEMA: 'hooks',
      HOOKD_ADMIN_TOKEN: 'set',
      HOOKD_READ_TOKENS: '2 tokens',
      HOOKD_SECRET_KEY: 'set',
      DATABASE_URL: 'postgres://hookd:***@db.example:5432/hooks?sslmode=require&password=***',
      RABBITMQ_URI: 'amqps://svc:***@mq.example/prod',
    });
    const text = JSON.stringify(shown);
    expect(text).not.toMatch(/never-logged|aaaa/);
  });

  it('says where a setting left unset comes from', () => {
    const shown = configInEffect(loadConfig({}));
    expect(shown).toMatchObject({ HOOKD_ADMIN_TOKEN: 'DATA_DIR/admin-token', HOOKD_SECRET_KEY: 'DATA_DIR/secret.key', HOOKD_READ_TOKENS: 'none', DATABASE_URL: null, RETENTION: '30d' });
  });
});
