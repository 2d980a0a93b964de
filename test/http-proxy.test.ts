// HTTP proxy listener against real curl, the third-party `proxy` package as HTTP device and the test
// SOCKS5 device, with local HTTP/HTTPS/echo targets on 127.0.0.1 and ::1.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Dialer } from '../src/core/dialer.js';
import { hashKey } from '../src/core/key.js';
import type { TailnetState, TailnetView } from '../src/tailnet/types.js';
import { curl } from './helpers/curl.js';
import { startHttpDevice, startOneAnswerDevice, type Device } from './helpers/devices.js';
import { fixedTailnet, rawExchange, startHarness, startProxyWorld, TEST_TIMEOUTS, type Harness, type ProxyWorld } from './helpers/proxy-harness.js';
import { payload, sha256, type EchoTarget, type Listening, type TlsMaterial } from './helpers/targets.js';
import { waitFor } from '../testbed/wait.js';

let world: ProxyWorld;
let h: Harness;
let httpDevice: Device;
let socksDevice: Device;
let silentDevice: Device;
let web: Listening;
let web6: Listening;
let tlsWeb: Listening;
let tlsWeb6: Listening;
let echo: EchoTarget;
let tls: TlsMaterial;
let KEY: string;
let KEY_SOCKS_DEVICE: string;
let KEY_REFUSED: string;
let KEY_SILENT: string;

before(async () => {
  world = await startProxyWorld('http', { maxHeaderBytes: 8_192 });
  ({ h, httpDevice, socksDevice, silentDevice, web, web6, tlsWeb, tlsWeb6, echo, tls } = world);
  ({ http: KEY, socks: KEY_SOCKS_DEVICE, refused: KEY_REFUSED, silent: KEY_SILENT } = world.keys);
});

after(() => world.close());

const proxy = (key: string, pass = key) => `http://${key}:${pass}@127.0.0.1:${h.httpPort}`;
const basic = (key: string, pass = key) => `Basic ${Buffer.from(`${key}:${pass}`).toString('base64')}`;

function countConnections(server: net.Server): { readonly count: number; stop(): void } {
  let count = 0;
  const on = () => count++;
  server.on('connection', on);
  return {
    get count() {
      return count;
    },
    stop: () => server.off('connection', on),
  };
}

test('absolute-form GET through an HTTP device: hop-by-hop headers and the key are not forwarded', async () => {
  const r = await curl(['-x', proxy(KEY), '-H', 'X-Custom: kept', `http://127.0.0.1:${web.port}/echo?q=1`]);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.equal(r.httpCode, 200);
  const echoed = JSON.parse(r.stdout);
  assert.equal(echoed.method, 'GET');
  assert.equal(echoed.url, '/echo?q=1');
  assert.equal(echoed.headers['x-custom'], 'kept');
  assert.equal(echoed.headers['proxy-authorization'], undefined);
  assert.equal(echoed.headers['proxy-connection'], undefined);
  assert.equal(echoed.headers.host, `127.0.0.1:${web.port}`);
  assert.ok(httpDevice.seen.includes(`GET http://127.0.0.1:${web.port}/echo?q=1`), httpDevice.seen.join(', '));
  await h.settle();
});

test('headers named in Connection are dropped too (raw request)', async () => {
  const req =
    `GET http://127.0.0.1:${web.port}/echo HTTP/1.1\r\nHost: 127.0.0.1:${web.port}\r\nProxy-Authorization: ${basic(KEY)}\r\n` +
    'Connection: close, X-Secret-Hop\r\nX-Secret-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nX-End-To-End: yes\r\n\r\n';
  const r = await rawExchange(h.httpPort, [Buffer.from(req)], { timeoutMs: 3_000 });
  assert.ok(r.closed);
  const text = r.data.toString();
  assert.match(text, /^HTTP\/1\.1 200/);
  const echoed = JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4));
  assert.equal(echoed.headers['x-end-to-end'], 'yes');
  for (const gone of ['x-secret-hop', 'keep-alive', 'te', 'proxy-authorization']) assert.equal(echoed.headers[gone], undefined, gone);
  await h.settle();
});

test('POST with a body, a 2 MB body (Expect: 100-continue), and a chunked upload', async () => {
  const dir = tls.dir;
  const small = payload(100_000);
  const big = payload(2 * 1024 * 1024);
  await writeFile(path.join(dir, 'small.bin'), small);
  await writeFile(path.join(dir, 'big.bin'), big);
  const a = await curl(['-x', proxy(KEY), '--data-binary', `@${path.join(dir, 'small.bin')}`, `http://127.0.0.1:${web.port}/echo`]);
  assert.equal(a.exitCode, 0, a.stderr);
  assert.deepEqual([JSON.parse(a.stdout).method, JSON.parse(a.stdout).bodySha256], ['POST', sha256(small)]);
  const b = await curl(['-x', proxy(KEY), '-H', 'Expect: 100-continue', '--data-binary', `@${path.join(dir, 'big.bin')}`, `http://127.0.0.1:${web.port}/echo`], 20_000);
  assert.equal(b.exitCode, 0, b.stderr);
  assert.equal(JSON.parse(b.stdout).bodySha256, sha256(big));
  assert.match(b.rawHeaders, /^HTTP\/1\.1 100 Continue/m);
  const c = await curl(['-x', proxy(KEY), '-H', 'Transfer-Encoding: chunked', '--data-binary', `@${path.join(dir, 'small.bin')}`, `http://127.0.0.1:${web.port}/echo`]);
  assert.equal(c.exitCode, 0, c.stderr);
  const echoed = JSON.parse(c.stdout);
  assert.equal(echoed.headers['transfer-encoding'], 'chunked');
  assert.equal(echoed.bodySha256, sha256(small));
  await h.settle();
});

test('chunked response arrives whole', async () => {
  const r = await curl(['-x', proxy(KEY), `http://127.0.0.1:${web.port}/chunked`]);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.equal(r.stdout, 'chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\nend\n');
  await h.settle();
});

test('keep-alive: two requests on one client connection, one pooled device connection', async () => {
  const device = await startHttpDevice();
  const key = 'sk-http-keepalive-0005';
  h.resolver.bind(key, { ip: '127.0.0.1', port: device.port });
  const clientConns = countConnections(h.httpServer);
  const deviceConns = countConnections(device.server);
  try {
    const r = await curl(['-x', proxy(key), `http://127.0.0.1:${web.port}/`, `http://127.0.0.1:${web.port}/echo`]);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.ok(r.stdout.startsWith('hello from http 127.0.0.1\n'), r.stdout);
    assert.ok(r.stdout.includes('"url":"/echo"'), r.stdout);
    assert.equal(clientConns.count, 1, 'curl reused its proxy connection');
    assert.equal(deviceConns.count, 1, 'the gateway reused its device connection');
    assert.equal(device.seen.length, 2);
  } finally {
    clientConns.stop();
    deviceConns.stop();
    await device.close();
  }
  await h.settle();
});

test('CONNECT + HTTPS to a local TLS server, including a 3 MB download', async () => {
  const r = await curl(['-x', proxy(KEY), '--cacert', tls.certFile, `https://localhost:${tlsWeb.port}/big?n=3000000`]);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.equal(r.connectCode, 200);
  assert.equal(sha256(Buffer.from(r.stdout, 'latin1')), sha256(payload(3_000_000)));
  assert.ok(httpDevice.seen.includes(`CONNECT localhost:${tlsWeb.port}`));
  await h.settle();
});

test('IPv6 destinations: CONNECT [::1]:port and absolute-form http://[::1]:port/', async () => {
  const a = await curl(['-x', proxy(KEY), '--cacert', tls.certFile, `https://[::1]:${tlsWeb6.port}/`]);
  assert.equal(a.exitCode, 0, a.stderr);
  assert.equal(a.stdout, 'hello from https ::1\n');
  assert.ok(httpDevice.seen.includes(`CONNECT [::1]:${tlsWeb6.port}`), httpDevice.seen.join(', '));
  const b = await curl(['-x', proxy(KEY), `http://[::1]:${web6.port}/`]);
  assert.equal(b.stdout, 'hello from http ::1\n');
  await h.settle();
});

test('protocol socks5 device: CONNECT and absolute-form go through a SOCKS CONNECT, names unresolved', async () => {
  const a = await curl(['-x', proxy(KEY_SOCKS_DEVICE), '--cacert', tls.certFile, `https://localhost:${tlsWeb.port}/`]);
  assert.equal(a.exitCode, 0, a.stderr);
  assert.equal(a.stdout, 'hello from https 127.0.0.1\n');
  assert.ok(socksDevice.seen.includes(`domain localhost ${tlsWeb.port}`), socksDevice.seen.join(', '));
  const b = await curl(['-x', proxy(KEY_SOCKS_DEVICE), '--data-binary', 'posted', `http://localhost:${web.port}/echo`]);
  assert.equal(b.exitCode, 0, b.stderr);
  const echoed = JSON.parse(b.stdout);
  assert.equal(echoed.url, '/echo', 'origin-form on the wire to the target');
  assert.equal(echoed.bodyLength, 6);
  const c = await curl(['-x', proxy(KEY_SOCKS_DEVICE), `http://[::1]:${web6.port}/`]);
  assert.equal(c.stdout, 'hello from http ::1\n');
  await h.settle();
});

test('bytes the client sends with its CONNECT are not lost; half-close works', async () => {
  const data = payload(100_000);
  const head = `CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: 127.0.0.1:${echo.port}\r\nProxy-Authorization: ${basic(KEY)}\r\n\r\n`;
  await h.settle();
  const upBefore = await bytesRelayed('upstream');
  const r = await rawExchange(h.httpPort, [Buffer.concat([Buffer.from(head), data])], { end: true, timeoutMs: 5_000 });
  assert.ok(r.closed);
  const established = 'HTTP/1.1 200 Connection established\r\n\r\n';
  assert.equal(r.data.subarray(0, established.length).toString(), established);
  assert.equal(sha256(r.data.subarray(established.length)), sha256(data));
  await h.settle();
  // Every byte after the head counts, those the listener read ahead while the device was dialled included.
  assert.equal((await bytesRelayed('upstream')) - upBefore, data.length);
});

async function bytesRelayed(direction: 'upstream' | 'downstream'): Promise<number> {
  const m = await h.metrics.bytes.get();
  return m.values.find((v) => v.labels.listener === 'http' && v.labels.direction === direction)?.value ?? 0;
}

test('a CONNECT head sent a byte per packet still opens the tunnel; one that stalls after many pieces gets 408', async () => {
  // Past its piece limit the front hands a head to Node's parser (src/proxy/connect-front.ts): both paths must answer.
  const head = Buffer.from(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: 127.0.0.1:${echo.port}\r\nProxy-Authorization: ${basic(KEY)}\r\n\r\n`);
  const bytes = [...head].map((b) => Buffer.from([b]));
  const established = 'HTTP/1.1 200 Connection established\r\n\r\n';
  const data = payload(10_000);
  const r = await rawExchange(h.httpPort, [...bytes, data], { gapMs: 1, timeoutMs: 10_000, until: (got) => got.length >= established.length + data.length });
  assert.equal(r.data.subarray(0, established.length).toString(), established);
  assert.equal(sha256(r.data.subarray(established.length)), sha256(data));
  const stalled = await rawExchange(h.httpPort, bytes.slice(0, 40), { gapMs: 1, timeoutMs: 5_000 });
  assert.ok(stalled.closed);
  assert.match(stalled.data.toString(), /^HTTP\/1\.1 408 /);
  assert.ok(stalled.ms < 2 * TEST_TIMEOUTS.handshakeMs + 1_000, `cut after ${stalled.ms} ms`);
  await h.settle();
});

test('no credentials, wrong password, unknown key -> 407 with Proxy-Authenticate (CONNECT and absolute-form)', async () => {
  const url = `http://127.0.0.1:${web.port}/`;
  const cases = [
    ['-x', `http://127.0.0.1:${h.httpPort}`],
    ['-x', proxy(KEY, 'wrong-password')],
    ['-x', proxy('sk-never-registered')],
  ];
  for (const args of cases) {
    const plain = await curl([...args, url]);
    assert.equal(plain.httpCode, 407, args.join(' '));
    assert.equal(plain.headers['proxy-authenticate'], 'Basic realm="tailgate"');
    assert.equal(plain.headers['x-tailgate-error'], 'auth');
    const tunnel = await curl([...args, '-k', `https://127.0.0.1:${tlsWeb.port}/`]);
    assert.equal(tunnel.connectCode, 407, args.join(' '));
    assert.match(tunnel.rawHeaders, /Proxy-Authenticate: Basic realm="tailgate"/);
  }
  assert.ok(!httpDevice.seen.some((s) => s.includes('never-registered')));
  await h.settle();
});

test('device refusing -> 502, device silent -> 504 at the connect timeout, each with a one-line reason', async () => {
  const refused = await curl(['-x', proxy(KEY_REFUSED), '-k', `https://127.0.0.1:${tlsWeb.port}/`]);
  assert.equal(refused.connectCode, 502);
  assert.equal(refused.headers['x-tailgate-error'], 'refused');
  const refusedPlain = await curl(['-x', proxy(KEY_REFUSED), `http://127.0.0.1:${web.port}/`]);
  assert.equal(refusedPlain.httpCode, 502);
  assert.equal(refusedPlain.stdout, 'connection refused\n');

  const started = Date.now();
  const silent = await curl(['-x', proxy(KEY_SILENT), '-k', `https://127.0.0.1:${tlsWeb.port}/`]);
  const ms = Date.now() - started;
  assert.equal(silent.connectCode, 504);
  assert.equal(silent.headers['x-tailgate-error'], 'timeout');
  assert.ok(ms >= TEST_TIMEOUTS.connectMs - 50 && ms < TEST_TIMEOUTS.connectMs + 1_500, `answered after ${ms} ms`);
  await waitFor('silent device to see its connections closed', 3_000, async () => (await silentDevice.connections()) === 0, 20);
  await h.settle();
});

test('absolute-form request to a device that never answers -> 504 at the response-header timeout; an answer that stalls once begun is cut at the idle timeout', async () => {
  const h4 = await startHarness({ timeouts: { responseHeaderMs: 1_000, idleMs: 20_000 } });
  // Answers with a head and part of the body, then nothing: the response began, so only the idle timeout applies.
  const stalling = net.createServer((s) => {
    s.once('data', () => s.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial'));
    s.on('error', () => s.destroy());
  });
  await new Promise<void>((r) => stalling.listen(0, '127.0.0.1', r));
  try {
    h4.resolver.bind(KEY_SILENT, { ip: '127.0.0.1', port: silentDevice.port });
    const started = Date.now();
    const r = await curl(['-x', `http://${KEY_SILENT}:${KEY_SILENT}@127.0.0.1:${h4.httpPort}`, `http://127.0.0.1:${web.port}/`]);
    const ms = Date.now() - started;
    assert.equal(r.httpCode, 504);
    assert.equal(r.headers['x-tailgate-error'], 'timeout');
    assert.ok(ms >= 950 && ms < 2_500, `answered after ${ms} ms`);
    await h4.settle();
  } finally {
    await h4.close();
  }
  await waitFor('silent device to see its connections closed', 3_000, async () => (await silentDevice.connections()) === 0, 20);

  const h5 = await startHarness({ timeouts: { responseHeaderMs: 20_000, idleMs: 1_000 } });
  try {
    const key = 'key-stalling-device-1';
    h5.resolver.bind(key, { ip: '127.0.0.1', port: (stalling.address() as net.AddressInfo).port });
    const started = Date.now();
    const r = await curl(['-x', `http://${key}:${key}@127.0.0.1:${h5.httpPort}`, `http://127.0.0.1:${web.port}/`]);
    const ms = Date.now() - started;
    assert.equal(r.httpCode, 200);
    assert.equal(r.exitCode, 18, `curl saw the transfer cut short: ${r.stderr}`);
    assert.equal(r.stdout, 'partial');
    assert.ok(ms >= 950 && ms < 2_500, `cut after ${ms} ms`);
    await h5.settle();
  } finally {
    await h5.close();
    await new Promise<void>((r) => stalling.close(() => r()));
  }
});

test('a device proxy that demands credentials of the gateway -> 502 not-allowed, never a 407 to our client', async () => {
  const device = await startHttpDevice('127.0.0.1', { requireAuth: true });
  const key = 'sk-http-device-wants-auth-0006';
  h.resolver.bind(key, { ip: '127.0.0.1', port: device.port });
  try {
    const a = await curl(['-x', proxy(key), '-k', `https://127.0.0.1:${tlsWeb.port}/`]);
    assert.equal(a.connectCode, 502);
    assert.equal(a.headers['x-tailgate-error'], 'not-allowed');
    const b = await curl(['-x', proxy(key), `http://127.0.0.1:${web.port}/`]);
    assert.equal(b.httpCode, 502);
    assert.equal(b.headers['x-tailgate-error'], 'not-allowed');
    assert.equal(b.headers['proxy-authenticate'], undefined);
  } finally {
    await device.close();
  }
  await h.settle();
});

test('tailnet unavailable -> 503 at once; device offline -> 502', async () => {
  const mustNotDial: Dialer = { dial: () => Promise.reject(new Error('must not dial')) };
  const h2 = await startHarness({ dialer: mustNotDial, tailnet: fixedTailnet({ unavailable: 'tailscaled is restarting' }) });
  try {
    h2.resolver.bind(KEY, { ip: '127.0.0.1', port: httpDevice.port });
    const a = await curl(['-x', `http://${KEY}:${KEY}@127.0.0.1:${h2.httpPort}`, '-k', `https://127.0.0.1:${tlsWeb.port}/`]);
    assert.equal(a.connectCode, 503);
    assert.equal(a.headers['x-tailgate-error'], 'network-down');
    const b = await curl(['-x', `http://${KEY}:${KEY}@127.0.0.1:${h2.httpPort}`, `http://127.0.0.1:${web.port}/`]);
    assert.equal(b.httpCode, 503);
  } finally {
    await h2.close();
  }
  const h3 = await startHarness({ tailnet: fixedTailnet({ online: () => false }) });
  try {
    h3.resolver.bind(KEY, { ip: '127.0.0.1', port: httpDevice.port });
    const c = await curl(['-x', `http://${KEY}:${KEY}@127.0.0.1:${h3.httpPort}`, '-k', `https://127.0.0.1:${tlsWeb.port}/`]);
    assert.equal(c.connectCode, 502);
    assert.equal(c.headers['x-tailgate-error'], 'offline');
  } finally {
    await h3.close();
  }
});

test('a forwarded request on a kept-alive connection to a device that stopped answering fails at the response-header timeout, not the idle timeout', async () => {
  const device = await startOneAnswerDevice();
  const h2 = await startHarness({ timeouts: { responseHeaderMs: 700, idleMs: 20_000 } });
  try {
    const key = 'key-dead-device-0001';
    h2.resolver.bind(key, { ip: '127.0.0.1', port: device.port });
    const via = ['-x', `http://${key}:${key}@127.0.0.1:${h2.httpPort}`, `http://127.0.0.1:${web.port}/`];
    const first = await curl(via);
    assert.equal(first.stdout, 'first\n');
    const started = Date.now();
    const second = await curl(via);
    const ms = Date.now() - started;
    assert.equal(second.httpCode, 504);
    assert.equal(second.headers['x-tailgate-error'], 'timeout');
    assert.ok(ms >= 650 && ms < 700 + 1_500, `answered after ${ms} ms`);
    assert.equal(device.seen.length, 2, 'both requests reached the device');
    assert.ok(h2.logLines.some((l) => l.includes('connection through the device failed') && l.includes('response-header timeout')), 'the failure is logged with its cause');
    await h2.settle();
  } finally {
    await h2.close();
    await device.close();
  }
});

/** A tailnet view whose peers' online state the test sets, announcing online -> offline as the supervisor does. */
class ScriptedTailnet implements TailnetView {
  readonly online = new Map<string, boolean>();
  private readonly listeners = new Set<(ip: string) => void>();
  state(): TailnetState {
    return { running: true, backendState: 'Running', selfIps: [], ready: true };
  }
  unavailableReason(): string | null {
    return null;
  }
  peerOnline(ip: string): boolean | undefined {
    return this.online.get(ip);
  }
  onPeerOffline(listener: (ip: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  goOffline(ip: string): void {
    this.online.set(ip, false);
    for (const listener of this.listeners) listener(ip);
  }
}

test('a device the tailnet reports offline cuts the forwarded requests waiting on it (502 offline) and its pooled connections are not reused', async () => {
  const device = await startOneAnswerDevice();
  const tailnet = new ScriptedTailnet();
  tailnet.online.set('127.0.0.1', true);
  const h2 = await startHarness({ tailnet, timeouts: { responseHeaderMs: 30_000, idleMs: 30_000 } });
  try {
    const key = 'key-offline-device-01';
    h2.resolver.bind(key, { ip: '127.0.0.1', port: device.port });
    const via = (path: string) => ['-x', `http://${key}:${key}@127.0.0.1:${h2.httpPort}`, `http://127.0.0.1:${web.port}${path}`];
    assert.equal((await curl(via('/one'))).stdout, 'first\n');
    const waiting = curl(via('/two'));
    await waitFor('the second request to reach the device', 3_000, () => device.seen.length === 2, 20);
    const started = Date.now();
    tailnet.goOffline('127.0.0.1');
    const cut = await waiting;
    assert.equal(cut.httpCode, 502);
    assert.equal(cut.headers['x-tailgate-error'], 'offline');
    assert.ok(Date.now() - started < 1_000, `cut after ${Date.now() - started} ms`);
    await waitFor('the pooled device connection to close', 3_000, async () => (await device.connections()) === 0, 20);

    // Still offline: a new request is refused as offline without touching the device.
    const third = await curl(via('/three'));
    assert.equal(third.httpCode, 502);
    assert.equal(third.headers['x-tailgate-error'], 'offline');
    assert.equal(device.seen.length, 2);
    await h2.settle();
  } finally {
    await h2.close();
    await device.close();
  }
});

test('oversized request head -> 431, and the proxy keeps serving', async () => {
  const big = await curl(['-x', proxy(KEY), '-H', `X-Big: ${'a'.repeat(20_000)}`, `http://127.0.0.1:${web.port}/`]);
  assert.equal(big.httpCode, 431);
  const bigConnect = await curl(['-x', proxy(KEY), '-k', '--proxy-header', `X-Big: ${'a'.repeat(20_000)}`, `https://127.0.0.1:${tlsWeb.port}/`]);
  assert.equal(bigConnect.connectCode, 431);
  const ok = await curl(['-x', proxy(KEY), `http://127.0.0.1:${web.port}/`]);
  assert.equal(ok.stdout, 'hello from http 127.0.0.1\n');
  await h.settle();
});

test('a client that stalls mid-head gets 408 at the handshake timeout; one that sends nothing is closed', async () => {
  const partial = await rawExchange(h.httpPort, [Buffer.from(`GET http://127.0.0.1:${web.port}/ HTTP/1.1\r\nHost: x\r\n`)], { timeoutMs: 5_000 });
  assert.ok(partial.closed);
  assert.match(partial.data.toString(), /^HTTP\/1\.1 408 /);
  assert.ok(partial.ms >= TEST_TIMEOUTS.handshakeMs - 50 && partial.ms < TEST_TIMEOUTS.handshakeMs + 1_000, `cut after ${partial.ms} ms`);
  const silent = await rawExchange(h.httpPort, [], { timeoutMs: 5_000 });
  assert.ok(silent.closed);
  assert.ok(silent.ms < TEST_TIMEOUTS.handshakeMs + 1_000, `cut after ${silent.ms} ms`);
  await h.settle();
});

test('garbage, truncated and non-proxy requests get 400 or a close, never a crash or a leak', async () => {
  const cases: [Buffer, RegExp | null][] = [
    [Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00]), /^HTTP\/1\.1 400 /],
    [Buffer.from('\x00\x01\x02 garbage \xff\r\n\r\n', 'latin1'), /^HTTP\/1\.1 400 /],
    [Buffer.from('GET /not-a-proxy-request HTTP/1.1\r\nHost: x\r\n\r\n'), /^HTTP\/1\.1 400 [^]*this is a proxy/],
    [Buffer.from('GET https://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n'), /^HTTP\/1\.1 400 [^]*use CONNECT/],
    [Buffer.from(`CONNECT no-port-here HTTP/1.1\r\nProxy-Authorization: ${basic(KEY)}\r\n\r\n`), /^HTTP\/1\.1 400 /],
    [Buffer.from(`CONNECT [::1:443 HTTP/1.1\r\nProxy-Authorization: ${basic(KEY)}\r\n\r\n`), /^HTTP\/1\.1 400 /],
    [Buffer.from('CONNECT 127.0.0.1:443 HTTP/1.1\r\nProxy-Authorization: Basic !!!\r\n\r\n'), /^HTTP\/1\.1 407 /],
    [Buffer.from('CONNECT 127.0.0.1:44'), null], // truncated, then FIN
    [Buffer.from(`POST http://127.0.0.1:${web.port}/echo HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${basic(KEY)}\r\nContent-Length: 100\r\n\r\nshort`), null],
  ];
  for (const [bytes, expected] of cases) {
    const r = await rawExchange(h.httpPort, [bytes], { end: true, timeoutMs: 3_000 });
    assert.ok(r.closed, `closed for ${JSON.stringify(bytes.toString('latin1'))}`);
    if (expected) assert.match(r.data.toString('latin1'), expected);
  }
  for (let i = 0; i < 30; i++) {
    const junk = Buffer.from(payload(1 + ((i * 7919) % 500)).map((b, j) => (b * (i + 3) + j) & 0xff));
    await rawExchange(h.httpPort, [junk], { end: true, timeoutMs: 3_000 });
  }
  await h.settle();
  const ok = await curl(['-x', proxy(KEY), `http://127.0.0.1:${web.port}/`]);
  assert.equal(ok.stdout, 'hello from http 127.0.0.1\n', 'still serving');
  await h.settle();
});

test('revoking the key closes its open CONNECT tunnel; a client reset mid-relay leaks nothing', async () => {
  const s = net.connect({ port: h.httpPort, host: '127.0.0.1' });
  s.on('error', () => {});
  let got = '';
  s.on('data', (c: Buffer) => (got += c.toString()));
  s.write(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nProxy-Authorization: ${basic(KEY)}\r\n\r\nping`);
  await waitFor('echo through the tunnel', 3_000, () => got.endsWith('ping'), 20);
  // The handshake timeout must not apply to an established tunnel.
  await new Promise((r) => setTimeout(r, TEST_TIMEOUTS.handshakeMs + 300));
  s.write('pong');
  await waitFor('echo after a quiet spell', 3_000, () => got.endsWith('pingpong'), 20);
  assert.equal(h.tunnels.size, 1);
  const closed = new Promise((r) => s.once('close', r));
  assert.equal(h.tunnels.closeKey(hashKey(KEY)), 1);
  await closed;
  await h.settle();

  const s2 = net.connect({ port: h.httpPort, host: '127.0.0.1' });
  s2.on('error', () => {});
  s2.write(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nProxy-Authorization: ${basic(KEY_SOCKS_DEVICE)}\r\n\r\nx`);
  await waitFor('second tunnel', 3_000, () => h.tunnels.size === 1, 20);
  s2.resetAndDestroy();
  await h.settle();
});

test('key store failure -> 503, not 407', async () => {
  h.resolver.failing = true;
  try {
    const r = await curl(['-x', proxy('sk-any'), `http://127.0.0.1:${web.port}/`]);
    assert.equal(r.httpCode, 503);
    assert.equal(r.headers['x-tailgate-error'], 'key-store');
  } finally {
    h.resolver.failing = false;
  }
  await h.settle();
});

test('logs carry a key tag, never a key', () => {
  const all = h.logLines.join('');
  assert.ok(all.includes('tunnel closed'));
  for (const key of [KEY, KEY_SOCKS_DEVICE, KEY_REFUSED, KEY_SILENT]) {
    assert.ok(!all.includes(key), `key ${key} leaked into logs`);
    assert.ok(!all.includes(hashKey(key)));
  }
});

test('a pooled device connection the device half-closed is not reused for the next forwarded request', async () => {
  // The device answers one request, then sends FIN but keeps reading (and ignoring) what arrives: a request
  // written into that connection would never be answered.
  let connections = 0;
  const device = net.createServer({ allowHalfOpen: true }, (s) => {
    connections++;
    s.on('error', () => s.destroy());
    let head = '';
    const onData = (c: Buffer) => {
      head += c.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      s.off('data', onData);
      s.resume();
      s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok');
      setTimeout(() => s.end(), 50);
    };
    s.on('data', onData);
  });
  await new Promise<void>((resolve) => device.listen(0, '127.0.0.1', resolve));
  const key = 'sk-http-half-closing-device-0005';
  h.resolver.bind(key, { ip: '127.0.0.1', port: (device.address() as net.AddressInfo).port });
  try {
    const first = await curl(['-x', proxy(key), `http://127.0.0.1:${web.port}/one`], 5_000);
    assert.equal(first.httpCode, 200, first.stderr);
    await new Promise((r) => setTimeout(r, 300));
    const second = await curl(['-x', proxy(key), `http://127.0.0.1:${web.port}/two`], 5_000);
    assert.equal(second.exitCode, 0, `second request: ${second.stderr}`);
    assert.equal(second.httpCode, 200);
    assert.equal(connections, 2, 'the second request got a fresh device connection');
  } finally {
    device.close();
  }
});
