import { expect, it } from 'vitest';
import { maskUrlCredentials } from '../../src/core/mask-url.js';

it('masks the password and credential-named query values, leaves the rest and unparsable text to the caller', () => {
  expect(maskUrlCredentials('postgres://hookd:s3cret@db:5432/h?sslmode=require&password=x&sslkey=/k', '***')).toBe(
    'postgres://hookd:***@db:5432/h?sslmode=require&password=***&sslkey=***',
  );
  expect(maskUrlCredentials('https://api.example/in?api_key=abc&page=2&keyword=shoes&sig=9f', '[redacted]')).toBe(
    'https://api.example/in?api_key=[redacted]&page=2&keyword=shoes&sig=[redacted]',
  );
  const plain = 'https://api.example/in?page=2&q=a%20b';
  expect(maskUrlCredentials(plain, '***')).toBe(plain); // nothing to mask: the text as given
  expect(maskUrlCredentials('not a url', '***')).toBeUndefined();
});
