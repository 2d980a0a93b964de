import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
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
  scanConnectHead,
} from '../src/protocol/http.js';
import { int, pick, rng } from './helpers/random.js';
import { closeServer, listen } from './helpers/targets.js';

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

const AUTH_VALUE = `Basic ${Buffer.from('sk-key:sk-key').toString('base64')}`;
const PLAIN_HEAD = `CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nUser-Agent: curl/8.5.0\r\nProxy-Authorization: ${AUTH_VALUE}\r\nProxy-Connection: Keep-Alive\r\n\r\n`;

test('raw CONNECT head: the plain form is read with its target and credentials, by any chunking; the rest is other', () => {
  const bytes = Buffer.from(`${PLAIN_HEAD}early`, 'latin1');
  const want = { kind: 'connect', authority: 'example.com:443', authorization: AUTH_VALUE, headLength: PLAIN_HEAD.length };
  assert.deepEqual(scanConnectHead(bytes, 16_384), want);
  // Every prefix of the head waits for more; from the blank line on, the answer is the same.
  for (let n = 0; n < bytes.length; n++) {
    const scan = scanConnectHead(bytes.subarray(0, n), 16_384);
    assert.deepEqual(scan, n < PLAIN_HEAD.length ? { kind: 'need-more' } : want, `prefix of ${n}`);
  }
  const cases: [string, string | null][] = [
    ['CONNECT [::1]:22 HTTP/1.0\r\n\r\n', '[::1]:22'],
    ['CONNECT no-port HTTP/1.1\r\nproxy-AUTHORIZATION:   x  \r\nProxy-Authorization: second\r\n\r\n', 'no-port'],
    ['GET http://example.com/ HTTP/1.1\r\n\r\n', null],
    ['connect example.com:443 HTTP/1.1\r\n\r\n', null],
    ['CONNECT  example.com:443 HTTP/1.1\r\n\r\n', null],
    ['CONNECT example.com:443 HTTP/2.0\r\n\r\n', null],
    ['CONNECT example.com:443 HTTP/1.1\n\r\n', null],
    ['CONNECT exa%0d%0ample.com:443 HTTP/1.1\r\n\r\n', null],
    ['CONNECT example.com:443 HTTP/1.1\r\nX-A: one\r\n two\r\n\r\n', null],
    ['CONNECT example.com:443 HTTP/1.1\r\nX-A : one\r\n\r\n', null],
    ['CONNECT example.com:443 HTTP/1.1\r\nX-A: \x7f\r\n\r\n', null],
    ['CONNECT example.com:443 HTTP/1.1\r\nX-A: caf\xe9\r\n\r\n', null],
    ['CONNECT example.com:443 HTTP/1.1\r\nContent-Length: 0\r\n\r\n', null],
    ['CONNECT example.com:443 HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n', null],
  ];
  for (const [head, authority] of cases) {
    const scan = scanConnectHead(Buffer.from(head, 'latin1'), 16_384);
    if (authority === null) assert.deepEqual(scan, { kind: 'other' }, JSON.stringify(head));
    else assert.equal(scan.kind === 'connect' && scan.authority, authority, JSON.stringify(head));
  }
  const second = scanConnectHead(Buffer.from(cases[1]![0], 'latin1'), 16_384);
  assert.equal(second.kind === 'connect' && second.authorization, 'x', 'the first of repeated Proxy-Authorization headers, trimmed');
  // A bad byte decides at once, before the head is complete; so does reaching the size limit.
  assert.deepEqual(scanConnectHead(Buffer.from('CONNECT exa\nmple', 'latin1'), 16_384), { kind: 'other' });
  assert.deepEqual(scanConnectHead(Buffer.from('CONN', 'latin1'), 16_384), { kind: 'need-more' });
  assert.deepEqual(scanConnectHead(Buffer.from(PLAIN_HEAD, 'latin1'), PLAIN_HEAD.length), { kind: 'other' });
  assert.deepEqual(scanConnectHead(Buffer.from(PLAIN_HEAD.slice(0, 40), 'latin1'), 40), { kind: 'other' });
});

/** Node's reading of the last probe: the CONNECT its server emitted (target and Proxy-Authorization). */
interface NodeReading {
  url: string;
  authorization: string | undefined;
}

/** Sends `head` to Node's own server and waits for it to decide (it closes the connection either way). */
async function probe(port: number, head: Buffer): Promise<void> {
  const socket = net.connect({ port, host: '127.0.0.1' });
  socket.on('error', () => {});
  socket.write(head);
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 2_000);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  socket.destroy();
}

test('raw CONNECT head: whatever it reads as a CONNECT, Node\'s parser reads the same (seeded mutations of a real head)', async () => {
  // Node's own server, untouched: the reference the raw front must agree with. Probes go one at a time.
  let reading: NodeReading | null = null;
  const server = http.createServer({ maxHeaderSize: 16_384 });
  server.on('connect', (req: http.IncomingMessage, socket: net.Socket) => {
    reading = { url: req.url ?? '', authorization: req.headers['proxy-authorization'] };
    socket.destroy();
  });
  server.on('clientError', (_err, socket: net.Socket) => socket.destroy());
  const port = await listen(server, '127.0.0.1');
  try {
    const r = rng(0x14c0ffee);
    const pieces = ['\r', '\n', ' ', '\t', ' \t ', ':', '\0', '\x7f', '\xe9', 'a', '%', '[', ']', '/', ',', 'Content-Length: 0\r\n', '\r\n', 'HTTP/1.1'];
    let compared = 0;
    for (let i = 0; i < 400; i++) {
      let head = PLAIN_HEAD;
      // One to three mutations: insert, delete or replace at a random place before the blank line.
      for (let m = int(r, 3) + 1; m > 0; m--) {
        const at = int(r, head.length - 4);
        const kind = int(r, 3);
        const piece = pick(r, pieces);
        head = kind === 0 ? head.slice(0, at) + piece + head.slice(at) : kind === 1 ? head.slice(0, at) + head.slice(at + 1) : head.slice(0, at) + piece + head.slice(at + 1);
      }
      const bytes = Buffer.from(head, 'latin1');
      const scan = scanConnectHead(bytes, 16_384);
      if (scan.kind !== 'connect') continue;
      reading = null;
      await probe(port, bytes);
      const node = reading as NodeReading | null;
      assert.ok(node !== null, `Node refused what the raw front reads as a CONNECT: ${JSON.stringify(head)}`);
      assert.equal(node.url, scan.authority, JSON.stringify(head));
      assert.equal(node.authorization, scan.authorization, JSON.stringify(head));
      compared++;
    }
    assert.ok(compared >= 60, `enough mutated heads still read as a CONNECT to compare (${compared})`);
  } finally {
    server.closeAllConnections();
    await closeServer(server);
  }
});
