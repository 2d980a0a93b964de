// SOCKS5 listener against real curl, the third-party `proxy` package as HTTP device and the test SOCKS5
// device, with local HTTP/HTTPS/echo targets on 127.0.0.1 and ::1.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import type { Dialer } from '../src/core/dialer.js';
import { hashKey } from '../src/core/key.js';
import { encodeSocksConnect } from '../src/protocol/socks5.js';
import { curl } from './helpers/curl.js';
import { closedPort, type Device } from './helpers/devices.js';
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
let echo: EchoTarget;
let tls: TlsMaterial;
let KEY: string;
let KEY_SOCKS_DEVICE: string;
let KEY_REFUSED: string;
let KEY_SILENT: string;

before(async () => {
  world = await startProxyWorld('socks', {});
  ({ h, httpDevice, socksDevice, silentDevice, web, web6, tlsWeb, echo, tls } = world);
  ({ http: KEY, socks: KEY_SOCKS_DEVICE, refused: KEY_REFUSED, silent: KEY_SILENT } = world.keys);
});

after(() => world.close());

const socks = (key: string, pass = key) => `${key}:${pass}@127.0.0.1:${h.socksPort}`;

// ---- raw protocol helpers ----
const greeting = Buffer.from([5, 1, 2]);
const auth = (u: string, p = u) => Buffer.concat([Buffer.from([1, u.length]), Buffer.from(u), Buffer.from([p.length]), Buffer.from(p)]);
const connectV4 = (port: number, cmd = 1) => Buffer.from([5, cmd, 0, 1, 127, 0, 0, 1, port >> 8, port & 0xff]);
const connectName = (host: string, port: number) => Buffer.concat([Buffer.from([5, 1, 0, 3, host.length]), Buffer.from(host), Buffer.from([port >> 8, port & 0xff])]);
const replyCode = (b: Buffer) => b[4 + 1];

test('curl --socks5 to an HTTP target through an HTTP device', async () => {
  const r = await curl(['--socks5', socks(KEY), `http://127.0.0.1:${web.port}/`]);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.equal(r.stdout, 'hello from http 127.0.0.1\n');
  assert.ok(httpDevice.seen.includes(`CONNECT 127.0.0.1:${web.port}`));
  await h.settle();
});

test('curl --socks5-hostname passes the name to the device unresolved; HTTPS through it', async () => {
  const r = await curl(['--socks5-hostname', socks(KEY), '--cacert', tls.certFile, `https://localhost:${tlsWeb.port}/big?n=3000000`]);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.equal(sha256(Buffer.from(r.stdout, 'latin1')), sha256(payload(3_000_000)));
  assert.ok(httpDevice.seen.includes(`CONNECT localhost:${tlsWeb.port}`), httpDevice.seen.join(', '));
  await h.settle();
});

test('IPv6 destination [::1] (ATYP 4) reaches the device as a bracketed CONNECT', async () => {
  const r = await curl(['--socks5', socks(KEY), `http://[::1]:${web6.port}/`]);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.equal(r.stdout, 'hello from http ::1\n');
  assert.ok(httpDevice.seen.includes(`CONNECT [::1]:${web6.port}`), httpDevice.seen.join(', '));
  await h.settle();
});

test('protocol socks5 device: domain, IPv4 and IPv6 requests go through a SOCKS CONNECT', async () => {
  const byName = await curl(['--socks5-hostname', socks(KEY_SOCKS_DEVICE), `http://localhost:${web.port}/echo`]);
  assert.equal(byName.exitCode, 0, byName.stderr);
  assert.equal(JSON.parse(byName.stdout).method, 'GET');
  assert.ok(socksDevice.seen.includes(`domain localhost ${web.port}`), socksDevice.seen.join(', '));
  const v6 = await curl(['--socks5', socks(KEY_SOCKS_DEVICE), `http://[::1]:${web6.port}/`]);
  assert.equal(v6.stdout, 'hello from http ::1\n');
  assert.ok(socksDevice.seen.includes(`ipv6 0:0:0:0:0:0:0:1 ${web6.port}`), socksDevice.seen.join(', '));
  const tlsRun = await curl(['--socks5', socks(KEY_SOCKS_DEVICE), '-k', `https://127.0.0.1:${tlsWeb.port}/`]);
  assert.equal(tlsRun.stdout, 'hello from https 127.0.0.1\n');
  await h.settle();
});

test('data pipelined right after the request is not lost, half-close works, and bytes are counted exactly', async () => {
  const upstream = async () => (await h.metrics.bytes.get()).values.find((v) => v.labels.listener === 'socks5' && v.labels.direction === 'upstream')?.value ?? 0;
  for (const key of [KEY, KEY_SOCKS_DEVICE]) {
    await h.settle();
    const before = await h.metrics.registry.getSingleMetricAsString('tailgate_tunnels_total');
    const upBefore = await upstream();
    const data = payload(200_000);
    const r = await rawExchange(h.socksPort, [Buffer.concat([greeting, auth(key), connectV4(echo.port), data])], { end: true, timeoutMs: 5_000 });
    assert.ok(r.closed, 'echo target ends after our FIN, so the tunnel closes cleanly');
    assert.deepEqual(r.data.subarray(0, 4), Buffer.from([5, 2, 1, 0]));
    assert.equal(replyCode(r.data), 0);
    assert.equal(sha256(r.data.subarray(14)), sha256(data), `echoed bytes via ${key}`);
    assert.notEqual(await h.metrics.registry.getSingleMetricAsString('tailgate_tunnels_total'), before);
    await h.settle();
    // Every byte after the request, those read ahead while the device was dialled included.
    assert.equal((await upstream()) - upBefore, data.length, `upstream bytes via ${key}`);
  }
});

test('a large transfer keeps its bytes in order under backpressure', async () => {
  const data = payload(16 * 1024 * 1024);
  const r = await rawExchange(h.socksPort, [Buffer.concat([greeting, auth(KEY), connectV4(echo.port)]), data], { end: true, timeoutMs: 20_000 });
  assert.ok(r.closed);
  assert.equal(r.data.length, 12 + 2 + data.length);
  assert.equal(sha256(r.data.subarray(14)), sha256(data));
  await h.settle();
});

test('no-auth-only greeting gets 0xFF and is closed', async () => {
  const r = await rawExchange(h.socksPort, [Buffer.from([5, 1, 0])]);
  assert.deepEqual(r.data, Buffer.from([5, 0xff]));
  assert.ok(r.closed);
  await h.settle();
});

test('wrong password, unknown key: status 0x01 then close; curl fails; counted as auth failures', async () => {
  for (const [u, p] of [[KEY, 'not-the-key'], ['sk-unknown-key', 'sk-unknown-key']] as const) {
    const r = await rawExchange(h.socksPort, [greeting, auth(u, p)]);
    assert.deepEqual(r.data, Buffer.from([5, 2, 1, 1]));
    assert.ok(r.closed);
  }
  const c = await curl(['--socks5', socks(KEY, 'wrong'), `http://127.0.0.1:${web.port}/`]);
  assert.notEqual(c.exitCode, 0);
  assert.match(await h.metrics.registry.getSingleMetricAsString('tailgate_auth_failures_total'), /listener="socks5"\} [3-9]/);
  await h.settle();
});

test('BIND and UDP ASSOCIATE -> 0x07, unknown address type -> 0x08', async () => {
  for (const [req, code] of [
    [connectV4(80, 2), 7],
    [connectV4(80, 3), 7],
    [Buffer.from([5, 1, 0, 9, 1, 2]), 8],
  ] as const) {
    const r = await rawExchange(h.socksPort, [Buffer.concat([greeting, auth(KEY), req])]);
    assert.equal(replyCode(r.data), code, r.data.toString('hex'));
    assert.equal(r.data.length, 4 + 10);
    assert.ok(r.closed);
  }
  await h.settle();
});

test('garbage and truncated handshakes are closed without a crash or a leak', async () => {
  const cases: Buffer[][] = [
    [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')],
    [Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00])],
    [Buffer.from([5, 200, 1, 2, 3])], // greeting promising 200 methods, then FIN
    [greeting, Buffer.from([1, 10, 0x61])], // truncated credentials, then FIN
    [greeting, auth(KEY), Buffer.from([5, 1, 0, 3, 40, 0x61])], // truncated domain, then FIN
  ];
  for (const chunks of cases) {
    const r = await rawExchange(h.socksPort, chunks, { end: true, timeoutMs: 2_000 });
    assert.ok(r.closed, `closed for ${Buffer.concat(chunks).toString('hex')}`);
    assert.ok(r.ms < 1_000, `closed quickly (${r.ms} ms)`);
  }
  for (let i = 0; i < 50; i++) {
    const junk = payload(1 + ((i * 7919) % 300)).map((b, j) => (b * (i + 3) + j) & 0xff);
    junk[0] = i % 2 === 0 ? 5 : junk[0]!;
    await rawExchange(h.socksPort, [Buffer.from(junk)], { end: true, timeoutMs: 2_000 });
  }
  await h.settle();
  const ok = await curl(['--socks5', socks(KEY), `http://127.0.0.1:${web.port}/`]);
  assert.equal(ok.stdout, 'hello from http 127.0.0.1\n', 'still serving');
  await h.settle();
});

test('a client that stalls mid-handshake is cut at the handshake timeout', async () => {
  const r = await rawExchange(h.socksPort, [greeting, Buffer.from([1, 5])], { timeoutMs: 5_000 });
  assert.ok(r.closed);
  assert.deepEqual(r.data, Buffer.from([5, 2]));
  assert.ok(r.ms >= TEST_TIMEOUTS.handshakeMs - 50 && r.ms < TEST_TIMEOUTS.handshakeMs + 1_000, `cut after ${r.ms} ms`);
  await h.settle();
});

test('device refusing -> 0x05; device never answering -> 0x06 at the connect timeout, device socket released', async () => {
  const refused = await rawExchange(h.socksPort, [Buffer.concat([greeting, auth(KEY_REFUSED), connectName('example.com', 80)])]);
  assert.equal(replyCode(refused.data), 5);
  assert.ok(refused.closed);
  const c = await curl(['--socks5-hostname', socks(KEY_REFUSED), 'http://example.com/']);
  assert.equal(c.exitCode, 97, c.stderr);

  const silent = await rawExchange(h.socksPort, [Buffer.concat([greeting, auth(KEY_SILENT), connectName('example.com', 80)])], { timeoutMs: 5_000 });
  assert.equal(replyCode(silent.data), 6);
  assert.ok(silent.ms >= TEST_TIMEOUTS.connectMs - 50 && silent.ms < TEST_TIMEOUTS.connectMs + 1_000, `answered after ${silent.ms} ms`);
  await waitFor('silent device to see its connection closed', 3_000, async () => (await silentDevice.connections()) === 0, 20);
  assert.match(await h.metrics.registry.getSingleMetricAsString('tailgate_device_dial_errors_total'), /reason="timeout"\} [1-9]/);
  await h.settle();
});

test('target refused at the device (SOCKS device reply 0x05) reaches the client as 0x05', async () => {
  const port = await closedPort();
  const r = await rawExchange(h.socksPort, [Buffer.concat([greeting, auth(KEY_SOCKS_DEVICE), connectV4(port)])]);
  assert.equal(replyCode(r.data), 5);
  await h.settle();
});

test('tailnet unavailable -> 0x03 at once; device offline -> 0x04', async () => {
  const mustNotDial: Dialer = { dial: () => Promise.reject(new Error('must not dial while unavailable')) };
  const h2 = await startHarness({ dialer: mustNotDial, tailnet: fixedTailnet({ unavailable: 'tailscaled is restarting' }) });
  try {
    h2.resolver.bind(KEY, { ip: '127.0.0.1', port: httpDevice.port });
    const r = await rawExchange(h2.socksPort, [Buffer.concat([greeting, auth(KEY), connectV4(web.port)])]);
    assert.equal(replyCode(r.data), 3);
    assert.ok(r.ms < 300, `fails fast (${r.ms} ms)`);
  } finally {
    await h2.close();
  }
  const h3 = await startHarness({ tailnet: fixedTailnet({ online: (ip) => (ip === '127.0.0.2' ? false : undefined) }) });
  try {
    h3.resolver.bind(KEY, { ip: '127.0.0.2', port: httpDevice.port });
    const r = await rawExchange(h3.socksPort, [Buffer.concat([greeting, auth(KEY), connectV4(web.port)])]);
    assert.equal(replyCode(r.data), 4);
  } finally {
    await h3.close();
  }
});

test('key store failure is a general failure (0x01), not an auth failure', async () => {
  h.resolver.failing = true;
  try {
    const r = await rawExchange(h.socksPort, [Buffer.concat([greeting, auth('sk-some-key'), connectV4(web.port)])]);
    assert.deepEqual(r.data.subarray(0, 4), Buffer.from([5, 2, 1, 0]));
    assert.equal(replyCode(r.data), 1);
  } finally {
    h.resolver.failing = false;
  }
  await h.settle();
});

test('revoking the key closes its open tunnel; a client reset mid-relay leaks nothing', async () => {
  const s = net.connect({ port: h.socksPort, host: '127.0.0.1' });
  s.on('error', () => {});
  const got: Buffer[] = [];
  s.on('data', (c: Buffer) => got.push(c));
  s.write(Buffer.concat([greeting, auth(KEY), connectV4(echo.port)]));
  await waitFor('tunnel to open', 3_000, () => Buffer.concat(got).length >= 14, 20);
  s.write('ping');
  await waitFor('echo', 3_000, () => Buffer.concat(got).subarray(14).toString() === 'ping', 20);
  // The handshake timeout must not apply to an established tunnel.
  await new Promise((r) => setTimeout(r, TEST_TIMEOUTS.handshakeMs + 300));
  s.write('pong');
  await waitFor('echo after a quiet spell', 3_000, () => Buffer.concat(got).subarray(14).toString() === 'pingpong', 20);
  assert.equal(h.tunnels.size, 1);
  const closed = new Promise((r) => s.once('close', r));
  assert.equal(h.tunnels.closeKey(hashKey(KEY)), 1);
  await closed;
  await h.settle();

  const s2 = net.connect({ port: h.socksPort, host: '127.0.0.1' });
  s2.on('error', () => {});
  s2.write(Buffer.concat([greeting, auth(KEY_SOCKS_DEVICE), connectV4(echo.port), Buffer.from('x')]));
  await waitFor('second tunnel', 3_000, () => h.tunnels.size === 1, 20);
  s2.resetAndDestroy();
  await h.settle();
});

test('an idle tunnel is closed at the idle timeout, both sides', async () => {
  const h2 = await startHarness({ timeouts: { idleMs: 1_000 } });
  try {
    h2.resolver.bind(KEY, { ip: '127.0.0.1', port: httpDevice.port });
    const r = await rawExchange(h2.socksPort, [Buffer.concat([greeting, auth(KEY), connectV4(echo.port), Buffer.from('hi')])], { timeoutMs: 4_000 });
    assert.ok(r.closed);
    assert.equal(r.data.subarray(14).toString(), 'hi');
    assert.ok(r.ms >= 950 && r.ms < 2_500, `closed after ${r.ms} ms`);
    await h2.settle();
    await waitFor('device side to close as well', 3_000, async () => (await echo.connections()) === 0 && (await httpDevice.connections()) === 0, 20);
  } finally {
    await h2.close();
  }
});

test('IPv6 literal request bytes (ATYP 4) for a SOCKS device', async () => {
  const req = encodeSocksConnect({ host: '::1', port: web6.port });
  assert.equal(req[3], 4);
  const r = await rawExchange(h.socksPort, [Buffer.concat([greeting, auth(KEY_SOCKS_DEVICE), req, Buffer.from('GET / HTTP/1.0\r\n\r\n')])], { timeoutMs: 3_000 });
  assert.equal(replyCode(r.data), 0);
  assert.match(r.data.subarray(14).toString(), /hello from http ::1/);
  await h.settle();
});

test('logs carry a key tag, never a key', () => {
  const all = h.logLines.join('');
  assert.ok(all.includes('tunnel closed'), 'debug tunnel lines are written');
  for (const key of [KEY, KEY_SOCKS_DEVICE, KEY_REFUSED, KEY_SILENT]) {
    assert.ok(!all.includes(key), `key ${key} leaked into logs`);
    assert.ok(!all.includes(hashKey(key)), 'full key hash leaked into logs');
  }
  assert.ok(all.includes(hashKey(KEY).slice(0, 10)));
});
