import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  encodeConnectRequest,
  endToEndHeaders,
  formatAuthority,
  HttpConnectHandshake,
  parseAbsoluteHttpUrl,
  parseAuthority,
  parseBasicCredentials,
  parseResponseHead,
} from '../src/protocol/http.js';

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

test('device-side CONNECT: the request names the target as an authority, the reply head is parsed up to its blank line', () => {
  assert.equal(encodeConnectRequest({ host: '::1', port: 443 }).toString('latin1'), 'CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n');
  assert.equal(encodeConnectRequest({ host: 'example.com', port: 80 }).toString('latin1'), 'CONNECT example.com:80 HTTP/1.1\r\nHost: example.com:80\r\n\r\n');
  assert.deepEqual(parseResponseHead(Buffer.from('HTTP/1.1 200 Connection established\r\n\r\nhi')), { kind: 'reply', status: 200, headLength: 39 });
  assert.deepEqual(parseResponseHead(Buffer.from('HTTP/1.1 200 OK\r\n')), { kind: 'need-more' });
  assert.equal(parseResponseHead(Buffer.from('SSH-2.0-OpenSSH\r\n')).kind, 'invalid');
  assert.equal(parseResponseHead(Buffer.from('HTTP/2 200\r\n\r\n')).kind, 'invalid');
});

test('device-side CONNECT handshake: done after a 2xx head with early bytes left, a refusal by its status', () => {
  const m = new HttpConnectHandshake({ host: 'example.com', port: 443 });
  assert.deepEqual(m.hello, encodeConnectRequest({ host: 'example.com', port: 443 }));
  assert.deepEqual(m.feed(Buffer.from('HTTP/1.1 200 OK\r\nX-A: 1\r\n')), { kind: 'need-more' });
  assert.deepEqual(m.feed(Buffer.from('HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nearly')), { kind: 'done', consumed: 27 });
  const refusals: [number, string][] = [[407, 'not-allowed'], [403, 'not-allowed'], [404, 'unreachable'], [502, 'unreachable'], [503, 'unreachable'], [504, 'timeout'], [500, 'error']];
  for (const [status, reason] of refusals) {
    assert.deepEqual(m.feed(Buffer.from(`HTTP/1.1 ${status} No\r\n\r\n`)), { kind: 'fail', reason, message: `device proxy answered ${status}` });
  }
  assert.equal((m.feed(Buffer.from('SSH-2.0-OpenSSH\r\n')) as { reason: string }).reason, 'protocol');
  assert.equal(m.closed().reason, 'protocol');
});
