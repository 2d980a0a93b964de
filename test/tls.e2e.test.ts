// TLS listeners through the gateway as app.ts assembles it, on real PostgreSQL, with a stand-in HTTP device on
// 127.0.0.2 and a CA and certificates made here with openssl: real curl to the HTTPS proxy (`--proxy https://` with
// `--proxy-cacert`), a Node TLS client speaking SOCKS5 on the SOCKS5-over-TLS port, the API over TLS, usage billed in
// plaintext bytes, certificate renewal by rename with a tunnel open across it, a bad renewal refused, and the plain
// listeners switched off.
import assert from 'node:assert/strict';
import { mkdir, rename, symlink, writeFile } from 'node:fs/promises';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import tls from 'node:tls';
import { pino } from 'pino';
import { startGateway, type Gateway } from '../src/app.js';
import { newcomerLines } from '../src/cli/serve.js';
import { ConfigError, loadConfig } from '../src/config.js';
import { waitFor } from '../testbed/wait.js';
import { connectThrough } from './helpers/connect-tunnel.js';
import { curl } from './helpers/curl.js';
import { closedPort, type Device } from './helpers/devices.js';
import type { TestDatabase } from './helpers/db.js';
import { loopbackConfig } from './helpers/gateway-config.js';
import { GatewayScene } from './helpers/gateway-scene.js';
import { payload, sha256, type EchoTarget, type Listening } from './helpers/targets.js';
import { makeTestCa, replaceByRename, type IssuedPair, type TestCa } from './helpers/tls-certs.js';
import { curlMoved, usageOf } from './helpers/usage.js';

const TOKEN = 'test-admin-token-tls-0123456789ab';
const log = pino({ level: 'silent' });

let scene: GatewayScene;
let db: TestDatabase;
let ca: TestCa;
let first: IssuedPair;
/** The files the gateway follows; tests rename other pairs over them. */
let live: { certFile: string; keyFile: string };
let gw: Gateway;
let device: Device;
let web: Listening;
let echo: EchoTarget;
let deviceId = 0;

function tlsEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    DATABASE_URL: db.url,
    TAILGATE_USAGE_FLUSH_MS: '100',
    TAILGATE_TLS_CERT: live.certFile,
    TAILGATE_TLS_KEY: live.keyFile,
    TAILGATE_HTTPS_PORT: '0',
    TAILGATE_SOCKS_TLS_PORT: '0',
    TAILGATE_API_TLS: 'true',
    ...extra,
  };
}

/** One call to the API over TLS, trusting only the test CA. */
function apiCall(port: number, method: string, route: string, body?: unknown): Promise<{ status: number; json: any; serial: string }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = https.request(
      { host: '127.0.0.1', port, method, path: route, ca: ca.ca, servername: 'localhost', agent: false, timeout: 5_000, headers: { authorization: `Bearer ${TOKEN}`, ...(data ? { 'content-type': 'application/json' } : {}) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          const serial = (res.socket as tls.TLSSocket).getPeerCertificate().serialNumber;
          resolve({ status: res.statusCode ?? 0, json: text.startsWith('{') || text.startsWith('[') ? JSON.parse(text) : text, serial });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('API call timed out')));
    req.on('error', reject);
    req.end(data);
  });
}

async function newKey(name: string): Promise<{ id: number; key: string }> {
  const r = await apiCall(gw.ports.api, 'POST', '/keys', { name, device: deviceId });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  return { id: r.json.id, key: r.json.key };
}

/** A TLS connection to a gateway port that trusts only the test CA; resolves once the handshake is done. */
function tlsConnect(port: number): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    // allowHalfOpen is a documented tls.connect option that @types/node leaves out.
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: ca.ca, allowHalfOpen: true } as tls.ConnectionOptions);
    s.setTimeout(5_000, () => s.destroy(new Error('TLS handshake timed out')));
    s.once('error', reject);
    s.once('secureConnect', () => {
      s.setTimeout(0);
      s.off('error', reject);
      resolve(s);
    });
  });
}

/** Reads exactly n bytes (or fails on close or after 5 s). */
function readBytes(s: net.Socket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let got = Buffer.alloc(0);
    const timer = setTimeout(() => done(new Error(`read ${got.length} of ${n} bytes in 5 s`)), 5_000);
    const onData = (c: Buffer) => {
      got = Buffer.concat([got, c]);
      if (got.length >= n) {
        if (got.length > n) s.unshift(got.subarray(n));
        done(null);
      }
    };
    const onClose = () => done(new Error(`closed after ${got.length} of ${n} bytes`));
    const done = (err: Error | null) => {
      clearTimeout(timer);
      s.off('data', onData);
      s.off('close', onClose);
      s.pause();
      if (err) reject(err);
      else resolve(got.subarray(0, n));
    };
    s.on('data', onData);
    s.on('close', onClose);
    s.resume();
  });
}

/** SOCKS5 with username/password to 127.0.0.1:targetPort, over a TLS connection; the auth status and the reply code. */
async function socksOverTls(port: number, key: string, targetPort: number): Promise<{ socket: tls.TLSSocket; auth: number; reply: number }> {
  const s = await tlsConnect(port);
  const k = Buffer.from(key);
  s.write(Buffer.from([5, 1, 2]));
  const method = await readBytes(s, 2);
  assert.deepEqual([...method], [5, 2]);
  s.write(Buffer.concat([Buffer.from([1, k.length]), k, Buffer.from([k.length]), k]));
  const [, auth] = await readBytes(s, 2);
  if (auth !== 0) return { socket: s, auth: auth!, reply: -1 };
  s.write(Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, targetPort >> 8, targetPort & 0xff]));
  const reply = await readBytes(s, 10);
  return { socket: s, auth: 0, reply: reply[1]! };
}

/** n bytes through an open tunnel to the echo target and back. */
async function echoRound(s: net.Socket, n: number, seed = 0): Promise<void> {
  const out = payload(n + seed).subarray(seed);
  s.write(out);
  const back = await readBytes(s, n);
  assert.equal(sha256(back), sha256(out), 'the echo came back intact');
}

/** The serial number of the certificate a new TLS connection to `port` is shown. */
async function servedSerial(port: number): Promise<string> {
  const s = await tlsConnect(port);
  const serial = s.getPeerCertificate().serialNumber;
  s.destroy();
  return serial;
}

const metric = async (name: string, labels: Record<string, string> = {}): Promise<number> => {
  const m = (await gw.metrics.registry.getSingleMetric(name)?.get())?.values ?? [];
  return m.filter((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val)).reduce((a, v) => a + v.value, 0);
};

before(async () => {
  scene = await GatewayScene.open({ label: 'tls', deviceHost: '127.0.0.2' });
  ({ db, device, web, echo } = scene);
  ca = scene.own('the test CA', await makeTestCa(), (c) => c.remove());
  first = await ca.issue('tailgate-one', '1001');
  live = { certFile: path.join(ca.dir, 'live', 'tls.crt'), keyFile: path.join(ca.dir, 'live', 'tls.key') };
  await mkdir(path.dirname(live.certFile));
  await writeFile(live.certFile, first.cert);
  await writeFile(live.keyFile, first.key);
  gw = await scene.startGateway(loopbackConfig(TOKEN, tlsEnv()));
  deviceId = await scene.registerDevice((method, route, body) => apiCall(gw.ports.api, method, route, body), 'tls-device-key-0001', 'tls-dev');
});

after(() => scene?.close());

test('configuration: both files or neither, TLS switches need them, plain listeners off only with TLS', () => {
  const problems = (env: Record<string, string>) => {
    try {
      loadConfig(env);
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return err.problems;
    }
    return [];
  };
  assert.deepEqual(problems({ TAILGATE_TLS_CERT: '/x/cert.pem' }), ['TAILGATE_TLS_KEY: required when TAILGATE_TLS_CERT is set']);
  assert.deepEqual(problems({ TAILGATE_TLS_KEY: '/x/key.pem' }), ['TAILGATE_TLS_CERT: required when TAILGATE_TLS_KEY is set']);
  assert.deepEqual(problems({ TAILGATE_API_TLS: 'true', TAILGATE_PLAIN_LISTENERS: 'false' }), [
    'TAILGATE_API_TLS: needs TAILGATE_TLS_CERT and TAILGATE_TLS_KEY',
    'TAILGATE_PLAIN_LISTENERS: false leaves no proxy listener without TAILGATE_TLS_CERT and TAILGATE_TLS_KEY',
  ]);
  assert.deepEqual(problems({ TAILGATE_TLS_CERT: 'c', TAILGATE_TLS_KEY: 'k', TAILGATE_PLAIN_LISTENERS: 'maybe' }), ['TAILGATE_PLAIN_LISTENERS: expected true or false, got "maybe"']);
  const c = loadConfig({ TAILGATE_TLS_CERT: 'c.pem', TAILGATE_TLS_KEY: 'k.pem' });
  assert.equal(c.tls?.httpsPort, 8443);
  assert.equal(c.tls?.socksTlsPort, 1443);
  assert.equal(c.tls?.api, false);
  assert.equal(c.plainListeners, true);
  assert.equal(loadConfig({}).tls, undefined);
  // A plain API on a non-loopback address while a certificate is at hand is worth a warning.
  const warned = loadConfig({ TAILGATE_TLS_CERT: 'c.pem', TAILGATE_TLS_KEY: 'k.pem', TAILGATE_ADMIN_TOKEN: 'a'.repeat(32), TAILGATE_API_HOST: '10.0.0.1' });
  assert.ok(warned.warnings.some((w) => w.includes('TAILGATE_API_TLS=true')), warned.warnings.join('\n'));
  // What `tailgate serve` tells a person at a terminal names the TLS listeners, and only the listeners that are on.
  const tlsOnly = loadConfig({ TAILGATE_TLS_CERT: 'c.pem', TAILGATE_TLS_KEY: 'k.pem', TAILGATE_PLAIN_LISTENERS: 'false', TAILGATE_API_TLS: 'true', TAILGATE_LISTEN_HOST: '127.0.0.1' });
  const lines = newcomerLines(tlsOnly, { http: 0, socks: 0, api: 9091, https: 8443, socksTls: 1443 }).split('\n');
  assert.equal(lines[0], 'proxies: HTTPS https://127.0.0.1:8443  SOCKS5 over TLS 127.0.0.1:1443');
  assert.match(lines[1]!, /^management API: https:\/\/127\.0\.0\.1:9091 /);
});

test('a bad pair stops start-up with the file named, before anything listens', async () => {
  const other = await ca.issue('tailgate-mismatch', '2002');
  await assert.rejects(
    startGateway(loopbackConfig(TOKEN, tlsEnv({ TAILGATE_TLS_CERT: first.certFile, TAILGATE_TLS_KEY: other.keyFile })), log),
    (err: Error) => err.message === `${other.keyFile}: the key does not belong to the certificate in ${first.certFile}`,
  );
  await assert.rejects(
    startGateway(loopbackConfig(TOKEN, tlsEnv({ TAILGATE_TLS_CERT: path.join(ca.dir, 'missing.pem') })), log),
    (err: Error) => err.message === `${path.join(ca.dir, 'missing.pem')}: cannot read the certificate (ENOENT)`,
  );
});

test('HTTPS proxy with curl --proxy https:// --proxy-cacert: plain forward and CONNECT; a wrong key gets 407 over TLS', async () => {
  const k = await newKey('curl');
  const proxy = ['--proxy', `https://${k.key}:${k.key}@localhost:${gw.ports.https}`, '--proxy-cacert', ca.caFile];
  const forwarded = await curl([...proxy, `http://127.0.0.1:${web.port}/big?n=100000`]);
  assert.equal(forwarded.exitCode, 0, forwarded.stderr);
  assert.equal(forwarded.httpCode, 200);
  assert.equal(sha256(Buffer.from(forwarded.stdout, 'latin1')), sha256(payload(100_000)));
  const tunnelled = await curl([...proxy, '-p', `http://127.0.0.1:${web.port}/hello`]);
  assert.equal(tunnelled.exitCode, 0, tunnelled.stderr);
  assert.equal(tunnelled.connectCode, 200);
  assert.equal(tunnelled.stdout, 'hello from http 127.0.0.1\n');
  assert.ok(device.seen.includes(`CONNECT 127.0.0.1:${web.port}`), 'the CONNECT went through the device');

  // The proxy's certificate is checked: without the CA curl refuses it.
  const untrusted = await curl(['--proxy', `https://${k.key}:${k.key}@localhost:${gw.ports.https}`, `http://127.0.0.1:${web.port}/`]);
  assert.equal(untrusted.exitCode, 60, untrusted.stderr);

  const bad = ['--proxy', `https://wrong-key-000000:wrong-key-000000@localhost:${gw.ports.https}`, '--proxy-cacert', ca.caFile];
  const refused = await curl([...bad, `http://127.0.0.1:${web.port}/`]);
  assert.equal(refused.httpCode, 407);
  assert.equal(refused.headers['proxy-authenticate'], 'Basic realm="tailgate"');
  assert.equal(refused.headers['x-tailgate-error'], 'auth');
  const refusedConnect = await curl([...bad, '-p', `http://127.0.0.1:${web.port}/`]);
  assert.equal(refusedConnect.connectCode, 407);
  assert.equal(refusedConnect.exitCode, 56);
  assert.ok((await metric('tailgate_tunnels_total', { listener: 'https' })) >= 2);
  assert.ok((await metric('tailgate_auth_failures_total', { listener: 'https' })) >= 2);
});

test('SOCKS5 over TLS: a Node TLS client does the handshake and moves bytes; a wrong key gets status 0x01', async () => {
  const k = await newKey('socks-tls');
  const { socket, auth, reply } = await socksOverTls(gw.ports.socksTls!, k.key, echo.port);
  assert.equal(auth, 0);
  assert.equal(reply, 0);
  await echoRound(socket, 50_000);
  socket.destroy();
  const wrong = await socksOverTls(gw.ports.socksTls!, 'wrong-key-000000', echo.port);
  assert.equal(wrong.auth, 1);
  await waitFor('the refused connection closed', 5_000, () => wrong.socket.destroyed || wrong.socket.readableEnded, 20);
  wrong.socket.destroy();
  assert.ok((await metric('tailgate_tunnels_total', { listener: 'socks5-tls' })) >= 1);
});

test('the API over TLS: answers with the certificate, and a plain HTTP request on its port gets nothing', async () => {
  const r = await apiCall(gw.ports.api, 'GET', '/devices');
  assert.equal(r.status, 200);
  assert.ok(Array.isArray(r.json) && r.json.some((d: { id: number }) => d.id === deviceId));
  const ready = await apiCall(gw.ports.api, 'GET', '/readyz');
  assert.equal(ready.status, 200, JSON.stringify(ready.json));
  // GET /stats names the TLS listeners too (for ready-made client commands).
  const stats = await apiCall(gw.ports.api, 'GET', '/stats');
  assert.equal(stats.status, 200);
  assert.deepEqual(stats.json.listeners, { http: gw.ports.http, socks5: gw.ports.socks, https: gw.ports.https, socks5Tls: gw.ports.socksTls });
  await assert.rejects(fetch(`http://127.0.0.1:${gw.ports.api}/healthz`, { signal: AbortSignal.timeout(5_000) }));
});

test('usage over TLS bills the plaintext bytes, as on the plain listeners; a half-close crosses TLS', async () => {
  // HTTPS proxy CONNECT: n bytes up, then the client half-closes; the echo answers everything and closes its side.
  const connect = await newKey('usage-https');
  const n = 123_457;
  const s = await connectThrough(await tlsConnect(gw.ports.https!), connect.key, echo.port);
  s.write(payload(n));
  s.end();
  const back = await readBytes(s, n);
  assert.equal(sha256(back), sha256(payload(n)));
  await waitFor('the tunnel closed from the far side', 5_000, () => s.readableEnded || s.destroyed, 20);
  s.destroy();

  const socks = await newKey('usage-socks-tls');
  const m = 65_537;
  const t = await socksOverTls(gw.ports.socksTls!, socks.key, echo.port);
  assert.equal(t.reply, 0);
  await echoRound(t.socket, m);
  t.socket.destroy();

  // A forwarded request through the HTTPS proxy: what curl counts it sent and received (heads included), as over HTTP.
  const forwarded = await newKey('usage-https-forward');
  const moved = await curlMoved(['--proxy', `https://${forwarded.key}:${forwarded.key}@localhost:${gw.ports.https}`, '--proxy-cacert', ca.caFile], `http://127.0.0.1:${web.port}/big?n=54321`);
  assert.equal(moved.code, 200);

  await waitFor('every tunnel closed', 5_000, () => gw.usage.openMeters === 0, 10);
  await gw.usage.flush();
  assert.deepEqual(await usageOf(db.sql, 'key_id', connect.id), { up: n, down: n, tunnels: 1, refused: 0, failures: 0 });
  assert.deepEqual(await usageOf(db.sql, 'key_id', socks.id), { up: m, down: m, tunnels: 1, refused: 0, failures: 0 });
  assert.deepEqual(await usageOf(db.sql, 'key_id', forwarded.id), { up: moved.up, down: moved.down, tunnels: 1, refused: 0, failures: 0 });
});

test('renewal by rename: open tunnels keep moving bytes, new connections see the new certificate; a bad pair is refused', async () => {
  const k = await newKey('reload');
  const viaHttps = await connectThrough(await tlsConnect(gw.ports.https!), k.key, echo.port);
  const viaSocks = await socksOverTls(gw.ports.socksTls!, k.key, echo.port);
  assert.equal(viaSocks.reply, 0);
  await echoRound(viaHttps, 10_000);
  await echoRound(viaSocks.socket, 10_000);
  assert.equal(viaHttps.getPeerCertificate().serialNumber, '1001');
  const loadedBefore = await metric('tailgate_tls_reloads_total', { result: 'loaded' });

  const second = await ca.issue('tailgate-two', '2a2a');
  // The key first, then the certificate, as a renewal that writes two files would.
  await replaceByRename(live.keyFile, second.key);
  await replaceByRename(live.certFile, second.cert);
  await waitFor('the HTTPS proxy serving the new certificate', 10_000, async () => (await servedSerial(gw.ports.https!)) === '2A2A');
  assert.equal(await servedSerial(gw.ports.socksTls!), '2A2A');
  assert.equal((await apiCall(gw.ports.api, 'GET', '/healthz')).serial, '2A2A');
  assert.equal(gw.tls?.certificates.served.serial, '2A2A');
  assert.match(gw.tls!.certificates.served.subject, /CN=tailgate-two/);
  assert.equal(await metric('tailgate_tls_reloads_total', { result: 'loaded' }), loadedBefore + 1);

  // The tunnels opened under the old certificate still carry bytes both ways.
  await echoRound(viaHttps, 20_000, 7);
  await echoRound(viaSocks.socket, 20_000, 7);
  assert.equal(viaHttps.getPeerCertificate().serialNumber, '1001');
  // A new tunnel works under the new certificate.
  const fresh = await connectThrough(await tlsConnect(gw.ports.https!), k.key, echo.port);
  await echoRound(fresh, 1_000);
  fresh.destroy();

  // A certificate whose key is not the one on disk: refused, the second pair stays in use.
  const refusedBefore = await metric('tailgate_tls_reloads_total', { result: 'refused' });
  const third = await ca.issue('tailgate-three', '3b3b');
  await replaceByRename(live.certFile, third.cert);
  await waitFor('the mismatched pair refused', 10_000, async () => (await metric('tailgate_tls_reloads_total', { result: 'refused' })) > refusedBefore);
  assert.equal(await servedSerial(gw.ports.https!), '2A2A');
  assert.equal(await servedSerial(gw.ports.socksTls!), '2A2A');
  // Something that is not a certificate at all: refused too.
  await replaceByRename(live.certFile, 'not a certificate\n');
  await waitFor('the garbage refused', 10_000, async () => (await metric('tailgate_tls_reloads_total', { result: 'refused' })) > refusedBefore + 1);
  assert.equal(await servedSerial(gw.ports.https!), '2A2A');
  await echoRound(viaHttps, 5_000, 3);

  // Back to a matching pair: served again.
  await replaceByRename(live.keyFile, third.key);
  await replaceByRename(live.certFile, third.cert);
  await waitFor('the third pair served', 10_000, async () => (await servedSerial(gw.ports.https!)) === '3B3B');
  viaHttps.destroy();
  viaSocks.socket.destroy();
});

test("a Kubernetes secret volume's renewal (the ..data symlink swapped) is followed", async () => {
  // The layout kubelet writes: tls.crt -> ..data/tls.crt, ..data -> a timestamped directory; a renewal writes a new
  // directory and renames a new ..data link over the old one, so the files' own names never change.
  const volume = path.join(ca.dir, 'secret-volume');
  await mkdir(volume);
  const version = async (name: string, pair: IssuedPair) => {
    await mkdir(path.join(volume, name));
    await writeFile(path.join(volume, name, 'tls.crt'), pair.cert);
    await writeFile(path.join(volume, name, 'tls.key'), pair.key);
    await symlink(name, path.join(volume, '..data_tmp'));
    await rename(path.join(volume, '..data_tmp'), path.join(volume, '..data'));
  };
  await version('..2026_12_01_v1', first);
  await symlink('..data/tls.crt', path.join(volume, 'tls.crt'));
  await symlink('..data/tls.key', path.join(volume, 'tls.key'));
  const g = await startGateway(
    loopbackConfig(TOKEN, tlsEnv({ TAILGATE_TLS_CERT: path.join(volume, 'tls.crt'), TAILGATE_TLS_KEY: path.join(volume, 'tls.key'), TAILGATE_API_TLS: 'false' })),
    log,
  );
  try {
    assert.equal(await servedSerial(g.ports.https!), '1001');
    const renewed = await ca.issue('tailgate-k8s', '4c4c');
    await version('..2026_12_02_v2', renewed);
    await waitFor('the renewed certificate served', 10_000, async () => (await servedSerial(g.ports.https!)) === '4C4C');
    assert.equal(await servedSerial(g.ports.socksTls!), '4C4C');
  } finally {
    await g.close();
  }
});

/** Resolves with how the connection ended once the gateway closes a connection that never starts TLS. */
function silentClient(port: number, finAfterMs?: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const timer = setTimeout(() => {
      s.destroy();
      resolve('still open after 15 s');
    }, 15_000);
    if (finAfterMs !== undefined) s.once('connect', () => setTimeout(() => s.end(), finAfterMs));
    s.on('error', () => {});
    s.resume();
    s.once('close', () => {
      clearTimeout(timer);
      resolve('closed');
    });
  });
}

test('plain listeners off: their ports refuse, the TLS listeners serve, /readyz is ready; stalled TLS handshakes are closed', async () => {
  const httpPort = await closedPort();
  const socksPort = await closedPort();
  const env = { TAILGATE_PLAIN_LISTENERS: 'false', TAILGATE_HTTP_PORT: String(httpPort), TAILGATE_SOCKS_PORT: String(socksPort), TAILGATE_HANDSHAKE_TIMEOUT_MS: '1000' };
  const g = await startGateway(loopbackConfig(TOKEN, tlsEnv(env)), log);
  try {
    assert.equal(g.ports.http, 0);
    assert.equal(g.ports.socks, 0);
    for (const port of [httpPort, socksPort]) {
      await assert.rejects(
        new Promise<void>((resolve, reject) => {
          const s = net.connect(port, '127.0.0.1', () => {
            s.destroy();
            resolve();
          });
          s.once('error', reject);
        }),
        (err: NodeJS.ErrnoException) => err.code === 'ECONNREFUSED',
      );
    }
    const k = await newKey('plain-off');
    const r = await curl(['--proxy', `https://${k.key}:${k.key}@localhost:${g.ports.https}`, '--proxy-cacert', ca.caFile, `http://127.0.0.1:${web.port}/hello`]);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout, 'hello from http 127.0.0.1\n');
    const ready = await apiCall(g.ports.api, 'GET', '/readyz');
    assert.equal(ready.status, 200, JSON.stringify(ready.json));
    // The dashboard's ready-made client commands name only the listeners that are on.
    const stats = await apiCall(g.ports.api, 'GET', '/stats');
    assert.deepEqual(stats.json.listeners, { https: g.ports.https, socks5Tls: g.ports.socksTls });

    // A client that never starts its TLS handshake is closed by the handshake timeout; one that sends FIN instead
    // is closed at once (not left half-open until the timeout); nothing is left behind on either listener.
    const stalled = await Promise.all([silentClient(g.ports.https!), silentClient(g.ports.socksTls!), silentClient(g.ports.https!, 50), silentClient(g.ports.socksTls!, 50)]);
    assert.deepEqual(stalled, ['closed', 'closed', 'closed', 'closed']);
    // After the TLS handshake the proxy handshake has its own timeout, as on the plain listeners: a request head left
    // unfinished gets 408 from Node's header timeout (which runs because the HTTPS proxy is an https.Server), a SOCKS5
    // greeting left unfinished is closed.
    const head = await tlsConnect(g.ports.https!);
    const answer = new Promise<string>((resolve) => {
      let text = '';
      head.on('data', (c: Buffer) => (text += c.toString('latin1')));
      head.once('end', () => resolve(text));
    });
    head.write('CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n');
    const got = await Promise.race([answer, new Promise<string>((resolve) => setTimeout(() => resolve('no answer in 15 s'), 15_000).unref())]);
    assert.match(got, /^HTTP\/1\.1 408 /);
    assert.match(got, /X-Tailgate-Error: handshake-timeout/);
    head.destroy();
    const greeting = await tlsConnect(g.ports.socksTls!);
    greeting.write(Buffer.from([5, 1]));
    greeting.resume();
    const closed = await Promise.race([new Promise<string>((resolve) => greeting.once('end', () => resolve('closed'))), new Promise<string>((resolve) => setTimeout(() => resolve('open after 15 s'), 15_000).unref())]);
    assert.equal(closed, 'closed');
    greeting.destroy();

    const count = (server: net.Server) => new Promise<number>((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
    await waitFor('no connection left on the TLS listeners', 5_000, async () => (await count(g.tls!.httpsProxy)) + (await count(g.tls!.socksProxy)) === 0, 50);
  } finally {
    await g.close();
  }
});
