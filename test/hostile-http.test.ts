// Smuggling and injection through both proxy listeners, with raw bytes on a real socket: every refused request gets
// its exact answer (status, X-Tailgate-Error, the one-line reason, Connection: close; or the SOCKS5 reply), the
// connection is closed, and a device stand-in that records every byte it is sent proves none of them got there.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, beforeEach, test } from 'node:test';
import { rawExchange, startHarness, type Harness } from './helpers/proxy-harness.js';
import { closeServer, listen } from './helpers/targets.js';
import { waitFor } from '../testbed/wait.js';

/** A device that records every byte and connection it gets, and answers each request head with a short 200. */
interface RecordingDevice {
  port: number;
  connections: number;
  bytes(): string;
  reset(): void;
  close(): Promise<void>;
}

async function startRecordingDevice(): Promise<RecordingDevice> {
  const chunks: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  const device = {
    port: 0,
    connections: 0,
    bytes: () => Buffer.concat(chunks).toString('latin1'),
    reset: () => {
      chunks.length = 0;
      device.connections = 0;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await closeServer(server);
    },
  };
  const server = net.createServer((s) => {
    device.connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
    let pending = '';
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      pending += c.toString('latin1');
      for (let end = pending.indexOf('\r\n\r\n'); end >= 0; end = pending.indexOf('\r\n\r\n')) {
        pending = pending.slice(end + 4);
        s.write('HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n');
      }
    });
  });
  device.port = await listen(server, '127.0.0.1');
  return device;
}

const KEY = 'sk-hostile-http-0001';
const KEY_SOCKS = 'sk-hostile-socks-0002';
const AUTH = `Proxy-Authorization: Basic ${Buffer.from(`${KEY}:${KEY}`).toString('base64')}\r\n`;

let h: Harness;
let device: RecordingDevice;

before(async () => {
  [h, device] = await Promise.all([startHarness(), startRecordingDevice()]);
  h.resolver.bind(KEY, { ip: '127.0.0.1', port: device.port });
  h.resolver.bind(KEY_SOCKS, { ip: '127.0.0.1', port: device.port, protocol: 'socks5' });
});

after(async () => {
  await h.close();
  await device.close();
});

beforeEach(() => device.reset());

interface Answer {
  status: number;
  headers: Map<string, string>;
  body: string;
}

function parseAnswer(data: Buffer): Answer {
  const text = data.toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  assert.ok(end > 0, `a complete HTTP answer, got ${JSON.stringify(text)}`);
  const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
  const headers = new Map<string, string>();
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
  }
  return { status: Number(/^HTTP\/1\.1 (\d{3}) /.exec(statusLine!)![1]), headers, body: text.slice(end + 4) };
}

const T = 'http://target.example';

/** [case, request bytes, status, X-Tailgate-Error, reason line]. "llhttp" marks the ones Node's parser refuses first. */
const REFUSED: [string, string, number, string, string][] = [
  // Node 20's llhttp refuses these before the request reaches us; the answer is ours (PARSE_ERRORS in http-proxy.ts).
  ['CL then TE (llhttp)', `POST ${T}/ HTTP/1.1\r\nHost: target.example\r\n${AUTH}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400, 'bad-request', 'malformed HTTP request: invalid Transfer-Encoding, or Transfer-Encoding together with Content-Length'],
  ['TE then CL (llhttp)', `POST ${T}/ HTTP/1.1\r\nHost: target.example\r\n${AUTH}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n`, 400, 'bad-request', 'malformed HTTP request: invalid Content-Length, or Content-Length together with Transfer-Encoding'],
  ['CL with TE identity (llhttp)', `POST ${T}/ HTTP/1.1\r\nHost: target.example\r\n${AUTH}Content-Length: 5\r\nTransfer-Encoding: identity\r\n\r\nhello`, 400, 'bad-request', 'malformed HTTP request: invalid Transfer-Encoding, or Transfer-Encoding together with Content-Length'],
  ['conflicting Content-Length (llhttp)', `POST ${T}/ HTTP/1.1\r\nHost: target.example\r\n${AUTH}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`, 400, 'bad-request', 'malformed HTTP request: Content-Length repeated'],
  ['repeated equal Content-Length (llhttp)', `POST ${T}/ HTTP/1.1\r\nHost: target.example\r\n${AUTH}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello`, 400, 'bad-request', 'malformed HTTP request: Content-Length repeated'],
  ['Content-Length list (llhttp)', `POST ${T}/ HTTP/1.1\r\nHost: target.example\r\n${AUTH}Content-Length: 5, 6\r\n\r\nhello!`, 400, 'bad-request', 'malformed HTTP request: invalid Content-Length, or Content-Length together with Transfer-Encoding'],
  ['obs-fold with SP (llhttp)', `GET ${T}/ HTTP/1.1\r\nHost: target.example\r\n${AUTH}X-A: one\r\n two\r\n\r\n`, 400, 'bad-request', 'malformed HTTP request: invalid character or folded line (obs-fold) in a header'],
  ['obs-fold with HTAB (llhttp)', `GET ${T}/ HTTP/1.1\r\nHost: target.example\r\n${AUTH}X-A: one\r\n\ttwo\r\n\r\n`, 400, 'bad-request', 'malformed HTTP request: invalid character or folded line (obs-fold) in a header'],
  ['bare CR in a value (llhttp)', `GET ${T}/ HTTP/1.1\r\nHost: target.example\r\n${AUTH}X-A: one\rX-B: two\r\n\r\n`, 400, 'bad-request', 'malformed HTTP request: a CR not followed by LF'],
  ['bare LF in a value (llhttp)', `GET ${T}/ HTTP/1.1\r\nHost: target.example\r\n${AUTH}X-A: one\nX-B: two\r\n\r\n`, 400, 'bad-request', 'malformed HTTP request: a line ended in LF without CR'],
  ['NUL in a value (llhttp)', `GET ${T}/ HTTP/1.1\r\nHost: target.example\r\n${AUTH}X-A: one\0two\r\n\r\n`, 400, 'bad-request', 'malformed HTTP request: invalid character or folded line (obs-fold) in a header'],
  ['CR in the CONNECT authority (llhttp)', `CONNECT exa\rmple.com:443 HTTP/1.1\r\nHost: example.com:443\r\n${AUTH}\r\n`, 400, 'bad-request', 'malformed HTTP request: invalid character in the request target'],
  ['NUL in the CONNECT authority (llhttp)', `CONNECT exa\0mple.com:443 HTTP/1.1\r\nHost: example.com:443\r\n${AUTH}\r\n`, 400, 'bad-request', 'malformed HTTP request: invalid character in the request target'],
  ['CR in the absolute-form host (llhttp)', `GET http://exa\rmple.com/ HTTP/1.1\r\nHost: example.com\r\n${AUTH}\r\n`, 400, 'bad-request', 'malformed HTTP request: invalid character in the request target'],
  ['NUL in the absolute-form host (llhttp)', `GET http://exa\0mple.com/ HTTP/1.1\r\nHost: example.com\r\n${AUTH}\r\n`, 400, 'bad-request', 'malformed HTTP request: invalid character in the request target'],
  // These reach our code: protocol/http.ts requestHeadProblem, parseAuthority.
  ['TE gzip (llhttp would only fail on the body)', `POST ${T}/ HTTP/1.1\r\nHost: target.example\r\n${AUTH}Transfer-Encoding: gzip\r\n\r\nhello`, 501, 'transfer-coding', 'Transfer-Encoding other than chunked is not supported'],
  ['TE gzip, chunked', `POST ${T}/ HTTP/1.1\r\nHost: target.example\r\n${AUTH}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`, 501, 'transfer-coding', 'Transfer-Encoding other than chunked is not supported'],
  ['Host repeated', `GET ${T}/ HTTP/1.1\r\nHost: target.example\r\nHost: other.example\r\n${AUTH}\r\n`, 400, 'bad-request', 'Host repeated'],
  ['HTTP/1.1 without Host', `GET ${T}/ HTTP/1.1\r\n${AUTH}\r\n`, 400, 'bad-request', 'HTTP/1.1 request without a Host header'],
  ['LF in the CONNECT authority', `CONNECT exa\nmple.com:443 HTTP/1.1\r\nHost: example.com:443\r\n${AUTH}\r\n`, 400, 'bad-request', 'CONNECT needs a host:port target'],
  ['encoded CRLF in the CONNECT authority', `CONNECT exa%0d%0ample.com:443 HTTP/1.1\r\nHost: example.com:443\r\n${AUTH}\r\n`, 400, 'bad-request', 'CONNECT needs a host:port target'],
  ['encoded CRLF in the absolute-form host', `GET http://exa%0d%0a.com/ HTTP/1.1\r\nHost: example.com\r\n${AUTH}\r\n`, 400, 'bad-request', 'request target is not a usable http:// URL'],
  ['encoded NUL in the absolute-form host', `GET http://exa%00.com/ HTTP/1.1\r\nHost: example.com\r\n${AUTH}\r\n`, 400, 'bad-request', 'request target is not a usable http:// URL'],
];

for (const [name, request, status, tag, text] of REFUSED) {
  test(`HTTP: ${name} -> ${status} ${tag}, closed, nothing reaches the device`, async () => {
    // A second, valid request pipelined behind the refused one must not be forwarded either.
    const follow = `GET ${T}/smuggled HTTP/1.1\r\nHost: target.example\r\n${AUTH}\r\n`;
    const r = await rawExchange(h.httpPort, [Buffer.from(request + follow, 'latin1')], { timeoutMs: 5_000 });
    assert.ok(r.closed, 'the gateway closes the connection');
    const a = parseAnswer(r.data);
    assert.equal(a.status, status);
    assert.equal(a.headers.get('x-tailgate-error'), tag);
    assert.equal(a.headers.get('connection'), 'close');
    assert.equal(a.body, `${text}\n`, 'exactly one answer, with its reason');
    await h.settle(5_000);
    assert.equal(device.connections, 0, 'the device was not even dialled');
    assert.equal(device.bytes(), '');
  });
}

test('HTTP: a request pipelined behind a refused one with a body (407, Connection: close) is not served', async () => {
  const bad = `Proxy-Authorization: Basic ${Buffer.from('sk-wrong-key-000:sk-wrong-key-000').toString('base64')}\r\n`;
  const bytes = `POST ${T}/ HTTP/1.1\r\nHost: target.example\r\n${bad}Content-Length: 3\r\n\r\nabcGET ${T}/smuggled HTTP/1.1\r\nHost: target.example\r\n${AUTH}\r\n`;
  const r = await rawExchange(h.httpPort, [Buffer.from(bytes, 'latin1')], { timeoutMs: 5_000 });
  assert.ok(r.closed);
  const a = parseAnswer(r.data);
  assert.equal(a.status, 407);
  assert.equal(a.headers.get('connection'), 'close');
  assert.doesNotMatch(a.body, /HTTP\/1\.1/, 'one answer only');
  await h.settle(5_000);
  assert.equal(device.connections, 0);
});

test('HTTP: the device gets the request target as Host, never the client\'s Host', async () => {
  const r = await rawExchange(h.httpPort, [Buffer.from(`GET ${T}/a HTTP/1.1\r\nHost: internal.example\r\n${AUTH}Connection: close\r\n\r\n`, 'latin1')], { timeoutMs: 5_000 });
  assert.equal(parseAnswer(r.data).status, 200);
  await waitFor('the device to get the request', 5_000, () => device.bytes().includes('\r\n\r\n'));
  assert.match(device.bytes(), /^GET http:\/\/target\.example\/a HTTP\/1\.1\r\n/);
  assert.match(device.bytes(), /\r\nHost: target\.example\r\n/);
  assert.doesNotMatch(device.bytes(), /internal\.example/);
  await h.settle(5_000);
});

test('HTTP: chunked (any case) and HTTP/1.0 without Host are still forwarded', async () => {
  const chunked = await rawExchange(h.httpPort, [Buffer.from(`POST ${T}/c HTTP/1.1\r\nHost: target.example\r\n${AUTH}Transfer-Encoding: Chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n`, 'latin1')], { timeoutMs: 5_000 });
  assert.equal(parseAnswer(chunked.data).status, 200);
  await waitFor('the chunked body at the device', 5_000, () => device.bytes().includes('0\r\n\r\n'));
  assert.match(device.bytes(), /\r\nTransfer-Encoding: chunked\r\n[^]*\r\n\r\n3\r\nabc\r\n0\r\n\r\n$/);
  device.reset();
  const old = await rawExchange(h.httpPort, [Buffer.from(`GET ${T}/old HTTP/1.0\r\n${AUTH}\r\n`, 'latin1')], { timeoutMs: 5_000 });
  assert.equal(parseAnswer(old.data).status, 200);
  assert.match(device.bytes(), /\r\nHost: target\.example\r\n/);
  await h.settle(5_000);
});

// ---- SOCKS5 --------------------------------------------------------------------------------------------

function socksConnectDomain(name: Buffer): Buffer {
  const user = Buffer.from(KEY_SOCKS);
  return Buffer.concat([
    Buffer.from([5, 1, 2]),
    Buffer.from([1, user.length]),
    user,
    Buffer.from([user.length]),
    user,
    Buffer.from([5, 1, 0, 3, name.length]),
    name,
    Buffer.from([0, 80]),
    Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
  ]);
}

const SOCKS_REFUSED: [string, Buffer][] = [
  ['CR LF in the name', Buffer.from('evil.example\r\nX-Injected: 1', 'latin1')],
  ['bare LF in the name', Buffer.from('evil\nexample', 'latin1')],
  ['NUL in the name', Buffer.from('evil.example\0.good.example', 'latin1')],
  ['an empty name', Buffer.alloc(0)],
  ['a space in the name', Buffer.from('evil example', 'latin1')],
];

for (const [name, host] of SOCKS_REFUSED) {
  test(`SOCKS5: ${name} -> reply 0x01, closed, nothing reaches the device`, async () => {
    const r = await rawExchange(h.socksPort, [socksConnectDomain(host)], { timeoutMs: 5_000 });
    assert.ok(r.closed);
    // method 0x02, auth ok, then the 10-byte reply with code 0x01 and nothing after it.
    assert.equal(r.data.toString('hex'), '0502' + '0100' + '05010001000000000000');
    await h.settle(5_000);
    assert.equal(device.connections, 0);
    assert.equal(device.bytes(), '');
  });
}
