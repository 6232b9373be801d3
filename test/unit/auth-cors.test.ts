import { describe, expect, it } from 'vitest';
import { allowedOrigin, corsPreflight, corsResponseHeaders, schemeHeaders } from '../../src/auth/cors.js';

describe('CORS', () => {
  const cors = { origins: ['https://app.example.com', 'http://localhost:3000'] };

  it('allows listed origins exactly (default ports normalised), refuses others', () => {
    expect(allowedOrigin(cors, 'https://app.example.com')).toBe('https://app.example.com');
    expect(allowedOrigin({ origins: ['https://app.example.com:443'] }, 'https://app.example.com')).toBe('https://app.example.com');
    expect(allowedOrigin(cors, 'http://localhost:3000')).toBe('http://localhost:3000');
    expect(allowedOrigin(cors, 'http://localhost:3001')).toBeUndefined();
    expect(allowedOrigin(cors, 'https://app.example.com.evil.test')).toBeUndefined();
    expect(allowedOrigin(cors, 'http://app.example.com')).toBeUndefined();
    expect(allowedOrigin(cors, 'null')).toBeUndefined();
    expect(allowedOrigin(cors, undefined)).toBeUndefined();
    expect(allowedOrigin(undefined, 'https://app.example.com')).toBeUndefined();
    expect(allowedOrigin({ origins: ['*'] }, 'https://anything.test')).toBe('*');
  });

  it('answers a preflight with methods, the scheme headers and max-age', () => {
    const r = corsPreflight({ ...cors, headers: ['X-Tenant'] }, { type: 'standard-webhooks', secrets: ['whsec_YWJj'] }, {
      origin: 'https://app.example.com',
      requestMethod: 'POST',
    });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.status).toBe(204);
    expect(r.headers['access-control-allow-origin']).toBe('https://app.example.com');
    expect(r.headers['vary']).toBe('Origin');
    expect(r.headers['access-control-allow-methods']).toBe('GET, HEAD, POST, PUT, PATCH');
    const allowed = (r.headers['access-control-allow-headers'] ?? '').split(', ');
    expect(allowed).toEqual(expect.arrayContaining(['content-type', 'webhook-id', 'webhook-timestamp', 'webhook-signature', 'x-tenant']));
    expect(r.headers['access-control-max-age']).toBe('600');
  });

  it('includes each scheme\'s credential/signature headers', () => {
    expect(schemeHeaders({ type: 'github', secrets: ['s'] })).toEqual(['x-hub-signature-256']);
    expect(schemeHeaders({ type: 'apiKey', header: 'X-Key', secrets: ['s'] })).toEqual(['x-key']);
    expect(schemeHeaders({ type: 'apiKey', query: 'k', secrets: ['s'] })).toEqual([]);
    expect(schemeHeaders({ type: 'slack', secrets: ['s'] })).toEqual(['x-slack-signature', 'x-slack-request-timestamp']);
    expect(schemeHeaders({ type: 'basic', username: 'u', secrets: ['s'] })).toEqual(['authorization']);
    expect(schemeHeaders(undefined)).toEqual([]);
  });

  it('refuses a preflight from an unlisted origin, for an unknown method, or without config', () => {
    expect(corsPreflight(cors, undefined, { origin: 'https://evil.test', requestMethod: 'POST' })).toEqual({ ok: false });
    expect(corsPreflight(cors, undefined, { origin: 'https://app.example.com', requestMethod: 'DELETE' })).toEqual({ ok: false });
    expect(corsPreflight(cors, undefined, { origin: 'https://app.example.com', requestMethod: undefined })).toEqual({ ok: false });
    expect(corsPreflight(undefined, undefined, { origin: 'https://app.example.com', requestMethod: 'POST' })).toEqual({ ok: false });
  });

  it('wildcard: `*`, no Vary; configurable max-age', () => {
    const r = corsPreflight({ origins: ['*'], maxAgeSeconds: 60 }, undefined, { origin: 'https://x.test', requestMethod: 'put' });
    expect(r).toMatchObject({ ok: true, headers: { 'access-control-allow-origin': '*', 'access-control-max-age': '60' } });
    if (r.ok) expect(r.headers['vary']).toBeUndefined();
  });

  it('headers for actual responses', () => {
    expect(corsResponseHeaders(cors, 'https://app.example.com')).toEqual({
      vary: 'Origin',
      'access-control-allow-origin': 'https://app.example.com',
      'access-control-expose-headers': 'x-request-id, retry-after',
    });
    expect(corsResponseHeaders(cors, 'https://evil.test')).toEqual({ vary: 'Origin' });
    expect(corsResponseHeaders(undefined, 'https://app.example.com')).toEqual({});
    expect(corsResponseHeaders({ origins: ['*'] }, 'https://x.test')['access-control-allow-origin']).toBe('*');
  });
});
