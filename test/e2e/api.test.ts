import { createHmac } from 'node:crypto';
import { chmodSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminCall, type RunningHookd, startHookd, tempDir, waitFor } from '../helpers/hookd.js';
import { bulkCopyId } from '../../src/api/replayer.js';
import { loadOrCreateMasterKey, SecretBox } from '../../src/auth/secret-box.js';

let h: RunningHookd;
beforeAll(async () => {
  h = await startHookd({ WORKER_CONCURRENCY: '0', PUBLIC_URL: 'https://hooks.example.com/' });
});
afterAll(() => h.close());

describe('admin token', () => {
  it('every /api route needs Authorization: Bearer <token>', async () => {
    const none = await fetch(`${h.url}/api/flows`);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect((await adminCall(h.url, 'wrong', 'GET', '/api/flows')).status).toBe(401);
    const wrong = await fetch(`${h.url}/api/flows`, { headers: { authorization: 'Bearer wrong' } });
    expect(wrong.headers.get('www-authenticate')).toBe('Bearer realm="hookd", error="invalid_token"'); // RFC 6750
    expect((await adminCall(h.url, 'wrong', 'GET', '/api/executions')).status).toBe(401);
    expect((await h.api('GET', '/api/flows')).status).toBe(200);
    // An unknown route under /api is no way around the token either.
    expect((await fetch(`${h.url}/api/nothing-here`)).status).toBe(401);
    expect((await h.api('GET', '/api/nothing-here')).status).toBe(404);
  });

  it('a DATA_DIR hookd creates is private (0700), and so is a new database (0600, its WAL too)', async () => {
    const parent = tempDir();
    const dir = path.join(parent, 'fresh', 'data');
    const app = await startHookd({ DATA_DIR: dir, WORKER_CONCURRENCY: '0' });
    try {
      expect((await app.api('PUT', '/api/flows/private', { steps: [] })).status).toBe(201);
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      for (const f of ['hookd.db', 'hookd.db-wal']) expect(statSync(path.join(dir, f)).mode & 0o777, f).toBe(0o600);
    } finally {
      await app.close();
      rmSync(parent, { recursive: true, force: true });
    }
  });

  it('a DATA_DIR that others can read (made by a build before it was private, or by hand) is said at start, its modes left as they are', async () => {
    // Builds before December 5, 2026, 16:57 made DATA_DIR and hookd.db with the umask's modes
    // (0755, 0644: every stored request readable by any local user); an upgrade kept them silently.
    const parent = tempDir();
    const dir = path.join(parent, 'data');
    await (await startHookd({ DATA_DIR: dir, WORKER_CONCURRENCY: '0' })).close();
    chmodSync(dir, 0o755);
    chmodSync(path.join(dir, 'hookd.db'), 0o644);
    const start = async (): Promise<Array<{ msg: string; paths?: string[] }>> => {
      const lines: string[] = [];
      const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) });
      await (await startHookd({ DATA_DIR: dir, WORKER_CONCURRENCY: '0' }, { logger })).close();
      return lines.map((l) => JSON.parse(l));
    };
    try {
      const said = (await start()).find((l) => l.msg.startsWith('DATA_DIR: other users can read'));
      expect(said?.paths).toEqual([`${dir} (0755)`, `${path.join(dir, 'hookd.db')} (0644)`]);
      expect(statSync(dir).mode & 0o777).toBe(0o755);
      chmodSync(dir, 0o700);
      chmodSync(path.join(dir, 'hookd.db'), 0o600);
      expect((await start()).filter((l) => l.msg.startsWith('DATA_DIR'))).toEqual([]);
    } finally {
      rmSync(parent, { recursive: true, force: true });
    }
  });

  it('a start that cannot work says which setting to fix (exit 1, no stack trace)', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'a-file');
    writeFileSync(file, 'x');
    const busy = await startHookd({ WORKER_CONCURRENCY: '0' });
    try {
      const cases: Array<[Record<string, string>, RegExp]> = [
        [{ DATA_DIR: file }, /^hookd failed to start: DATA_DIR: cannot use .*a-file as a directory/m],
        [{ DATA_DIR: path.join(dir, 'd1'), FLOWS_DIR: path.join(dir, 'no-such-dir') }, /^hookd failed to start: FLOWS_DIR: cannot read .*no-such-dir/m],
        [{ DATA_DIR: path.join(dir, 'd2'), LISTEN_PORT: new URL(busy.url).port }, /^hookd failed to start: LISTEN_PORT: 127\.0\.0\.1:\d+ is already in use/m],
        [{ DATA_DIR: path.join(dir, 'd3'), LOG_LEVEL: 'verbose' }, /^hookd failed to start: LOG_LEVEL: expected one of/m],
        // A generated admin token is shown once listening: not above an error, where it is lost.
        [{ DATA_DIR: path.join(dir, 'd4'), LISTEN_PORT: new URL(busy.url).port, HOOKD_ADMIN_TOKEN: '' }, /^hookd failed to start: LISTEN_PORT: 127\.0\.0\.1:\d+ is already in use/m],
      ];
      for (const [env, message] of cases) {
        const child = spawn(process.execPath, [path.join(import.meta.dirname, '../../dist/src/main.js')], {
          env: { ...process.env, LISTEN_HOST: '127.0.0.1', LISTEN_PORT: '0', HOOKD_ADMIN_TOKEN: 'start-errors-0123456789', ...env },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr.on('data', (d: Buffer) => (out += d.toString()));
        // A start that wrongly succeeds is killed, not left holding a port.
        const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
        const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
        clearTimeout(timer);
        expect(code, JSON.stringify(env)).toBe(1);
        expect(out, JSON.stringify(env)).toMatch(message);
        expect(out).not.toMatch(/\n\s+at /); // no stack trace
        expect(out).not.toMatch(/admin token/);
      }
    } finally {
      await busy.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('is generated at first start into DATA_DIR with mode 0600 and reused after', async () => {
    const dir = tempDir();
    const first = await startHookd({ DATA_DIR: dir, HOOKD_ADMIN_TOKEN: '', WORKER_CONCURRENCY: '0' });
    const file = path.join(dir, 'admin-token');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8').trim()).toBe(first.token);
    await first.close();
    const second = await startHookd({ DATA_DIR: dir, HOOKD_ADMIN_TOKEN: '', WORKER_CONCURRENCY: '0' });
    expect(second.token).toBe(first.token);
    await second.close();
  });
});

describe('read tokens (HOOKD_READ_TOKENS)', () => {
  const reader = 'reader-token-0123456789';
  const other = 'second-reader-abcdefghij';
  let r: RunningHookd;
  beforeAll(async () => {
    r = await startHookd({ WORKER_CONCURRENCY: '0', HOOKD_READ_TOKENS: ` ${reader} , ${other}` });
  });
  afterAll(() => r.close());

  it('read requests, their raw bytes, flows and executions, and change nothing', async () => {
    expect((await r.api('PUT', '/api/flows/ext', { steps: [] })).status).toBe(201);
    const body = '{"order":42}';
    const sent = await fetch(`${r.url}/hook/ext`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-hub-signature-256': 'sha256=abc123' }, body });
    expect(sent.status).toBe(200);
    const { requestId } = (await sent.json()) as { requestId: string };

    for (const token of [reader, other]) {
      const got = await adminCall(r.url, token, 'GET', `/api/requests/${requestId}`);
      expect(got.status).toBe(200);
      expect(got.body).toMatchObject({ id: requestId, flowId: 'ext', body: { order: 42 } });
      // A stored signature with the raw bytes would let a reader send the request again as the sender.
      expect(got.body.headers['x-hub-signature-256']).toBe('[redacted]');
      const listed = await adminCall(r.url, token, 'GET', '/api/requests?flowId=ext');
      expect(listed.body.items[0].headers['x-hub-signature-256']).toBe('[redacted]');
      const raw = await fetch(`${r.url}/api/requests/${requestId}/raw`, { headers: { authorization: `Bearer ${token}` } });
      expect(raw.status).toBe(200);
      expect(await raw.text()).toBe(body);
      expect((await adminCall(r.url, token, 'GET', '/api/flows/ext')).status).toBe(200);
      expect((await adminCall(r.url, token, 'GET', '/api/executions?flowId=ext')).status).toBe(200);
    }

    // Every change is refused before its handler runs, whatever the route.
    const writes: Array<[string, string, unknown?]> = [
      ['POST', '/api/flows', { name: 'x', steps: [] }],
      ['PUT', '/api/flows/ext', { steps: [{ type: 'log' }] }],
      ['POST', '/api/flows/ext/stop'],
      ['DELETE', '/api/flows/ext'],
      ['POST', '/api/dead-letters/nope/retry'],
      ['POST', '/api/dead-letters/retry'],
    ];
    for (const [method, p, payload] of writes) {
      const res = await adminCall(r.url, reader, method, p, payload);
      expect(res.status, `${method} ${p}`).toBe(403);
      expect(res.body).toMatchObject({ error: 'FORBIDDEN', message: expect.stringMatching(/read token/) });
    }
    const flow = await r.api('GET', '/api/flows/ext');
    expect(flow.body).toMatchObject({ status: 'started', steps: [] });
    expect((await r.api('GET', `/api/requests/${requestId}`)).body.headers['x-hub-signature-256']).toBe('sha256=abc123'); // the admin sees it

    // The credentials of the flow's own calls are the admin's: a read token sees them redacted.
    const secretFlow = { steps: [{ id: 'call', type: 'http', url: 'https://api.example.com/x?api_key=q-secret-77&page=2', headers: { Authorization: 'Bearer downstream-secret', 'X-Api-Key': 'k-123', 'X-Trace': 'keep-me' } }] };
    const created = await r.api('PUT', '/api/flows/with-creds', secretFlow);
    expect(created.status).toBe(201);
    expect(created.body.steps[0].headers).toEqual(secretFlow.steps[0]!.headers); // shown once, to the admin who set them
    for (const p of ['/api/flows/with-creds', '/api/flows']) {
      const got = await adminCall(r.url, reader, 'GET', p);
      expect(JSON.stringify(got.body), p).not.toContain('downstream-secret');
      expect(JSON.stringify(got.body), p).not.toContain('k-123');
      expect(JSON.stringify(got.body), p).toContain('keep-me');
      expect(JSON.stringify(got.body), p).not.toContain('q-secret-77');
      expect(JSON.stringify(got.body), p).toContain('page=2');
    }
    // The admin sees masked hints afterwards (sealed at rest, like the trigger's secrets); the URL as written.
    const admin = (await r.api('GET', '/api/flows/with-creds')).body.steps[0];
    expect(admin.headers).toEqual({ Authorization: 'Bearer …cret', 'X-Api-Key': '…', 'X-Trace': 'keep-me' });
    expect(admin.url).toBe(secretFlow.steps[0]!.url);

    // Not a token: refused as before; the admin token still does everything.
    expect((await adminCall(r.url, 'reader-token-012345678X', 'GET', '/api/flows')).status).toBe(401);
    expect((await r.api('POST', '/api/flows/ext/stop')).status).toBe(200);
  });

  it("signature headers are hidden from read tokens in executions too (the first step's input is the message)", async () => {
    const app = await startHookd({ HOOKD_READ_TOKENS: reader });
    try {
      expect((await app.api('PUT', '/api/flows/signed', { steps: [{ id: 'say', type: 'log' }, { id: 'keep', type: 'transform', expression: 'body' }] })).status).toBe(201); // the log step's output is the message, headers and all
      const sent = await fetch(`${app.url}/hook/signed`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-hub-signature-256': 'sha256=abc123' }, body: '{}' });
      const { requestId } = (await sent.json()) as { requestId: string };
      const executionId = await waitFor(async () => (await app.api('GET', `/api/requests/${requestId}`)).body.executionId);
      await waitFor(async () => (await app.api('GET', `/api/executions/${executionId}`)).body.status === 'completed');
      expect(JSON.stringify((await app.api('GET', `/api/executions/${executionId}`)).body)).toContain('abc123'); // the admin's view
      for (const p of [`/api/executions/${executionId}`, '/api/executions?flowId=signed']) {
        const seen = await adminCall(app.url, reader, 'GET', p);
        expect(seen.status).toBe(200);
        expect(JSON.stringify(seen.body), p).not.toContain('abc123');
      }
    } finally {
      await app.close();
    }
  });

  it("an hmac flow's own signature header stays hidden from readers in a replayed copy, after an auth change and after the flow's deletion", async () => {
    const app = await startHookd({ HOOKD_READ_TOKENS: reader });
    try {
      const secret = 'digest-secret-0123456789';
      await app.api('PUT', '/api/flows/digest', { trigger: { type: 'webhook', auth: { type: 'hmac', header: 'X-Payload-Digest', secrets: [secret] } }, steps: [{ id: 'keep', type: 'transform', expression: 'body' }] });
      await app.api('PUT', '/api/flows/open', { steps: [{ id: 'say', type: 'log' }, { id: 'keep', type: 'transform', expression: 'body' }] });
      const body = '{"order":7}';
      const digest = createHmac('sha256', secret).update(body).digest('hex');
      const sent = await fetch(`${app.url}/hook/digest`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-payload-digest': digest }, body });
      expect(sent.status).toBe(200);
      const { requestId } = (await sent.json()) as { requestId: string };
      const copy = await app.api('POST', `/api/requests/${requestId}/replay`, { flowId: 'open' });
      expect(copy.status).toBe(202);
      const copyExecution = await waitFor(async () => (await app.api('GET', `/api/requests/${copy.body.requestId}`)).body.executionId);
      await waitFor(async () => (await app.api('GET', `/api/executions/${copyExecution}`)).body.status === 'completed');
      const readerSees = async (p: string) => JSON.stringify((await adminCall(app.url, reader, 'GET', p)).body);
      expect(JSON.stringify((await app.api('GET', `/api/requests/${copy.body.requestId}`)).body)).toContain(digest); // the admin's view
      for (const p of [`/api/requests/${copy.body.requestId}`, '/api/requests?flowId=open', `/api/executions/${copyExecution}`, '/api/executions?flowId=open']) {
        expect(await readerSees(p), p).not.toContain(digest);
      }
      // The original, once its flow no longer says which header was the signature.
      await app.api('PUT', '/api/flows/digest', { steps: [{ id: 'keep', type: 'transform', expression: 'body' }] });
      expect(await readerSees(`/api/requests/${requestId}`)).not.toContain(digest);
      expect((await app.api('DELETE', '/api/flows/digest')).status).toBe(204);
      expect(await readerSees(`/api/requests/${requestId}`)).not.toContain(digest);
    } finally {
      await app.close();
    }
  });

  it('a read token equal to the admin token stops the start', async () => {
    await expect(startHookd({ WORKER_CONCURRENCY: '0', HOOKD_ADMIN_TOKEN: 'same-token-0123456789', HOOKD_READ_TOKENS: 'same-token-0123456789' })).rejects.toThrow(
      /HOOKD_READ_TOKENS: a read token equals the admin token/,
    );
  });
});

describe('flows', () => {
  it('PUT checks the id in the URL and keeps a stopped flow stopped unless given a status', async () => {
    for (const bad of ['a%20b', 'a%2Fb', 'x'.repeat(129)]) {
      const res = await h.api('PUT', `/api/flows/${bad}`, {});
      expect(res.status, bad).toBe(400);
      expect(res.body.message).toMatch(/\/id: .* must be 1 to 128 characters/);
    }
    expect((await h.api('PUT', '/api/flows/kept-stopped', { status: 'stopped', steps: [] })).status).toBe(201);
    expect((await h.api('PUT', '/api/flows/kept-stopped', { steps: [{ type: 'log' }] })).body.status).toBe('stopped');
    expect((await fetch(`${h.url}/hook/kept-stopped`, { method: 'HEAD' })).status).toBe(404);
    expect((await h.api('PUT', '/api/flows/kept-stopped', { status: 'started', steps: [] })).body.status).toBe('started');
  });

  it('create, read, replace, start/stop, delete — with webhookUrl', async () => {
    const created = await h.api('POST', '/api/flows', { name: 'n', steps: [{ type: 'log' }] });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    expect(id).toMatch(/^[A-Za-z0-9_-]{16}$/);
    expect(created.body).toMatchObject({ name: 'n', status: 'started', trigger: { type: 'webhook' }, steps: [{ id: 'step-1', type: 'log' }] });
    expect(created.body.webhookUrl).toBe(`https://hooks.example.com/hook/${id}`);
    // `.` and `..` are no ids: URL clients remove such segments, the webhook URL could not be called.
    for (const bad of ['.', '..']) expect((await h.api('POST', '/api/flows', { id: bad, steps: [] })).status, bad).toBe(400);
    expect((await h.api('POST', '/api/flows', { id: '...', steps: [] })).status).toBe(201);

    expect((await h.api('GET', `/api/flows/${id}`)).body.name).toBe('n');
    expect((await h.api('GET', '/api/flows')).body.items.map((f: any) => f.id)).toContain(id);

    const replaced = await h.api('PUT', `/api/flows/${id}`, { name: 'm', steps: [] });
    expect(replaced.status).toBe(200);
    expect(replaced.body).toMatchObject({ name: 'm', steps: [], createdAt: created.body.createdAt });

    expect((await h.api('POST', `/api/flows/${id}/stop`)).body.status).toBe('stopped');
    expect((await fetch(`${h.url}/hook/${id}`, { method: 'HEAD' })).status).toBe(404);
    expect((await h.api('POST', `/api/flows/${id}/start`)).body.status).toBe('started');
    expect((await fetch(`${h.url}/hook/${id}`, { method: 'HEAD' })).status).toBe(200);

    expect((await h.api('DELETE', `/api/flows/${id}`)).status).toBe(204);
    expect((await h.api('GET', `/api/flows/${id}`)).status).toBe(404);
    expect((await fetch(`${h.url}/hook/${id}`, { method: 'HEAD' })).status).toBe(404);
  });

  it('webhookUrl names the port actually bound when LISTEN_PORT=0 and PUBLIC_URL is unset', async () => {
    const app = await startHookd({ WORKER_CONCURRENCY: '0' }); // LISTEN_PORT 0, no PUBLIC_URL
    try {
      const created = await app.api('PUT', '/api/flows/where', { steps: [] });
      expect(created.body.webhookUrl).toBe(`http://localhost:${new URL(app.url).port}/hook/where`);
    } finally {
      await app.close();
    }
  });

  it('a flow read with GET can be sent back with PUT as it is (read-only fields ignored)', async () => {
    expect((await h.api('PUT', '/api/flows/round-trip', { name: 'before', steps: [{ id: 'a', type: 'log' }] })).status).toBe(201);
    const read = (await h.api('GET', '/api/flows/round-trip')).body as Record<string, unknown>;
    expect(read).toHaveProperty('webhookUrl');
    const put = await h.api('PUT', '/api/flows/round-trip', { ...read, name: 'after', createdAt: '2000-01-01T00:00:00.000Z' });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ name: 'after', createdAt: read.createdAt, steps: [{ id: 'a', type: 'log' }] });
    expect(Date.parse(put.body.updatedAt)).toBeGreaterThan(Date.parse(read.updatedAt as string));
  });

  it('concurrent changes of one flow: none lost (a create once, every added secret kept or refused)', async () => {
    const creates = await Promise.all(Array.from({ length: 8 }, (_, i) => h.api('POST', '/api/flows', { id: 'raced', name: `n${i}` })));
    expect(creates.map((r) => r.status).sort()).toEqual([201, 409, 409, 409, 409, 409, 409, 409]);
    const winner = creates.find((r) => r.status === 201)!.body.name;
    expect((await h.api('GET', '/api/flows/raced')).body.name).toBe(winner);

    const auth = { type: 'token', secrets: ['first-secret-0123456789'] };
    expect((await h.api('PUT', '/api/flows/rotated-at-once', { trigger: { type: 'webhook', auth } })).status).toBe(201);
    const adds = await Promise.all(Array.from({ length: 4 }, (_, i) => h.api('POST', '/api/flows/rotated-at-once/secrets', { secret: `added-secret-${i}-0123456789` })));
    // A credential holds two secrets: one add wins, the others see it and are refused, none is
    // answered 201 and then lost.
    expect(adds.map((r) => r.status).sort()).toEqual([201, 409, 409, 409]);
    const added = adds.findIndex((r) => r.status === 201);
    const sender = await fetch(`${h.url}/hook/rotated-at-once?token=added-secret-${added}-0123456789`, { method: 'POST' });
    expect(sender.status).toBe(200);
    const starts = await Promise.all([1, 2, 3, 4].map((i) => h.api('POST', `/api/flows/raced/${i % 2 === 0 ? 'start' : 'stop'}`)));
    expect(starts.every((r) => r.status === 200)).toBe(true);
  });

  it('PUT creates under the given id; POST with a taken id is a 409', async () => {
    expect((await h.api('PUT', '/api/flows/fixed-id', { steps: [] })).status).toBe(201);
    // Options kept as given (jobMessage matters in distributed mode only).
    const withOptions = await h.api('PUT', '/api/flows/handed-off', { steps: [], jobMessage: { includeRequest: true } });
    expect(withOptions.status).toBe(201);
    expect((await h.api('GET', '/api/flows/handed-off')).body.jobMessage).toEqual({ includeRequest: true });
    expect((await h.api('POST', '/api/flows', { id: 'fixed-id' })).status).toBe(409);
  });

  it('refuses a secret that looks sealed (it would be taken for one when read back)', async () => {
    const res = await h.api('PUT', '/api/flows/sealed-look', { trigger: { type: 'webhook', auth: { type: 'token', secrets: ['v1:abcd:efgh:ijkl'] } } });
    expect(res.status).toBe(400);
    expect(res.body.message).toMatch(/\/trigger\/auth\/secrets\/0: has the form of a sealed secret/);
  });

  it('rejects invalid definitions with 400 and a reason naming the place', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ status: 'running' }, /\/status: must be one of "started", "stopped"/],
      [{ steps: [{ type: 'teleport' }] }, /\/steps\/0\/type: unknown step type "teleport"/],
      [{ steps: [{ type: 'transform' }] }, /\/steps\/0.*expression/],
      [{ steps: [{ type: 'filter', expression: 'a +' }] }, /\/steps\/0\/expression: invalid JSONata/],
      [{ steps: [{ type: 'log', id: 'a' }, { type: 'log', id: 'a' }] }, /step id "a" is used twice/],
      [{ id: 'bad id!' }, /\/id/],
      [{ color: 'red' }, /^Invalid flow definition: \/: must not have additional properties: color$/],
      [{ trigger: { type: 'webhook', response: { status: 500 } } }, /\/trigger\/response\/status/],
      [{ jobMessage: { includeRequest: 'yes' } }, /\/jobMessage\/includeRequest/],
      [{ jobMessage: { payload: true } }, /jobMessage/],
      // A credential is checked against its own type only: what hmac needs, not that it is not basic.
      [
        { trigger: { type: 'webhook', auth: { type: 'hmac', secrets: [], extra: 1 } } },
        /^Invalid flow definition: \/trigger\/auth: must have required properties header; \/trigger\/auth: must not have additional properties: extra; \/trigger\/auth\/secrets: must not have fewer than 1 items$/,
      ],
      [{ name: 7, trigger: { type: 'webhook', auth: { type: 'basic', username: 'u' } } }, /^Invalid flow definition: \/name: must be string; \/trigger\/auth: must have required properties secrets$/],
      [{ trigger: { type: 'webhook', auth: { type: 'oauth' } } }, /\/trigger\/auth\/type: unknown auth type "oauth" \(one of none, basic, apiKey, token, hmac, github/],
    ];
    for (const [body, reason] of cases) {
      const res = await h.api('POST', '/api/flows', body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error).toBe('VALIDATION_FAILED');
      expect(res.body.message).toMatch(reason);
    }
    const mismatch = await h.api('PUT', '/api/flows/a', { id: 'b' });
    expect(mismatch.status).toBe(400);
    // An http method in lower case is the method (as curl and fetch take it); another word is not.
    const lower = await h.api('PUT', '/api/flows/lower-method', { steps: [{ type: 'http', url: 'http://127.0.0.1:8099/x', method: 'put' }] });
    expect(lower.status, JSON.stringify(lower.body)).toBe(201);
    expect(lower.body.steps[0].method).toBe('PUT');
    expect((await h.api('PUT', '/api/flows/lower-method', { steps: [{ type: 'http', url: 'http://127.0.0.1:8099/x', method: 'fetch' }] })).body.message).toMatch(/\/steps\/0\/method: must be one of "GET", "POST"/);
  });

  it('loads flows from FLOWS_DIR at start (YAML and JSON) and refuses an invalid file', async () => {
    const dir = tempDir();
    const flows = path.join(dir, 'flows');
    mkdirSync(flows);
    writeFileSync(path.join(flows, 'from-yaml.yaml'), 'name: Y\ntrigger:\n  type: webhook\n  auth: { type: token, secrets: ["a-token-of-some-length"] }\nsteps:\n  - type: transform\n    expression: body\n');
    writeFileSync(path.join(flows, 'b.json'), JSON.stringify({ id: 'from-json', status: 'stopped' }));
    const app = await startHookd({ DATA_DIR: path.join(dir, 'data'), FLOWS_DIR: flows, WORKER_CONCURRENCY: '0' });
    expect((await app.api('GET', '/api/flows/from-yaml')).body).toMatchObject({ name: 'Y', status: 'started' });
    expect((await app.api('GET', '/api/flows/from-json')).body.status).toBe('stopped');
    await app.close();
    // A restart with the files unchanged replaces nothing worth a word; a flow changed through the
    // API since is replaced by its file, and the start says which.
    const replacedLogs = async (): Promise<unknown[]> => {
      const lines: string[] = [];
      const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
      const again = await startHookd({ DATA_DIR: path.join(dir, 'data'), FLOWS_DIR: flows, WORKER_CONCURRENCY: '0' }, { logger });
      await again.close();
      return lines.map((l) => JSON.parse(l)).filter((l) => String(l.msg).startsWith('FLOWS_DIR: stored flows that differed')).map((l) => l.flowIds);
    };
    expect(await replacedLogs()).toEqual([]);
    const changed = await startHookd({ DATA_DIR: path.join(dir, 'data'), WORKER_CONCURRENCY: '0' });
    expect((await changed.api('PUT', '/api/flows/from-yaml', { name: 'changed in the API', steps: [] })).status).toBe(200);
    await changed.close();
    expect(await replacedLogs()).toEqual([['from-yaml']]);
    writeFileSync(path.join(flows, 'broken.yaml'), 'steps:\n  - type: nope\n');
    await expect(startHookd({ DATA_DIR: path.join(dir, 'data2'), FLOWS_DIR: flows, WORKER_CONCURRENCY: '0' })).rejects.toThrow(/broken\.yaml.*unknown step type/);
  });
});

describe('ids and queries', () => {
  // On SQLite these ids were 404s already; the check matters on PostgreSQL, which answered U+0000
  // with a 500 (distributed.test.ts: "an id PostgreSQL cannot hold").
  it('an id hookd cannot have made is a 404; a bad query is a 400', async () => {
    // U+0000 is refused by PostgreSQL with an error; an id like this names nothing anywhere.
    for (const [method, url, what] of [
      ['GET', '/api/requests/%00', 'Request'],
      ['GET', '/api/requests/a%20b/raw', 'Request'],
      ['GET', '/api/requests/x/attachments/%00', 'Attachment'],
      ['GET', '/api/executions/%00', 'Execution'],
      ['POST', '/api/dead-letters/%00/retry', 'Dead letter'],
      ['GET', '/api/flows/a%2Fb', 'Flow'],
    ] as const) {
      const res = await h.api(method, url);
      expect(res.status, url).toBe(404);
      expect(res.body.error, url).toBe('NOT_FOUND');
      expect(res.body.message, url).toMatch(new RegExp(`^${what} ".*" not found$`)); // says what was not found
    }
    expect((await h.api('GET', '/api/flows/a%2Fb')).body.message).toBe('Flow "a/b" not found');
    for (const url of [
      '/api/requests?before=%00',
      '/api/executions?flowId=a%20b',
      '/api/dead-letters?limit=1.5',
      '/api/dead-letters?limit=0',
      '/api/dead-letters?flowId=%00',
    ]) {
      const res = await h.api('GET', url);
      expect(res.status, url).toBe(400);
      expect(res.body.error, url).toBe('VALIDATION_FAILED');
      expect(res.body.message, url).toMatch(/^Invalid request: \/querystring\/(before|flowId|limit): /);
    }
    // An enum names its values, once.
    const status = await h.api('GET', '/api/executions?status=bogus');
    expect(status.body).toMatchObject({ error: 'VALIDATION_FAILED', details: ['/querystring/status: must be one of "running", "retrying", "completed", "filtered", "dead"'] });
    expect((await h.api('GET', '/api/dead-letters?limit=5')).status).toBe(200);
    // A pattern is said in words.
    expect((await h.api('GET', '/api/executions?flowId=a%20b')).body.details).toEqual(['/querystring/flowId: must be 1 to 128 characters of A-Z a-z 0-9 . _ - (and not . or ..)']);
    expect((await h.api('POST', '/api/requests/replay', { flowId: 'x', since: '2026-12-06' })).body.details).toEqual([
      '/since: must be a date and time with its zone (RFC 3339, e.g. 2026-12-05T18:00:00Z)',
    ]);
  });

  it('a query parameter a route does not take is a 400 naming it, not a filter silently left out', async () => {
    for (const url of ['/api/executions?flowid=orders', '/api/requests?flowId=orders&status=dead', '/api/dead-letters?flow=orders']) {
      const res = await h.api('GET', url);
      expect(res.status, url).toBe(400);
      expect(res.body.error).toBe('VALIDATION_FAILED');
      expect(res.body.details, url).toHaveLength(1);
      expect(res.body.details[0], url).toMatch(/^\/querystring\/(flowid|status|flow): not a parameter of this route \(it takes .*flowId/);
    }
    expect((await h.api('GET', '/api/executions?flowId=orders&limit=1')).status).toBe(200);
  });

  it('a path the API has, called with a method it does not take, is a 405 with Allow', async () => {
    expect((await h.api('PUT', '/api/flows/allow', { steps: [] })).status).toBe(201);
    for (const [method, url, allow] of [
      ['PATCH', '/api/flows/allow', 'GET, PUT, DELETE, HEAD'],
      ['DELETE', '/api/executions', 'GET, HEAD'],
      ['GET', '/api/flows/allow/start', 'POST'],
    ] as const) {
      const res = await fetch(`${h.url}${url}`, { method, headers: { authorization: `Bearer ${h.token}` } });
      expect(res.status, `${method} ${url}`).toBe(405);
      expect(res.headers.get('allow')?.split(', ').sort(), `${method} ${url}`).toEqual(allow.split(', ').sort());
      expect(((await res.json()) as { error: string }).error).toBe('METHOD_NOT_ALLOWED');
    }
    // Without a token: 401 first, as for every route.
    expect((await fetch(`${h.url}/api/flows/allow`, { method: 'PATCH' })).status).toBe(401);
    expect((await h.api('GET', '/api/nothing/here')).status).toBe(404);
  });

  it('a request page cursor (before) that names nothing any more is a 410, not an empty last page', async () => {
    expect((await h.api('PUT', '/api/flows/cursor', { steps: [] })).status).toBe(201);
    const sent = await fetch(`${h.url}/hook/cursor`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    const { requestId } = (await sent.json()) as { requestId: string };
    // What a client holds when retention deleted the last request of its previous page: requests
    // page from the cursor's row, so without it the page would be empty whatever is older.
    const res = await h.api('GET', '/api/requests?flowId=cursor&before=purged-long-ago');
    expect(res.status).toBe(410);
    expect(res.body.error).toBe('CURSOR_GONE');
    expect(res.body.message).toMatch(/purged-long-ago.*first page/);
    // An existing cursor at the end of the list is an empty page, as before.
    const oldest = await h.api('GET', `/api/requests?flowId=cursor&before=${requestId}`);
    expect(oldest.status).toBe(200);
    expect(oldest.body).toEqual({ items: [] });
  });

  it('an execution page cursor that names nothing any more still pages: executions page by id alone', async () => {
    const app = await startHookd({});
    try {
      expect((await app.api('PUT', '/api/flows/cursor', { steps: [] })).status).toBe(201);
      const sent = await fetch(`${app.url}/hook/cursor`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      const { requestId } = (await sent.json()) as { requestId: string };
      await waitFor(async () => (await app.api('GET', '/api/executions?flowId=cursor')).body.items.length === 1);
      // Every generated id sorts before 'purged-long-ago' and after '0-purged'.
      const older = await app.api('GET', '/api/executions?flowId=cursor&before=purged-long-ago');
      expect(older.status).toBe(200);
      expect(older.body.items.map((e: { requestId: string }) => e.requestId)).toEqual([requestId]);
      const end = await app.api('GET', '/api/executions?flowId=cursor&before=0-purged');
      expect(end.status).toBe(200);
      expect(end.body).toEqual({ items: [] });
      // The execution of one request; and the request's, in the list of requests.
      const one = await app.api('GET', `/api/executions?requestId=${requestId}`);
      expect(one.body.items.map((e: { requestId: string }) => e.requestId)).toEqual([requestId]);
      expect((await app.api('GET', '/api/requests?flowId=cursor')).body.items.map((r: { executionId?: string }) => r.executionId)).toEqual([one.body.items[0].id]);
      for (const q of [`requestId=${requestId}&status=dead`, `requestId=${requestId}&flowId=other`, 'requestId=no-such-request', `requestId=${requestId}&before=0-purged`]) {
        expect((await app.api('GET', `/api/executions?${q}`)).body, q).toEqual({ items: [] });
      }
    } finally {
      await app.close();
    }
  });

  it("a flow's executions in a time range (since, until): the filtered ones of this morning, page by page", async () => {
    const app = await startHookd({});
    try {
      expect((await app.api('PUT', '/api/flows/ranged', { steps: [{ type: 'filter', expression: 'body.keep' }] })).status).toBe(201);
      const send = async (keep: boolean): Promise<string> => {
        const res = await fetch(`${app.url}/hook/ranged`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ keep }) });
        return ((await res.json()) as { requestId: string }).requestId;
      };
      const done = async (n: number) => waitFor(async () => (await app.api('GET', '/api/executions?flowId=ranged')).body.items.filter((e: { status: string }) => e.status !== 'running').length === n);
      const first = await send(false);
      await done(1);
      await new Promise((r) => setTimeout(r, 20));
      const from = new Date().toISOString();
      const inRange = [await send(false), await send(true), await send(false)];
      await done(4);
      await new Promise((r) => setTimeout(r, 20));
      const to = new Date().toISOString();
      const last = await send(false);
      await done(5);
      const ids = (body: { items: Array<{ requestId: string }> }) => body.items.map((e) => e.requestId);
      const range = await app.api('GET', `/api/executions?flowId=ranged&since=${from}&until=${to}`);
      expect(range.status).toBe(200);
      expect(ids(range.body)).toEqual([...inRange].reverse());
      expect(range.body.next).toBeUndefined();
      expect(ids((await app.api('GET', `/api/executions?flowId=ranged&status=filtered&since=${from}&until=${to}`)).body)).toEqual([inRange[2], inRange[0]]);
      expect(ids((await app.api('GET', `/api/executions?flowId=ranged&since=${to}`)).body)).toEqual([last]);
      expect(ids((await app.api('GET', `/api/executions?flowId=ranged&until=${from}`)).body)).toEqual([first]);
      // Paged: the last page inside the range has no next, whatever is older.
      const p1 = await app.api('GET', `/api/executions?flowId=ranged&since=${from}&until=${to}&limit=2`);
      expect(ids(p1.body)).toEqual([inRange[2], inRange[1]]);
      const p2 = await app.api('GET', `/api/executions?flowId=ranged&since=${from}&until=${to}&limit=2&before=${p1.body.next}`);
      expect(ids(p2.body)).toEqual([inRange[0]]);
      expect(p2.body.next).toBeUndefined();
      const bad = await app.api('GET', '/api/executions?since=yesterday');
      expect(bad.status).toBe(400);
      expect(bad.body.details).toEqual(['/querystring/since: must be a date and time with its zone (RFC 3339, e.g. 2026-12-05T18:00:00Z)']);
      expect((await app.api('GET', '/api/executions?since=2026-02-30T00:00:00Z')).status).toBe(400);
    } finally {
      await app.close();
    }
  });

  it("a body the API cannot parse gets a code from hookd's registry", async () => {
    const call = (headers: Record<string, string>, body?: string) =>
      fetch(`${h.url}/api/flows`, { method: 'POST', headers: { authorization: `Bearer ${h.token}`, ...headers }, ...(body === undefined ? {} : { body }) }).then(async (r) => ({ status: r.status, body: (await r.json()) as { error: string } }));
    expect(await call({ 'content-type': 'application/json' }, '{"steps": [')).toMatchObject({ status: 400, body: { error: 'INVALID_BODY', message: expect.stringMatching(/^Invalid JSON body: .*JSON/) } });
    expect(await call({ 'content-type': 'application/xml' }, '<flow/>')).toMatchObject({
      status: 415,
      body: { error: 'UNSUPPORTED_MEDIA_TYPE', message: 'The API takes JSON bodies (Content-Type: application/json), not application/xml' },
    });
    expect(await call({ 'content-type': 'application/json' }, '{"name":"x","__proto__":{"polluted":true}}')).toMatchObject({ status: 400, body: { error: 'INVALID_BODY', message: expect.stringMatching(/__proto__/) } });
    // A JSON text that is not an object is not a definition (null made a flow with defaults).
    expect(await call({ 'content-type': 'application/json' }, 'null')).toMatchObject({ status: 400, body: { error: 'VALIDATION_FAILED' } });
    expect(await call({ 'content-type': 'text/plain' }, '{"id":"as-text"}')).toMatchObject({ status: 415 });
    const big = await call({ 'content-type': 'application/json' }, JSON.stringify({ name: 'x'.repeat(1_100_000) }));
    expect(big).toEqual({ status: 413, body: { error: 'PAYLOAD_TOO_LARGE', message: 'Payload exceeds the limit of 1048576 bytes' } });
  });

  it('an empty body is no body, whatever its Content-Type (routes that take none)', async () => {
    expect((await h.api('PUT', '/api/flows/empty-bodies', { steps: [] })).status).toBe(201);
    for (const type of ['application/json', 'application/x-www-form-urlencoded', 'text/plain']) {
      const res = await fetch(`${h.url}/api/flows/empty-bodies/stop`, { method: 'POST', headers: { authorization: `Bearer ${h.token}`, 'content-type': type }, body: '' });
      expect(res.status, type).toBe(200);
      expect(((await res.json()) as { status: string }).status).toBe('stopped');
    }
    const del = await fetch(`${h.url}/api/flows/empty-bodies`, { method: 'DELETE', headers: { authorization: `Bearer ${h.token}`, 'content-type': 'application/json' } });
    expect(del.status).toBe(204);
  });

  it('GET /api/requests pages by a byte budget too: big bodies come a few at a time, none skipped', async () => {
    expect((await h.api('PUT', '/api/flows/big-bodies', { steps: [] })).status).toBe(201);
    const sent: string[] = [];
    for (let i = 0; i < 3; i++) {
      // 7 MB each: two fit the 16 MiB budget of a page, three do not.
      const body = JSON.stringify({ i, pad: 'x'.repeat(7_000_000) });
      const res = await fetch(`${h.url}/hook/big-bodies`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      expect(res.status).toBe(200);
      sent.push(((await res.json()) as { requestId: string }).requestId);
    }
    const first = await h.api('GET', '/api/requests?flowId=big-bodies&limit=10');
    expect(first.status).toBe(200);
    expect(first.body.items.map((m: { id: string }) => m.id)).toEqual([sent[2], sent[1]]);
    expect(first.body.items[0].size).toBe(7_000_016);
    expect(first.body.next).toBe(sent[1]);
    const second = await h.api('GET', `/api/requests?flowId=big-bodies&limit=10&before=${first.body.next}`);
    expect(second.body.items.map((m: { id: string }) => m.id)).toEqual([sent[0]]);
    expect(second.body.next).toBeUndefined();
    // Small bodies: the limit decides, as before.
    const small = await h.api('GET', '/api/requests?flowId=big-bodies&limit=1');
    expect(small.body.items).toHaveLength(1);
    expect(small.body.next).toBe(sent[2]);
  });

  it('a secret is deleted only by its index in digits', async () => {
    const auth = { type: 'token', secrets: [{ value: 'first-secret-0123456789' }, { value: 'second-secret-0123456789' }] };
    expect((await h.api('PUT', '/api/flows/rotating', { trigger: { type: 'webhook', auth } })).status).toBe(201);
    for (const index of ['', '%20', '0x1', '1e0', '-0']) {
      expect((await h.api('DELETE', `/api/flows/rotating/secrets/${index}`)).status, JSON.stringify(index)).toBe(404);
    }
    const after = await h.api('GET', '/api/flows/rotating');
    expect(after.body.trigger.auth.secrets).toHaveLength(2);
    expect((await h.api('DELETE', '/api/flows/rotating/secrets/1')).status).toBe(200);
    expect((await h.api('GET', '/api/flows/rotating')).body.trigger.auth.secrets).toHaveLength(1);
  });
});

describe('replay (POST /api/requests/{id}/replay)', () => {
  it('runs a stored request again as a new request, through its flow as defined now, or another flow', async () => {
    const calls: Array<{ key: string | undefined; body: string }> = [];
    let failing = true;
    const receiver = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d));
      req.on('end', () => {
        calls.push({ key: req.headers['idempotency-key'] as string | undefined, body });
        res.writeHead(failing ? 500 : 200).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/in`;
    const dataDir = tempDir();
    const app = await startHookd({ DATA_DIR: dataDir });
    try {
      const flow = (expression: string) => ({ steps: [{ id: 'shape', type: 'transform', expression }, { id: 'send', type: 'http', url }], retry: { maxAttempts: 1 } });
      expect((await app.api('PUT', '/api/flows/replayed', flow('{ "v": 1, "id": body.id }'))).status).toBe(201);
      const raw = '{"id":"evt-1",  "spaced": true}';
      const sent = await fetch(`${app.url}/hook/replayed/sub?x=1`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-sender': 's' }, body: raw });
      const { requestId } = (await sent.json()) as { requestId: string };
      const firstExecution = await waitFor(async () => {
        const e = (await app.api('GET', `/api/requests/${requestId}`)).body.executionId;
        return e ? ((await app.api('GET', `/api/executions/${e}`)).body.status === 'dead' ? e : undefined) : undefined;
      });

      // The receiver is fixed and the flow changed: the replay runs the flow as it is now.
      failing = false;
      expect((await app.api('PUT', '/api/flows/replayed', flow('{ "v": 2, "id": body.id }'))).status).toBe(200);
      const replay = await app.api('POST', `/api/requests/${requestId}/replay`);
      expect(replay.status).toBe(202);
      expect(replay.body).toMatchObject({ replayOf: requestId, flowId: 'replayed', status: 'started' });
      expect(replay.body.requestId).not.toBe(requestId);
      const copy = await waitFor(async () => {
        const r = (await app.api('GET', `/api/requests/${replay.body.requestId}`)).body;
        return r.executionId && (await app.api('GET', `/api/executions/${r.executionId}`)).body.status === 'completed' ? r : undefined;
      });
      const original = (await app.api('GET', `/api/requests/${requestId}`)).body;
      expect(copy).toMatchObject({ flowId: 'replayed', method: 'POST', path: '/sub', query: { x: '1' }, rawBody: original.rawBody, body: original.body });
      expect(copy.headers).toMatchObject({ 'x-sender': 's', 'x-hookd-replay-of': requestId });
      expect(copy.executionId).not.toBe(firstExecution);
      expect(Date.parse(copy.receivedAt)).toBeGreaterThan(Date.parse(original.receivedAt));
      expect((await app.api('GET', `/api/executions/${firstExecution}`)).body.status).toBe('dead'); // the original stays as it was
      expect(calls.map((c) => JSON.parse(c.body))).toEqual([{ v: 1, id: 'evt-1' }, { v: 2, id: 'evt-1' }]);
      expect(calls[1]!.key).toBe(`${replay.body.requestId}:send`); // its own idempotency key

      // Into another flow; a flow that does not exist is a 409, an unknown request a 404.
      expect((await app.api('PUT', '/api/flows/other-flow', { steps: [{ id: 'keep', type: 'transform', expression: 'body' }] })).status).toBe(201);
      const elsewhere = await app.api('POST', `/api/requests/${requestId}/replay`, { flowId: 'other-flow' });
      expect(elsewhere).toMatchObject({ status: 202, body: { flowId: 'other-flow' } });
      await waitFor(async () => (await app.api('GET', '/api/executions?flowId=other-flow&status=completed')).body.items.length === 1);
      expect((await app.api('POST', `/api/requests/${requestId}/replay`, { flowId: 'nope' })).status).toBe(409);
      // A misspelt option is refused, not ignored (it would replay into the request's own flow).
      const misspelt = await app.api('POST', `/api/requests/${requestId}/replay`, { flowid: 'other-flow' });
      expect(misspelt).toMatchObject({ status: 400, body: { error: 'VALIDATION_FAILED', message: expect.stringContaining('flowid') } });
      expect((await app.api('POST', `/api/requests/${requestId}/replay`, { flowId: 42 })).status).toBe(400);
      expect((await app.api('POST', '/api/requests/no-such-request/replay')).status).toBe(404);
      // Files belong to one request: the copy gets copies of its own, with the same bytes.
      const binary = await fetch(`${app.url}/hook/other-flow`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: Buffer.from([1, 2, 3]) });
      const binaryId = ((await binary.json()) as { requestId: string }).requestId;
      const withFile = await app.api('POST', `/api/requests/${binaryId}/replay`);
      expect(withFile.status).toBe(202);
      const [origFile, copyFile] = await Promise.all([binaryId, withFile.body.requestId].map(async (id) => (await app.api('GET', `/api/requests/${id}`)).body));
      expect(copyFile.rawAttachment.id).not.toBe(origFile.rawAttachment.id);
      expect(copyFile.attachments).toEqual([copyFile.rawAttachment]);
      expect({ ...copyFile.rawAttachment, id: 'x' }).toEqual({ ...origFile.rawAttachment, id: 'x' });
      const downloaded = await fetch(`${app.url}/api/requests/${withFile.body.requestId}/raw`, { headers: { authorization: `Bearer ${app.token}` } });
      expect(Buffer.from(await downloaded.arrayBuffer())).toEqual(Buffer.from([1, 2, 3]));
      // The original's file changed at rest: a 409, and the copy's file is not left behind.
      const files = () => readdirSync(path.join(dataDir, 'attachments'), { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
      const before = files().length;
      const stored = files().find((e) => e.name === origFile.rawAttachment.id)!;
      writeFileSync(path.join(stored.parentPath, stored.name), Buffer.from([9, 9, 9]));
      const changed = await app.api('POST', `/api/requests/${binaryId}/replay`);
      expect(changed).toMatchObject({ status: 409, body: { message: expect.stringMatching(/no longer has the bytes/) } });
      expect(files().length).toBe(before);
      // Gone from the store: a 409 that says so.
      await app.app.attachments.delete([origFile.rawAttachment.id]);
      const gone = await app.api('POST', `/api/requests/${binaryId}/replay`);
      expect(gone).toMatchObject({ status: 409, body: { message: expect.stringMatching(/no longer in the attachment store/) } });
    } finally {
      await app.close();
      receiver.closeAllConnections();
      await new Promise((r) => receiver.close(r));
    }
  });
});

describe('bulk replay (POST /api/requests/replay)', () => {
  it("replays a flow's requests of a time window, oldest first, page by page; a repeated call replays nothing twice", async () => {
    const app = await startHookd({});
    try {
      await app.api('PUT', '/api/flows/window', { steps: [{ id: 'keep', type: 'transform', expression: 'body' }] });
      await app.api('PUT', '/api/flows/window-other', { steps: [{ id: 'keep', type: 'transform', expression: 'body' }] });
      const post = async (flow: string, n: number, type = 'application/json', body: string | Uint8Array = JSON.stringify({ n })) => {
        const res = await fetch(`${app.url}/hook/${flow}`, { method: 'POST', headers: { 'content-type': type }, body });
        return ((await res.json()) as { requestId: string }).requestId;
      };
      const before = await post('window', 0);
      await new Promise((r) => setTimeout(r, 20));
      const since = new Date().toISOString();
      await new Promise((r) => setTimeout(r, 5));
      const inWindow: string[] = [];
      for (let n = 1; n <= 5; n++) inWindow.push(await post('window', n));
      const file = await post('window', 6, 'application/octet-stream', new Uint8Array([1, 2, 3]));
      const gone = await post('window', 8, 'application/octet-stream', new Uint8Array([4]));
      await app.app.attachments.delete([(await app.api('GET', `/api/requests/${gone}`)).body.rawAttachment.id]);
      await post('window-other', 7);

      for (const bad of [{}, { flowId: 'window', since: 'yesterday' }, { flowId: 'window', limit: 0 }, { flowId: 'window', limit: 1001 }, { flowId: 'window', from: since },
        { flowId: 'window', since: '2026-02-30T00:00:00Z' }, { flowId: 'window', until: '2026-12-05T24:00:00Z' }, { flowId: 'window', since: '2026-12-05T10:00:00+25:00' },
        { flowId: 'window', after: '12~abc' }, { flowId: 'window', since, until: since }]) {
        const res = await app.api('POST', '/api/requests/replay', bad);
        expect(res.status, JSON.stringify(bad)).toBe(400);
        // Every validation error lists its problems in `details`, each led by its path.
        expect(res.body.details?.length, JSON.stringify(res.body)).toBeGreaterThan(0);
        for (const d of res.body.details) expect(d).toMatch(/^\/\w*/);
      }
      expect((await app.api('POST', '/api/requests/replay', { flowId: 'window', into: 'nope' })).status).toBe(409);

      const first = await app.api('POST', '/api/requests/replay', { flowId: 'window', since, limit: 3 });
      expect(first.status).toBe(202);
      expect(first.body).toMatchObject({ flowId: 'window', status: 'started', replayed: 3, alreadyReplayed: 0, skipped: [] });
      expect(first.body.requests.map((r: { replayOf: string }) => r.replayOf)).toEqual(inWindow.slice(0, 3));
      const { until, next } = first.body as { until: string; next: string };
      expect(typeof next).toBe('string');
      // The same call again (after a timeout, say): nothing stored twice.
      const again = await app.api('POST', '/api/requests/replay', { flowId: 'window', since, until, limit: 3 });
      expect(again.body).toMatchObject({ replayed: 0, alreadyReplayed: 3, next });
      // Going on needs the first answer's `until`: a new "now" would take the copies too.
      expect((await app.api('POST', '/api/requests/replay', { flowId: 'window', since, after: next })).status).toBe(400);
      const rest = await app.api('POST', '/api/requests/replay', { flowId: 'window', since, until, after: next, limit: 10 });
      // A file gone from the store skips its request (said why); the others' files are copied.
      expect(rest.body).toMatchObject({ replayed: 3, alreadyReplayed: 0, skipped: [{ requestId: gone, code: 'ATTACHMENT_GONE', reason: expect.stringMatching(/no longer in the attachment store/) }] });
      expect(rest.body.requests.map((r: { replayOf: string }) => r.replayOf)).toEqual([...inWindow.slice(3), file]);
      expect(rest.body.next).toBeUndefined();
      const copies = [...first.body.requests, ...rest.body.requests] as Array<{ requestId: string; replayOf: string }>;
      const fileCopy = (await app.api('GET', `/api/requests/${copies[copies.length - 1]!.requestId}`)).body;
      expect(fileCopy.rawAttachment).toMatchObject({ size: 3 });
      expect(fileCopy.rawAttachment.id).not.toBe((await app.api('GET', `/api/requests/${file}`)).body.rawAttachment.id);

      // Each copy ran, with the original's body; the request before `since` and the other flow's were not replayed.
      await waitFor(async () => (await app.api('GET', '/api/executions?flowId=window&status=completed&limit=100')).body.items.length === 1 + 5 + 2 + 6);
      for (const c of copies) {
        const copy = (await app.api('GET', `/api/requests/${c.requestId}`)).body;
        const original = (await app.api('GET', `/api/requests/${c.replayOf}`)).body;
        expect(copy).toMatchObject({ flowId: 'window', body: original.body, headers: { 'x-hookd-replay-of': c.replayOf } });
      }
      expect(copies.map((c) => c.replayOf)).not.toContain(before);
      // Copies are received after `until`: replaying the window again from the start takes only originals.
      const whole = await app.api('POST', '/api/requests/replay', { flowId: 'window', until });
      expect(whole.body).toMatchObject({ replayed: 1, alreadyReplayed: 6 });
      expect(whole.body.requests[0].replayOf).toBe(before);

      // A second run (another `until`) replays the originals again, not the first run's copies —
      // unless asked to; a repeat of the first run, after a file was removed, still counts its copy as stored.
      const second = await app.api('POST', '/api/requests/replay', { flowId: 'window', since });
      // (the 7 copies: the first run's 6, and the whole window's copy of the request before `since`)
      expect(second.body).toMatchObject({ replayed: 6, leftOutReplays: 7, alreadyReplayed: 0 });
      expect(second.body.requests.map((r: { replayOf: string }) => r.replayOf)).toEqual([...inWindow, file]);
      const third = await app.api('POST', '/api/requests/replay', { flowId: 'window', since, includeReplays: true, limit: 1000 });
      expect(third.body).toMatchObject({ replayed: 6 + 13, leftOutReplays: 0 });
      await app.app.attachments.delete([(await app.api('GET', `/api/requests/${file}`)).body.rawAttachment.id]);
      const repeat = await app.api('POST', '/api/requests/replay', { flowId: 'window', since, until, after: next, limit: 10 });
      expect(repeat.body).toMatchObject({ replayed: 0, alreadyReplayed: 3, skipped: [{ requestId: gone }] });

      // Into another flow; a deleted flow's requests can still be replayed elsewhere.
      expect((await app.api('DELETE', '/api/flows/window-other')).status).toBe(204);
      const moved = await app.api('POST', '/api/requests/replay', { flowId: 'window-other', into: 'window' });
      expect(moved.body).toMatchObject({ flowId: 'window', replayed: 1 });
      expect((await app.api('POST', '/api/requests/replay', { flowId: 'window-other' })).status).toBe(409);
    } finally {
      await app.close();
    }
  });
});

describe('bulk replay: copies of their own', () => {
  it("a base64 flow's copy names its own file; a copy id someone took skips that request only", async () => {
    const dataDir = tempDir();
    const app = await startHookd({ DATA_DIR: dataDir, WORKER_CONCURRENCY: '0' });
    try {
      await app.api('PUT', '/api/flows/b64', { trigger: { type: 'webhook', payloadType: 'base64' }, steps: [] });
      await app.api('PUT', '/api/flows/other', { steps: [] });
      const sent = await fetch(`${app.url}/hook/b64`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array([7, 8, 9]) });
      const original = (await app.api('GET', `/api/requests/${((await sent.json()) as { requestId: string }).requestId}`)).body;
      expect(original.body).toEqual({ origin: null, originAttachment: original.rawAttachment.id });
      const single = await app.api('POST', `/api/requests/${original.id}/replay`);
      const copy = (await app.api('GET', `/api/requests/${single.body.requestId}`)).body;
      expect(copy.body).toEqual({ origin: null, originAttachment: copy.rawAttachment.id });
      expect(copy.rawAttachment.id).not.toBe(original.rawAttachment.id);

      // Ids of bulk copies are keyed with the cluster's key: only someone who has it can take one
      // first. Taken anyway (here, by the test that has the key), that request is skipped, the rest replayed.
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        const r = await fetch(`${app.url}/hook/b64`, { method: 'POST', headers: { 'content-type': 'text/plain', 'x-request-id': `order-${i}` }, body: `n${i}` });
        ids.push(((await r.json()) as { requestId: string }).requestId);
      }
      const until = Date.now() + 1_000; // ahead: order-3, sent below, is in the window
      const key = new SecretBox(loadOrCreateMasterKey(dataDir)).deriveKey('replay-copy-ids:v1');
      // Both ways a copy id can be found taken: at the accept (no files), before copying files.
      for (const id of [bulkCopyId(key, 'order-1', 'b64', until), bulkCopyId(key, original.id, 'b64', until)]) {
        expect((await fetch(`${app.url}/hook/other`, { method: 'POST', headers: { 'content-type': 'text/plain', 'x-request-id': id }, body: 'x' })).status).toBe(200);
      }
      // A sender's own x-hookd-replay-of is not kept: its event is no copy, and is replayed.
      const posing = await fetch(`${app.url}/hook/b64`, { method: 'POST', headers: { 'content-type': 'text/plain', 'x-request-id': 'order-3', 'x-hookd-replay-of': 'order-0' }, body: 'n3' });
      expect(posing.status).toBe(200);
      expect((await app.api('GET', '/api/requests/order-3')).body.headers['x-hookd-replay-of']).toBeUndefined();
      const bulk = await app.api('POST', '/api/requests/replay', { flowId: 'b64', since: new Date(until - 60_000).toISOString(), until: new Date(until).toISOString() });
      expect(bulk.status).toBe(202);
      expect(bulk.body).toMatchObject({ leftOutReplays: 1 }); // the single replay's copy
      expect(bulk.body.requests.map((r: { replayOf: string }) => r.replayOf)).toEqual(['order-0', 'order-2', 'order-3']);
      expect(bulk.body.skipped).toEqual([
        { requestId: original.id, code: 'REQUEST_ID_CONFLICT', reason: expect.stringMatching(/is another request's/) },
        { requestId: 'order-1', code: 'REQUEST_ID_CONFLICT', reason: expect.stringMatching(/already used by another flow/) },
      ]);
    } finally {
      await app.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('bulk retry of dead letters (POST /api/dead-letters/retry)', () => {
  it("after the receiver's outage: a flow's dead letters run again and complete; the body is checked", async () => {
    let up = false;
    const received: string[] = [];
    const receiver = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        if (up) received.push(String(req.headers['idempotency-key']));
        res.writeHead(up ? 200 : 503).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    const port = (receiver.address() as AddressInfo).port;
    const h = await startHookd({});
    try {
      await h.api('PUT', '/api/flows/outage', { steps: [{ id: 'call', type: 'http', url: `http://127.0.0.1:${port}/` }], retry: { maxAttempts: 1 } });
      await h.api('PUT', '/api/flows/outage-other', { steps: [{ id: 'call', type: 'http', url: `http://127.0.0.1:${port}/` }], retry: { maxAttempts: 1 } });
      const post = (flow: string) => fetch(`${h.url}/hook/${flow}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) ids.push(((await (await post('outage')).json()) as { requestId: string }).requestId);
      expect((await post('outage-other')).status).toBe(200);
      const deadOf = async (flow: string) => (await h.api('GET', `/api/dead-letters?flowId=${flow}`)).body.items as unknown[];
      await waitFor(async () => (await deadOf('outage')).length === 3 && (await deadOf('outage-other')).length === 1);

      for (const bad of [{ since: 'yesterday' }, { limit: 0 }, { limit: 10_001 }, { flowId: 'a b' }, { flowIds: ['outage'] }]) {
        const res = await h.api('POST', '/api/dead-letters/retry', bad);
        expect(res.status, JSON.stringify(bad)).toBe(400);
      }
      // Nothing died since a minute from now.
      expect((await h.api('POST', '/api/dead-letters/retry', { flowId: 'outage', since: new Date(Date.now() + 60_000).toISOString() })).body).toEqual({ retried: 0, remaining: 0 });
      up = true;
      const res = await h.api('POST', '/api/dead-letters/retry', { flowId: 'outage', limit: 2 });
      expect(res).toEqual({ status: 202, body: { retried: 2, remaining: 1 } });
      expect((await h.api('POST', '/api/dead-letters/retry', { flowId: 'outage' })).body).toEqual({ retried: 1, remaining: 0 });
      await waitFor(() => received.length === 3);
      expect(received.map((k) => k.split(':')[0]).sort()).toEqual([...ids].sort());
      for (const id of ids) {
        const { items } = (await h.api('GET', `/api/executions?flowId=outage&limit=10`)).body as { items: Array<{ requestId: string; status: string }> };
        expect(items.find((e) => e.requestId === id)?.status).toBe('completed');
      }
      // The other flow's dead letter was not touched; a call without a body takes every dead letter.
      expect(await deadOf('outage-other')).toHaveLength(1);
      const all = await adminCall(h.url, h.token, 'POST', '/api/dead-letters/retry');
      expect(all.status).toBe(202);
      expect(all.body.retried).toBeGreaterThanOrEqual(1);
      await waitFor(() => received.length === 4);
    } finally {
      await h.close();
      receiver.close();
    }
  });
});

describe('a stopped flow', () => {
  it("keeps its jobs waiting without spending attempts, and runs them as soon as it is started", async () => {
    const app = await startHookd({});
    try {
      expect((await app.api('PUT', '/api/flows/paused', { steps: [{ id: 'keep', type: 'transform', expression: 'body' }] })).status).toBe(201);
      const sent = await fetch(`${app.url}/hook/paused`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"a":1}' });
      const { requestId } = (await sent.json()) as { requestId: string };
      await waitFor(async () => (await app.api('GET', `/api/requests/${requestId}`)).body.executionId);
      expect((await app.api('POST', '/api/flows/paused/stop')).status).toBe(200);
      // A job for the stopped flow (a replay): it waits in the queue, where it is, not claimed (and
      // put back, again and again) by the workers.
      const replay = await app.api('POST', `/api/requests/${requestId}/replay`);
      expect(replay.body).toMatchObject({ status: 'stopped' });
      await new Promise((r) => setTimeout(r, 500));
      expect((await app.api('GET', '/api/queue')).body).toMatchObject({ ready: 1, inFlight: 0, delayed: 0 });
      expect((await app.api('GET', `/api/requests/${replay.body.requestId}`)).body.executionId).toBeUndefined();
      // Started: run at once (the next look would be a minute away), on its first attempt.
      const started = Date.now();
      expect((await app.api('POST', '/api/flows/paused/start')).status).toBe(200);
      const executionId = await waitFor(async () => (await app.api('GET', `/api/requests/${replay.body.requestId}`)).body.executionId, 5_000);
      expect(Date.now() - started).toBeLessThan(5_000);
      const e = await waitFor(async () => {
        const x = (await app.api('GET', `/api/executions/${executionId}`)).body;
        return x.status === 'completed' ? x : undefined;
      });
      expect(e.attempts).toBe(1);
    } finally {
      await app.close();
    }
  });
});

describe('operations', () => {
  it('healthz, readyz, metrics', async () => {
    expect((await fetch(`${h.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${h.url}/healthz`, { method: 'HEAD' })).status).toBe(200);
    expect((await fetch(`${h.url}/readyz`, { method: 'HEAD' })).status).toBe(200);
    const ready = await fetch(`${h.url}/readyz`);
    expect(ready.status).toBe(200);
    const metrics = await (await fetch(`${h.url}/metrics`)).text();
    expect(metrics).toContain('hookd_ingress_commit_seconds');
    expect(metrics).not.toContain('hookd_broker_confirm_seconds'); // distributed mode only
    // Embedded mode: every answer above waited for an fsync of the WAL (readyz's heartbeat write too).
    expect(Number(/^hookd_store_wal_sync_seconds_count (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThan(0);
    expect(metrics).toMatch(/^hookd_store_wal_restarts_total \d+$/m);
    expect(metrics).toMatch(/^hookd_ready 1$/m); // the check of /readyz, at each scrape
  });

  it('a request this process committed is run from memory, and /metrics counts it (MESSAGE_CACHE)', async () => {
    const app = await startHookd({});
    try {
      await app.api('PUT', '/api/flows/cached', { steps: [{ id: 's', type: 'transform', expression: 'body.n' }] });
      const res = await fetch(`${app.url}/hook/cached`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"n":7}' });
      expect(res.status).toBe(200);
      const { requestId } = (await res.json()) as { requestId: string };
      const execution = await waitFor(async () => {
        const list = (await app.api('GET', '/api/executions?flowId=cached')).body as { items: Array<{ status: string; requestId: string }> };
        return list.items.find((e) => e.requestId === requestId && e.status === 'completed');
      });
      expect(execution).toBeDefined();
      const metrics = await (await fetch(`${app.url}/metrics`)).text();
      // The execution read it from memory. The API's reads (the step's input is the message, derived
      // from the stored request) go to the store, and are not counted: the counter speaks of executions.
      expect(metrics).toMatch(/^hookd_message_cache_reads_total\{result="hit"\} 1$/m);
      expect(metrics).toMatch(/^hookd_message_cache_reads_total\{result="miss"\} 0$/m);
      expect(metrics).toMatch(/^hookd_message_cache_bytes 0$/m); // read once, then dropped
      // Through the API, the first step's input is the message as the step saw it.
      const one = (await app.api('GET', `/api/executions/${(execution as unknown as { id: string }).id}`)).body as { steps: Array<{ input?: string; output?: string }> };
      expect(JSON.parse(one.steps[0]!.input!)).toMatchObject({ id: requestId, flowId: 'cached', method: 'POST', body: { n: 7 }, contentType: 'application/json' });
      expect(one.steps[0]!.output).toBe('7');
    } finally {
      await app.close();
    }
  });

  it('/metrics counts executions and step runs, times the queue delay and shows the queue depth', async () => {
    const app = await startHookd({});
    try {
      await app.api('PUT', '/api/flows/counted', {
        steps: [
          { id: 'big', type: 'filter', expression: 'body.n > 5' },
          { id: 'shape', type: 'transform', expression: '{ "n": body.n }' },
        ],
      });
      // Nothing listens on port 47: connection refused, and with one attempt a dead letter.
      await app.api('PUT', '/api/flows/doomed', { steps: [{ id: 'call', type: 'http', url: 'http://127.0.0.1:47/' }], retry: { maxAttempts: 1 } });
      const post = (flow: string, n: number) =>
        fetch(`${app.url}/hook/${flow}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ n }) });
      for (const [flow, n] of [['counted', 7], ['counted', 1], ['doomed', 1]] as const) expect((await post(flow, n)).status).toBe(200);
      const text = await waitFor(async () => {
        const t = await (await fetch(`${app.url}/metrics`)).text();
        return /^hookd_executions_finished_total\{status="dead"\} 1$/m.test(t) && /^hookd_queue_jobs\{state="dead"\} 1$/m.test(t) ? t : undefined;
      });
      expect(text).toMatch(/^hookd_executions_finished_total\{status="completed"\} 1$/m);
      expect(text).toMatch(/^hookd_executions_finished_total\{status="filtered"\} 1$/m);
      expect(text).toMatch(/^hookd_step_duration_seconds_count\{type="filter",status="completed"\} 1$/m);
      expect(text).toMatch(/^hookd_step_duration_seconds_count\{type="filter",status="filtered"\} 1$/m);
      expect(text).toMatch(/^hookd_step_duration_seconds_count\{type="transform",status="completed"\} 1$/m);
      expect(text).toMatch(/^hookd_step_duration_seconds_count\{type="http",status="failed"\} 1$/m);
      expect(text).toMatch(/^hookd_queue_delay_seconds_count 3$/m);
      expect(text).toMatch(/^hookd_queue_jobs\{state="ready"\} 0$/m);
      expect(text).toMatch(/^hookd_queue_jobs\{state="in_flight"\} 0$/m);

      // Paged: a full page says where the next starts.
      const page = await app.api('GET', '/api/dead-letters?limit=1');
      expect(page.body.items).toHaveLength(1);
      expect(page.body.next).toMatch(/^\d+(\.\d+)?~/);
      expect((await app.api('GET', `/api/dead-letters?limit=1&before=${encodeURIComponent(page.body.next)}`)).body).toEqual({ items: [] });
      expect((await app.api('GET', '/api/dead-letters?before=nope')).status).toBe(400);
      // The dead letter, dismissed: gone from the list and the count; a second DELETE is a 404.
      const [dead] = (await app.api('GET', '/api/dead-letters?flowId=doomed')).body.items;
      expect((await app.api('DELETE', `/api/dead-letters/${dead.id}`)).status).toBe(204);
      expect((await app.api('DELETE', `/api/dead-letters/${dead.id}`)).status).toBe(404);
      expect((await app.api('GET', '/api/dead-letters?flowId=doomed')).body.items).toEqual([]);
      expect((await app.api('GET', '/api/queue')).body.dead).toBe(0);
    } finally {
      await app.close();
    }
  });

  it('an instance that runs no flows (WORKER_CONCURRENCY=0) keeps no messages in memory', async () => {
    await h.api('PUT', '/api/flows/ingest-only', { steps: [{ id: 's', type: 'transform', expression: 'body' }] });
    const res = await fetch(`${h.url}/hook/ingest-only`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"n":1}' });
    expect(res.status).toBe(200);
    expect(await (await fetch(`${h.url}/metrics`)).text()).toMatch(/^hookd_message_cache_bytes 0$/m);
  });
});
