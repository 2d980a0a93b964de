import assert from 'node:assert/strict';
import { test } from 'node:test';
import { endToEndHeaders, formatAuthority, parseAbsoluteHttpUrl, parseAuthority, parseBasicCredentials } from '../src/proxy/http-parse.js';

test('CONNECT authorities: names, IPv4, bracketed IPv6; anything that could break a request line is refused', () => {
  assert.deepEqual(parseAuthority('example.com:443'), { host: 'example.com', port: 443 });
  assert.deepEqual(parseAuthority('10.0.0.1:8080'), { host: '10.0.0.1', port: 8080 });
  assert.deepEqual(parseAuthority('[fd7a:115c:a1e0::1]:22'), { host: 'fd7a:115c:a1e0::1', port: 22 });
  for (const bad of ['example.com', 'example.com:0', 'example.com:65536', 'example.com:12a', '::1:443', '[::1]443', '[nope]:1', 'a b:80', 'x\r\nInjected: 1:80', ':80', '[::1:80']) {
    assert.equal(parseAuthority(bad), null, bad);
  }
  assert.equal(formatAuthority({ host: '::1', port: 80 }), '[::1]:80');
  assert.equal(formatAuthority({ host: 'example.com', port: 80 }), 'example.com:80');
});

test('absolute-form URLs: default port, origin-form path, no userinfo', () => {
  assert.deepEqual(parseAbsoluteHttpUrl('http://example.com'), { target: { host: 'example.com', port: 80 }, path: '/', authority: 'example.com' });
  assert.deepEqual(parseAbsoluteHttpUrl('HTTP://[::1]:8080/a/b?c=d#frag'), { target: { host: '::1', port: 8080 }, path: '/a/b?c=d', authority: '[::1]:8080' });
  assert.deepEqual(parseAbsoluteHttpUrl('http://example.com?x=1')?.path, '/?x=1');
  for (const bad of ['/relative', 'https://example.com/', 'http://user:pw@example.com/', 'http://', 'http://exa mple.com/', 'ftp://x/']) {
    assert.equal(parseAbsoluteHttpUrl(bad), null, bad);
  }
});

test('Basic credentials split at the first colon; other schemes and junk are ignored', () => {
  const c = parseBasicCredentials(`Basic ${Buffer.from('key:pa:ss').toString('base64')}`);
  assert.deepEqual([c?.username.toString(), c?.password.toString()], ['key', 'pa:ss']);
  assert.equal(parseBasicCredentials(`basic   ${Buffer.from('k:k').toString('base64')}  `)?.username.toString(), 'k');
  assert.equal(parseBasicCredentials(undefined), null);
  assert.equal(parseBasicCredentials('Bearer abc'), null);
  assert.equal(parseBasicCredentials(`Basic ${Buffer.from('no-colon').toString('base64')}`), null);
  assert.equal(parseBasicCredentials('Basic !!!'), null);
});

test('hop-by-hop headers, headers named in Connection, and Proxy-Authorization are dropped', () => {
  const raw = ['Host', 'x', 'Connection', 'keep-alive, X-Hop', 'X-Hop', '1', 'Proxy-Authorization', 'Basic a2V5OmtleQ==', 'Proxy-Connection', 'keep-alive', 'Keep-Alive', '5', 'Transfer-Encoding', 'chunked', 'TE', 'trailers', 'Upgrade', 'h2c', 'Expect', '100-continue', 'X-Keep', 'y'];
  assert.deepEqual(endToEndHeaders(raw, new Set(['expect'])), ['Host', 'x', 'X-Keep', 'y']);
});
