// Keys that target a pool, through the gateway as app.ts assembles it on real PostgreSQL: three stand-in devices on
// their own loopback addresses (127.0.0.2-4, the allow-list widened to 127.0.0.0/8), the pool and its key made over
// the API, curl and raw CONNECT tunnels as clients. Proves the pipeline's "choose and connect" step: the least
// loaded device per tunnel, failover to the next device within the connect timeout after a device-level failure,
// the breaker keeping a dead device out, `no_device` once none is left, on both listeners; device keys untouched.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { startGateway, type Gateway } from '../src/app.js';
import { curl } from './helpers/curl.js';
import { loopbackConfig } from './helpers/gateway-config.js';
import { waitFor } from '../testbed/wait.js';
import { adminCall, openTunnel } from './helpers/connect-tunnel.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { startHttpDevice, type Device } from './helpers/devices.js';
import { startEchoTarget, startHttpTarget, type EchoTarget, type Listening } from './helpers/targets.js';

const TOKEN = 'test-admin-token-0123456789';

let db: TestDatabase;
let gw: Gateway;
let devices: Device[];
let web: Listening;
let echo: EchoTarget;
let poolKey = '';
const deviceKeys = ['pool-device-key-0001', 'pool-device-key-0002', 'pool-device-key-0003'];

const api = (method: string, path: string, body?: unknown) => adminCall(gw.ports.api, TOKEN, method, path, body);

const viaHttp = (key: string, url: string, extra: string[] = []) => curl(['-x', `http://${key}:${key}@127.0.0.1:${gw.ports.http}`, ...extra, url]);
const viaSocks = (key: string, url: string) => curl(['--socks5-hostname', `${key}:${key}@127.0.0.1:${gw.ports.socks}`, url]);

/** CONNECTs each device has seen so far. */
const connects = () => devices.map((d) => d.seen.filter((line) => line.startsWith('CONNECT')).length);

before(async () => {
  db = await createTestDatabase('pools');
  devices = await Promise.all(['127.0.0.2', '127.0.0.3', '127.0.0.4'].map((ip) => startHttpDevice(ip)));
  web = await startHttpTarget();
  echo = await startEchoTarget();
  const config = loopbackConfig(TOKEN, { DATABASE_URL: db.url, TAILGATE_CONNECT_TIMEOUT_MS: '3000' });
  gw = await startGateway(config, pino({ level: 'silent' }));
  const ids: number[] = [];
  for (const [i, d] of devices.entries()) {
    const r = await api('POST', '/register', { key: deviceKeys[i], ip: d.host, port: d.port, name: `device-${i + 1}` });
    assert.equal(r.status, 201, JSON.stringify(r.json));
    ids.push(r.json.node.id);
  }
  const pool = await api('POST', '/pools', { name: 'all-three', devices: ids });
  assert.equal(pool.status, 201, JSON.stringify(pool.json));
  const key = await api('POST', '/keys', { name: 'customer', pool: pool.json.id });
  assert.equal(key.status, 201, JSON.stringify(key.json));
  poolKey = key.json.key;
});

after(async () => {
  await gw?.close();
  for (const d of devices ?? []) await d.close().catch(() => undefined);
  await web?.close();
  await echo?.close();
  await db?.drop();
});

test('a pool key goes through both listeners and through the forwarder', async () => {
  assert.equal((await viaHttp(poolKey, `http://127.0.0.1:${web.port}/`)).stdout, 'hello from http 127.0.0.1\n');
  assert.equal((await viaHttp(poolKey, `http://127.0.0.1:${web.port}/`, ['-p'])).stdout, 'hello from http 127.0.0.1\n');
  assert.equal((await viaSocks(poolKey, `http://127.0.0.1:${web.port}/`)).stdout, 'hello from http 127.0.0.1\n');
});

test('tunnels held open spread over the devices, the least loaded first', async () => {
  const before = connects();
  const held: net.Socket[] = [];
  try {
    for (let i = 0; i < 6; i++) held.push(await openTunnel(gw.ports.http, poolKey, echo.port));
    const after = connects().map((n, i) => n - before[i]!);
    assert.deepEqual(after, [2, 2, 2], `each device carries two of six open tunnels: ${after}`);
  } finally {
    for (const s of held) s.destroy();
  }
});

test('a device key still egresses through its own device only', async () => {
  const before = connects();
  for (let i = 0; i < 3; i++) assert.equal((await viaHttp(deviceKeys[1]!, `http://127.0.0.1:${web.port}/`, ['-p'])).connectCode, 200);
  assert.deepEqual(connects().map((n, i) => n - before[i]!), [0, 3, 0]);
});

test("a failure the device reports about the destination is answered as it is, never failed over", async () => {
  const closed = net.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as net.AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  const before = await failovers();
  const r = await viaHttp(poolKey, `http://127.0.0.1:${port}/`, ['-p']);
  assert.equal(r.connectCode, 502, r.stderr);
  assert.notEqual(r.headers['x-tailgate-error'], 'no_device');
  assert.equal(await failovers(), before, 'the destination refusing is no reason to try another device');
});

test("a key's life through curl: created, rotated, disabled, expired, deleted, each effective on the next connection", async () => {
  const pools = await api('GET', '/pools');
  const created = await api('POST', '/keys', { name: 'lifecycle', pool: pools.json[0].id });
  assert.equal(created.status, 201, JSON.stringify(created.json));
  const id = created.json.id;
  const ok = async (key: string) => (await viaHttp(key, `http://127.0.0.1:${web.port}/`, ['-p'])).connectCode;
  const refusedOverSocks = async (key: string) => (await viaSocks(key, `http://127.0.0.1:${web.port}/`)).exitCode === 97;
  let key: string = created.json.key;
  assert.equal(await ok(key), 200, 'usable at once');

  const held = await openTunnel(gw.ports.http, key, echo.port);
  const rotated = await api('POST', `/keys/${id}/rotate`);
  assert.equal(rotated.status, 200);
  assert.equal(await ok(key), 407, 'the old secret stops at once');
  assert.ok(await refusedOverSocks(key));
  assert.equal(held.destroyed, false, 'its open tunnel stays');
  key = rotated.json.key;
  assert.equal(await ok(key), 200, 'the new secret works');

  const heldClosed = new Promise<void>((r) => held.once('close', () => r()));
  const tunnel = await openTunnel(gw.ports.http, key, echo.port);
  const tunnelClosed = new Promise<void>((r) => tunnel.once('close', () => r()));
  assert.equal((await api('PATCH', `/keys/${id}`, { disabled: true })).status, 200);
  await tunnelClosed;
  assert.equal(await ok(key), 407, 'disabled');
  assert.equal((await api('PATCH', `/keys/${id}`, { disabled: false })).status, 200);
  assert.equal(await ok(key), 200, 'enabled again');

  const again = await openTunnel(gw.ports.http, key, echo.port);
  const againClosed = new Promise<void>((r) => again.once('close', () => r()));
  assert.equal((await api('PATCH', `/keys/${id}`, { expiresAt: '2000-01-01T00:00:00Z' })).status, 200);
  await againClosed;
  assert.equal(await ok(key), 407, 'expired');
  assert.equal((await api('PATCH', `/keys/${id}`, { expiresAt: null })).status, 200);
  assert.equal(await ok(key), 200, 'no expiry again');

  const last = await openTunnel(gw.ports.http, key, echo.port);
  const lastClosed = new Promise<void>((r) => last.once('close', () => r()));
  const deleted = await api('DELETE', `/keys/${id}`);
  assert.equal(deleted.status, 200);
  assert.equal(deleted.json.tunnelsClosed, 1);
  await lastClosed;
  assert.equal(await ok(key), 407, 'deleted');
  held.destroy();
  await heldClosed;
});

test('a dead device is failed over within the connect timeout, then kept out by its breaker', async () => {
  // Ties between equally loaded devices are broken at random, so the dead device is made the least loaded one: one
  // tunnel held open on each of the other two. Every choice then falls on it until its breaker opens.
  const held: net.Socket[] = [];
  try {
    // All three are held while they are opened, so each lands on a device of its own (least loaded first).
    let onFirst: net.Socket | undefined;
    for (let i = 0; i < 3; i++) {
      const before = connects();
      const s = await openTunnel(gw.ports.http, poolKey, echo.port);
      if (connects()[0]! > before[0]!) onFirst = s;
      else held.push(s);
    }
    assert.ok(onFirst !== undefined && held.length === 2, 'one of three tunnels landed on each device');
    onFirst.destroy();
    await waitFor('the tunnel on the first device to close', 5_000, () => gw.tunnels.size === 2, 20);
    await devices[0]!.close();
    const failoversBefore = await failovers();
    const started = Date.now();
    for (let i = 0; i < 9; i++) {
      // The first two go through the forwarder, which fails over the same way as long as the request has no body.
      const forwarded = i < 2;
      const r = await viaHttp(poolKey, `http://127.0.0.1:${web.port}/`, forwarded ? [] : ['-p']);
      assert.equal(forwarded ? r.httpCode : r.connectCode, 200, `connection ${i + 1}: ${r.headers['x-tailgate-error'] ?? r.stderr}`);
    }
    assert.ok(Date.now() - started < 9 * 1_000, 'no connection waited for a timeout');
    assert.equal((await failovers()) - failoversBefore, 3, 'failed over until the breaker opened after 3 device-level failures, then never');
  } finally {
    for (const s of held) s.destroy();
  }
});

test('with every device gone, a pool key gets 502 no_device (SOCKS5 0x04) once the breakers are open', async () => {
  await devices[1]!.close();
  await devices[2]!.close();
  const answers: string[] = [];
  for (let i = 0; i < 6; i++) answers.push((await viaHttp(poolKey, `http://127.0.0.1:${web.port}/`, ['-p'])).headers['x-tailgate-error'] ?? '');
  assert.ok(answers.every((a) => a === 'refused' || a === 'no_device'), answers.join(','));
  assert.equal(answers.at(-1), 'no_device', `the last answers: ${answers.join(',')}`);
  const socks = await viaSocks(poolKey, `http://127.0.0.1:${web.port}/`);
  assert.equal(socks.exitCode, 97, socks.stderr);
  assert.match(socks.stderr, /\(4\)|unreachable/i, socks.stderr);
});

async function failovers(): Promise<number> {
  const text = await gw.metrics.registry.getSingleMetricAsString('tailgate_failovers_total');
  const m = /tailgate_failovers_total (\d+)/.exec(text);
  return m === null ? 0 : Number(m[1]);
}
