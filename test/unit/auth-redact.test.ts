import { expect, it } from 'vitest';
import { redactBody, redactKeysDeep, redactQuery, redactRawBody } from '../../src/auth/redact.js';
import type { WebhookAuth } from '../../src/auth/schema.js';

const token: WebhookAuth = { type: 'token', secrets: ['t0ken-secret'] };

it('a `__proto__` key stays data through the redactions (body, query, rebuilt raw bytes, deep copies)', () => {
  const body = JSON.parse('{"__proto__":{"polluted":"yes"},"token":"t0ken-secret","a":1}') as Record<string, unknown>;
  const redacted = redactBody(token, body) as Record<string, unknown>;
  expect(Object.getPrototypeOf(redacted)).toBe(Object.prototype);
  expect(JSON.stringify(redacted)).toBe('{"__proto__":{"polluted":"yes"},"token":"[redacted]","a":1}');
  expect(redactRawBody(token, 'application/json', body, Buffer.from('x')).toString()).toBe('{"__proto__":{"polluted":"yes"},"token":"[redacted]","a":1}');
  const form = Object.fromEntries([['__proto__', 'keepme'], ['token', 't0ken-secret'], ['b', '2']]);
  expect(redactRawBody(token, 'application/x-www-form-urlencoded', form, Buffer.from('x')).toString()).toBe('__proto__=keepme&token=%5Bredacted%5D&b=2');
  const query = Object.fromEntries([['__proto__', '2'], ['token', 't0ken-secret']]);
  expect(JSON.stringify(redactQuery(token, query))).toBe('{"__proto__":"2","token":"[redacted]"}');
  const deep = redactKeysDeep({ m: body }, (k) => k === 'token') as { m: Record<string, unknown> };
  expect(JSON.stringify(deep)).toBe('{"m":{"__proto__":{"polluted":"yes"},"token":"[redacted]","a":1}}');
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();
});
