// Connection parameters in the proxy user name (KEY-session-…-sesstime-…-country-…-device-…-strict-1), through the
// gateway as app.ts assembles it on real PostgreSQL, with curl as the client on both listeners and the forwarder. Three
// stand-in devices on their own loopback addresses (127.0.0.5-7, the allow-list widened to 127.0.0.0/8), labelled
// de, de, fr, in one pool. Proves: a session keeps its device; sessions spread; the country and device filters, on pool
// and device keys; refused parameters answer like bad credentials, naming the parameter; a second gateway on the same
// database gives every session the same device; the per-device metrics; and, last since it kills a device, a soft
// session moving to another device while a strict one is refused.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { startGateway, type Gateway } from '../src/app.js';
import { adminCall, openTunnel } from './helpers/connect-tunnel.js';
import { curl, type CurlResult } from './helpers/curl.js';
import { loopbackConfig } from './helpers/gateway-config.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { startHttpDevice, type Device } from './helpers/devices.js';
import { startEchoTarget, startHttpTarget, type EchoTarget, type Listening } from './helpers/targets.js';

const TOKEN = 'test-admin-token-0123456789';
const NAMES = ['dev_a', 'dev_b', 'dev_c'];
const COUNTRIES = ['de', 'de', 'fr'];

let db: TestDatabase;
let gw: Gateway;
let devices: Device[];
let ids: number[] = [];
let web: Listening;
let echo: EchoTarget;
let poolKey = '';
const deviceKey = 'session-device-key-0001';

function gatewayConfig() {
  return loopbackConfig(TOKEN, { DATABASE_URL: db.url, TAILGATE_CONNECT_TIMEOUT_MS: '3000' });
}

const api = (method: string, path: string, body?: unknown) => adminCall(gw.ports.api, TOKEN, method, path, body);
const url = () => `http://127.0.0.1:${web.port}/`;
/** A CONNECT tunnel (curl -p) unless `forward`, then a plain forwarded request. */
const viaHttp = (user: string, key: string, forward = false, g: Gateway = gw) =>
  curl(['-x', `http://${user}:${key}@127.0.0.1:${g.ports.http}`, ...(forward ? [] : ['-p']), url()]);
const viaSocks = (user: string, key: string, g: Gateway = gw) => curl(['--socks5-hostname', `${user}:${key}@127.0.0.1:${g.ports.socks}`, url()]);

/** Requests each device has seen so far (CONNECTs and forwarded requests). */
const seen = () => devices.map((d) => d.seen.length);

/** Runs `request` and says which device carried it (by the one device whose log grew). */
async function deviceOf(request: () => Promise<CurlResult>): Promise<number> {
  const before = seen();
  const r = await request();
  assert.equal(r.exitCode, 0, `${r.headers['x-tailgate-error'] ?? ''} ${r.stderr}`);
  const grew = seen()
    .map((n, i) => n - before[i]!)
    .flatMap((n, i) => (n > 0 ? [i] : []));
  assert.equal(grew.length, 1, `exactly one device carried the request: ${grew}`);
  return grew[0]!;
}

before(async () => {
  db = await createTestDatabase('sessions');
  devices = await Promise.all(['127.0.0.5', '127.0.0.6', '127.0.0.7'].map((ip) => startHttpDevice(ip)));
  web = await startHttpTarget();
  echo = await startEchoTarget();
  gw = await startGateway(gatewayConfig(), pino({ level: 'silent' }));
  for (const [i, d] of devices.entries()) {
    const r = await api('POST', '/register', { key: i === 0 ? deviceKey : `session-device-key-000${i + 1}`, ip: d.host, port: d.port, name: NAMES[i] });
    assert.equal(r.status, 201, JSON.stringify(r.json));
    ids.push(r.json.node.id);
    const labelled = await api('PATCH', `/devices/${r.json.node.id}`, { labels: { country: COUNTRIES[i] } });
    assert.equal(labelled.status, 200, JSON.stringify(labelled.json));
  }
  const pool = await api('POST', '/pools', { name: 'three', devices: ids });
  assert.equal(pool.status, 201, JSON.stringify(pool.json));
  const key = await api('POST', '/keys', { name: 'sessions', pool: pool.json.id });
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

test('a session keeps its device on both listeners and the forwarder; different sessions spread', async () => {
  const user = `${poolKey}-session-keep_1-sesstime-30`;
  const first = await deviceOf(() => viaHttp(user, poolKey));
  for (let i = 0; i < 3; i++) assert.equal(await deviceOf(() => viaHttp(user, poolKey)), first, 'CONNECT');
  for (let i = 0; i < 3; i++) assert.equal(await deviceOf(() => viaSocks(user, poolKey)), first, 'SOCKS5');
  for (let i = 0; i < 3; i++) assert.equal(await deviceOf(() => viaHttp(user, poolKey, true)), first, 'forwarded');
  const used = new Set<number>();
  for (let i = 0; i < 12; i++) used.add(await deviceOf(() => viaHttp(`${poolKey}-session-spread${i}`, poolKey)));
  assert.ok(used.size >= 2, `12 sessions over 3 devices used ${used.size} device(s)`);
});

test('a session stays on its device while that device carries more tunnels than the others', async () => {
  const user = `${poolKey}-session-loaded`;
  const pinned = await deviceOf(() => viaHttp(user, poolKey));
  const held: net.Socket[] = [];
  try {
    for (let i = 0; i < 4; i++) held.push(await openTunnel(gw.ports.http, poolKey, echo.port, user));
    assert.equal(await deviceOf(() => viaHttp(user, poolKey)), pinned, 'load does not move a session');
    const metrics = await (await fetch(`http://127.0.0.1:${gw.ports.api}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
    assert.match(metrics, new RegExp(`tailgate_device_tunnels_open\\{device="${NAMES[pinned]}"\\} 4\\b`), 'the held tunnels, by device name');
    for (const name of NAMES) assert.match(metrics, new RegExp(`tailgate_device_up\\{device="${name}"\\} 1\\b`));
    assert.doesNotMatch(metrics, new RegExp(poolKey), 'never a key in a label');
    const view = await api('GET', `/devices/${ids[pinned]}`);
    assert.equal(view.json.openTunnels, 4);
    assert.equal(view.json.health.state, 'up');
  } finally {
    for (const s of held) s.destroy();
  }
});

test('country and device filters choose within the key target, on pool and device keys', async () => {
  for (let i = 0; i < 4; i++) assert.equal(await deviceOf(() => viaHttp(`${poolKey}-country-FR`, poolKey)), 2, 'fr is only the third device');
  for (let i = 0; i < 6; i++) assert.notEqual(await deviceOf(() => viaSocks(`${poolKey}-country-de`, poolKey)), 2, 'de never the third');
  assert.equal(await deviceOf(() => viaHttp(`${poolKey}-device-${NAMES[1]}`, poolKey, true)), 1, 'by name');
  assert.equal(await deviceOf(() => viaHttp(`${poolKey}-device-${ids[2]}`, poolKey)), 2, 'by id');
  assert.equal(await deviceOf(() => viaHttp(`${poolKey}-session-filtered-country-fr`, poolKey)), 2, 'a session within a filter');

  const none = await viaHttp(`${poolKey}-country-us`, poolKey);
  assert.equal(none.connectCode, 502);
  assert.equal(none.headers['x-tailgate-error'], 'no_device');
  const forwarded = await viaHttp(`${poolKey}-device-${ids[2]}-country-de`, poolKey, true);
  assert.equal(forwarded.httpCode, 502);
  assert.equal(forwarded.headers['x-tailgate-error'], 'no_device');
  const socks = await viaSocks(`${poolKey}-device-nosuchdevice`, poolKey);
  assert.equal(socks.exitCode, 97, socks.stderr);
  assert.match(socks.stderr, /\(4\)|unreachable/i);

  // A device key: its one device, when the filters let it through.
  assert.equal(await deviceOf(() => viaHttp(`${deviceKey}-country-de-session-any`, deviceKey)), 0);
  assert.equal(await deviceOf(() => viaHttp(`${deviceKey}-device-${NAMES[0]}`, deviceKey, true)), 0);
  const wrong = await viaHttp(`${deviceKey}-country-fr`, deviceKey);
  assert.deepEqual([wrong.connectCode, wrong.headers['x-tailgate-error']], [502, 'no_device']);
  const other = await viaSocks(`${deviceKey}-device-${ids[1]}`, deviceKey);
  assert.equal(other.exitCode, 97, other.stderr);
});

test('refused parameters answer 407 user-parameter, naming the parameter; SOCKS5 fails authentication', async () => {
  const cases: [string, RegExp][] = [
    ['-bogus-1', /unknown parameter name/],
    ['-session-a-sesstime-0', /'sesstime': must be whole minutes 1-1440/],
    ['-session-a-sesstime-1441', /'sesstime'/],
    ['-strict-1', /'strict': only valid with 'session'/],
    ['-session-has.dot', /'session': must be 1-64/],
    ['-country-deu', /'country': must be 2 letters/],
    ['-session-a-session-b', /'session': given more than once/],
    ['-session', /'session': no value/],
  ];
  for (const [suffix, detail] of cases) {
    const user = `${poolKey}${suffix}`;
    for (const forward of [false, true]) {
      const r = await viaHttp(user, poolKey, forward);
      assert.equal(forward ? r.httpCode : r.connectCode, 407, `${suffix} ${forward ? 'forwarded' : 'CONNECT'}`);
      assert.equal(r.headers['x-tailgate-error'], 'user-parameter', suffix);
      assert.equal(r.headers['proxy-authenticate'], 'Basic realm="tailgate"');
      assert.match(r.headers['proxy-status'] ?? '', /^tailgate; error=http_request_denied; details="/);
      assert.match(r.headers['proxy-status'] ?? '', detail);
      assert.ok(!r.rawHeaders.includes(poolKey), 'the answer never repeats the key');
    }
    const socks = await viaSocks(user, poolKey);
    assert.equal(socks.exitCode, 97, socks.stderr);
    assert.match(socks.stderr, /User was rejected/i, socks.stderr);
  }
  // A wrong key with parameters is a wrong key: 407 auth, the same answer as for no parameters.
  const wrong = await viaHttp(`not-the-key-session-a`, 'not-the-key');
  assert.deepEqual([wrong.connectCode, wrong.headers['x-tailgate-error']], [407, 'auth']);
});

test('a second gateway on the same PostgreSQL gives every session the same device', async () => {
  const second = await startGateway(gatewayConfig(), pino({ level: 'silent' }));
  try {
    for (let i = 0; i < 8; i++) {
      const user = `${poolKey}-session-shared${i}`;
      const here = await deviceOf(() => viaHttp(user, poolKey));
      const there = await deviceOf(() => viaSocks(user, poolKey, second));
      assert.equal(there, here, `session shared${i}`);
    }
  } finally {
    await second.close();
  }
});

test('when its device dies, a soft session moves within the connect timeout and stays; a strict one is refused', async () => {
  // Two sessions pinned to the same device: the soft one is found first, then strict names are tried until one lands there.
  const soft = `${poolKey}-session-soft`;
  const victim = await deviceOf(() => viaHttp(soft, poolKey));
  let strict = '';
  for (let i = 0; i < 60 && strict === ''; i++) {
    const user = `${poolKey}-session-strict${i}-strict-1`;
    if ((await deviceOf(() => viaHttp(user, poolKey))) === victim) strict = user;
  }
  assert.notEqual(strict, '', 'a strict session pinned to the same device');
  await devices[victim]!.close();

  const failoversBefore = await failovers();
  const started = Date.now();
  const moved = await deviceOf(() => viaHttp(soft, poolKey));
  const elapsed = Date.now() - started;
  assert.notEqual(moved, victim);
  assert.ok(elapsed < gw.config.timeouts.connectMs, `moved in ${elapsed} ms, within the connect timeout`);
  assert.equal((await failovers()) - failoversBefore, 1, 'one failover');
  for (let i = 0; i < 3; i++) assert.equal(await deviceOf(() => viaSocks(soft, poolKey)), moved, 'the session stays where it moved');

  const refused = await viaHttp(strict, poolKey);
  assert.deepEqual([refused.connectCode, refused.headers['x-tailgate-error']], [502, 'session_device_down']);
  const refusedSocks = await viaSocks(strict, poolKey);
  assert.equal(refusedSocks.exitCode, 97, refusedSocks.stderr);
  assert.match(refusedSocks.stderr, /\(4\)|unreachable/i);
});

async function failovers(): Promise<number> {
  const text = await gw.metrics.registry.getSingleMetricAsString('tailgate_failovers_total');
  const m = /tailgate_failovers_total (\d+)/.exec(text);
  return m === null ? 0 : Number(m[1]);
}
