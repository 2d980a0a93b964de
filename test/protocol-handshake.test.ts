// The one handshake driver on real loopback sockets: what it hands on (early bytes, a socket the next owner can
// start, a parked error listener) and how it fails (peer closes, silence, socket errors, oversized replies).
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import type { FailureReason } from '../src/core/failure.js';
import { parkedSocketError, runHandshake } from '../src/protocol/handshake.js';
import { HttpConnectHandshake } from '../src/protocol/http.js';
import { Socks5ConnectHandshake } from '../src/protocol/socks5.js';
import { closedPort } from './helpers/devices.js';
import { dialFails } from './helpers/dial-fails.js';
import { closeServer, listen } from './helpers/targets.js';

/** What the peer does once a connection's hello has arrived; each test sets its own. */
type Script = (socket: net.Socket, hello: Buffer) => void;
let script: Script = () => {};
let server: net.Server;
let port = 0;

before(async () => {
  server = net.createServer((s) => {
    s.on('error', () => {});
    s.once('data', (hello: Buffer) => script(s, hello));
  });
  port = await listen(server, '127.0.0.1');
});
after(() => closeServer(server));

function connect(): net.Socket {
  return net.connect({ host: '127.0.0.1', port });
}

const ESTABLISHED = 'HTTP/1.1 200 Connection established\r\n\r\n';

test('bytes after the reply are kept in order, and the next owner starts the flow with a plain data listener', async () => {
  let hello = '';
  script = (s, h) => {
    hello = h.toString('latin1');
    s.write(`${ESTABLISHED}early `);
    setTimeout(() => s.end('late'), 20);
  };
  const socket = await runHandshake(connect(), new HttpConnectHandshake({ host: 'example.com', port: 443 }), 2_000, 'test peer');
  assert.equal(hello, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n');
  assert.ok(socket.listeners('error').includes(parkedSocketError), 'an error listener is parked until the next owner has one');
  const got = await new Promise<string>((resolve) => {
    let text = '';
    socket.on('data', (c: Buffer) => (text += c.toString()));
    socket.on('end', () => resolve(text));
  });
  assert.equal(got, 'early late');
  socket.destroy();
});

test('a second handshake on the handed-on socket works as the first (a device behind a tailscaled dial)', async () => {
  script = (s) => {
    s.write(ESTABLISHED);
    s.once('data', () => {
      s.write(Buffer.from([5, 0]));
      s.once('data', () => s.write(Buffer.concat([Buffer.from([5, 0, 0, 1, 127, 0, 0, 1, 0, 80]), Buffer.from('target says hi')])));
    });
  };
  const first = await runHandshake(connect(), new HttpConnectHandshake({ host: 'device', port: 1080 }), 2_000, 'tailscaled');
  const second = await runHandshake(first, new Socks5ConnectHandshake({ host: '::ffff:1.2.3.4', port: 80 }), 2_000, 'socks5 device');
  const got = await new Promise<string>((resolve) => second.once('data', (c: Buffer) => resolve(c.toString())));
  assert.equal(got, 'target says hi');
  second.destroy();
});

test("the peer closing mid-handshake fails with the machine's reading of it, and the socket is destroyed", async () => {
  script = (s) => s.end(Buffer.from([5, 0]));
  const peer = { pipelined: true, generalFailure: 'unreachable', closedBeforeReply: 'unreachable' } as const;
  const socket = connect();
  await dialFails(runHandshake(socket, new Socks5ConnectHandshake({ host: 'a', port: 1 }, peer), 2_000, 'tailscaled SOCKS5'), 'unreachable', /^tailscaled SOCKS5: closed before replying/);
  assert.ok(socket.destroyed);
  script = (s) => s.end('HTTP/1.1 200 Connection est');
  await dialFails(runHandshake(connect(), new HttpConnectHandshake({ host: 'a', port: 1 }), 2_000, 'http device'), 'protocol', /device closed the connection/);
});

test('silence fails at the timeout; an oversized reply fails as protocol', async () => {
  script = () => {};
  const socket = connect();
  const started = Date.now();
  await dialFails(runHandshake(socket, new HttpConnectHandshake({ host: 'a', port: 1 }), 300, 'silent device'), 'timeout', /^silent device: no answer within 300 ms$/);
  assert.ok(Date.now() - started >= 290, `failed after ${Date.now() - started} ms`);
  assert.ok(socket.destroyed);
  script = (s) => s.write(`HTTP/1.1 200 OK\r\nX-Pad: ${'x'.repeat(20_000)}`);
  await dialFails(runHandshake(connect(), new HttpConnectHandshake({ host: 'a', port: 1 }), 2_000, 'chatty device'), 'protocol', /reply too large/);
});

test('socket errors: the caller says what an errno means (a device refusing, or tailscaled being gone)', async () => {
  const closed = await closedPort();
  const machine = () => new HttpConnectHandshake({ host: 'a', port: 1 });
  await dialFails(runHandshake(net.connect({ host: '127.0.0.1', port: closed }), machine(), 2_000, 'device'), 'refused', /^device: ECONNREFUSED$/);
  const gone = (code: string | undefined): FailureReason => (code === 'ECONNREFUSED' ? 'network-down' : 'error');
  await dialFails(runHandshake(net.connect({ host: '127.0.0.1', port: closed }), machine(), 2_000, 'tailscaled', gone), 'network-down', /ECONNREFUSED/);
});
