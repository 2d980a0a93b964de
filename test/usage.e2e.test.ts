// Usage accounting through the gateway as app.ts assembles it on real PostgreSQL, a stand-in HTTP device on 127.0.0.2,
// curl and raw CONNECT tunnels as clients: known bytes through each listener land in usage_hourly exactly after a
// flush, a long tunnel is counted while it runs, two gateways on one database add up, the last batch is written at
// shutdown, the API answers match /openapi.json, and the embedded store does the same.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { startGateway, type Gateway } from '../src/app.js';
import { waitFor } from '../testbed/wait.js';
import { callApi, DocumentChecker, assertError, type Api } from './helpers/api.js';
import { adminCall, openTunnel } from './helpers/connect-tunnel.js';
import { loopbackConfig } from './helpers/gateway-config.js';
import { createTempDir, type TestDatabase } from './helpers/db.js';
import { closedPort, type Device } from './helpers/devices.js';
import { GatewayScene } from './helpers/gateway-scene.js';
import { payload, type EchoTarget, type Listening } from './helpers/targets.js';
import { curlMoved, echoThrough, usageOf, type Moved } from './helpers/usage.js';

const TOKEN = 'test-admin-token-usage-0123456789';
const log = pino({ level: 'silent' });

let scene: GatewayScene;
let db: TestDatabase;
let gw: Gateway;
let device: Device;
let web: Listening;
let echo: EchoTarget;
let deviceId = 0;
const checker = new DocumentChecker();

function gatewayConfig(extra: Record<string, string> = {}) {
  return loopbackConfig(TOKEN, { DATABASE_URL: db.url, TAILGATE_USAGE_FLUSH_MS: '100', ...extra });
}

const api = (method: string, path: string, g: Gateway = gw) => callApi({ base: `http://127.0.0.1:${g.ports.api}` } as Api, checker, TOKEN, method, path);

/** A new key on the device, so each test reads only its own usage. */
async function newKey(name: string, g: Gateway = gw): Promise<{ id: number; key: string }> {
  const r = await adminCall(g.ports.api, TOKEN, 'POST', '/keys', { name, device: deviceId });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  return { id: r.json.id, key: r.json.key };
}

const viaHttp = (key: string, g: Gateway = gw) => ['-x', `http://${key}:${key}@127.0.0.1:${g.ports.http}`];
const viaSocks = (key: string, g: Gateway = gw) => ['--socks5-hostname', `${key}:${key}@127.0.0.1:${g.ports.socks}`];

function sum(moves: Moved[]): Moved {
  return moves.reduce((a, m) => ({ up: a.up + m.up, down: a.down + m.down }), { up: 0, down: 0 });
}

/** Everything closed has reported, and one more flush has written it. */
async function settle(g: Gateway = gw): Promise<void> {
  await waitFor('every tunnel closed', 5_000, () => g.usage.openMeters === 0, 10);
  await g.usage.flush();
}

before(async () => {
  scene = await GatewayScene.open({ label: 'usage', deviceHost: '127.0.0.2' });
  ({ db, device, web, echo } = scene);
  gw = await scene.startGateway(gatewayConfig());
  deviceId = await scene.registerDevice(gw, 'usage-device-key-0001', 'usage-dev');
  const document = await api('GET', '/openapi.json');
  assert.equal(document.status, 200);
  checker.load(document.json);
});

after(() => scene?.close());

test('known bytes through CONNECT, SOCKS5 and the forwarder are in usage_hourly exactly after a flush', async () => {
  const connect = await newKey('connect');
  const tunnelled = sum([await echoThrough(gw.ports.http, connect.key, echo.port, 100_000), await echoThrough(gw.ports.http, connect.key, echo.port, 1)]);
  await settle();
  assert.deepEqual(await usageOf(db.sql, 'key_id', connect.id), { up: tunnelled.up, down: tunnelled.down, tunnels: 2, refused: 0, failures: 0 });

  const socks = await newKey('socks');
  const socksMoved = await curlMoved(viaSocks(socks.key), `http://127.0.0.1:${web.port}/big?n=300000`);
  assert.equal(socksMoved.code, 200);
  await settle();
  assert.deepEqual(await usageOf(db.sql, 'key_id', socks.id), { up: socksMoved.up, down: socksMoved.down, tunnels: 1, refused: 0, failures: 0 });

  // Forwarded requests count what crossed the client connection, heads included. curl's own sizes leave out chunked
  // framing and count a small body twice (sent with the head), so the answers here have a length and the body is large.
  const forwarded = await newKey('forwarded');
  const body = payload(70_000);
  const moves = [
    await curlMoved(viaHttp(forwarded.key), `http://127.0.0.1:${web.port}/big?n=1`),
    await curlMoved(viaHttp(forwarded.key), `http://127.0.0.1:${web.port}/big?n=123456`),
    await curlMoved(viaHttp(forwarded.key), `http://127.0.0.1:${web.port}/echo`, [], body),
  ];
  assert.deepEqual(moves.map((m) => m.code), [200, 200, 200]);
  assert.ok(moves[2]!.up > body.length);
  await settle();
  const expected = sum(moves);
  assert.deepEqual(await usageOf(db.sql, 'key_id', forwarded.id), { up: expected.up, down: expected.down, tunnels: 3, refused: 0, failures: 0 });

  // The device's buckets hold all three keys' bytes.
  const all = sum([tunnelled, socksMoved, expected]);
  const dev = await usageOf(db.sql, 'device_id', deviceId);
  assert.ok(dev.up >= all.up && dev.down >= all.down);
});

test('a CONNECT tunnel through curl -p counts the tunnel only, not the CONNECT exchange', async () => {
  const k = await newKey('curl-connect');
  const inner = await curlMoved(viaHttp(k.key), `http://127.0.0.1:${web.port}/big?n=5000`, ['-p']);
  assert.equal(inner.code, 200);
  await settle();
  const row = await usageOf(db.sql, 'key_id', k.id);
  // curl counts the CONNECT's own request and answer heads in its sizes; the tunnel carried the rest.
  const connectHead = `CONNECT 127.0.0.1:${web.port} HTTP/1.1\r\n`.length;
  assert.ok(row.up < inner.up && row.up > inner.up - 400 - connectHead, `up ${row.up} vs curl ${inner.up}`);
  assert.equal(inner.down - row.down, 'HTTP/1.1 200 Connection established\r\n\r\n'.length, `down ${row.down} vs curl ${inner.down}`);
});

test('a long tunnel is counted while it runs, not only when it closes', async () => {
  const k = await newKey('long');
  const s = await openTunnel(gw.ports.http, k.key, echo.port);
  try {
    let got = 0;
    s.on('data', (c: Buffer) => (got += c.length));
    s.write(payload(65_536));
    await waitFor('the echo', 5_000, () => got === 65_536, 10);
    await waitFor('the open tunnel in usage_hourly', 5_000, async () => {
      const u = await usageOf(db.sql, 'key_id', k.id);
      return u.up === 65_536 && u.down === 65_536 && u.tunnels === 1;
    });
    s.write(payload(1_000));
    await waitFor('the echo', 5_000, () => got === 66_536, 10);
  } finally {
    s.end();
  }
  await settle();
  assert.deepEqual(await usageOf(db.sql, 'key_id', k.id), { up: 66_536, down: 66_536, tunnels: 1, refused: 0, failures: 0 });
});

test('a failed dial is counted against the key and the device', async () => {
  const k = await newKey('failing');
  const closed = await closedPort();
  const r = await curlMoved(viaHttp(k.key), `http://127.0.0.1:${closed}/`).catch(() => undefined);
  assert.ok(r === undefined || r.code >= 500);
  await settle();
  const u = await usageOf(db.sql, 'key_id', k.id);
  assert.equal(u.tunnels, 1, 'the forwarded request was opened');
  assert.equal(u.up > 0 && u.down > 0, true, 'its request and error answer crossed the client connection');
});

test('two gateways on one PostgreSQL add up exactly', async () => {
  const second = await startGateway(gatewayConfig(), log);
  try {
    const k = await newKey('shared');
    const moves = await Promise.all(
      Array.from({ length: 16 }, (_, i) => echoThrough((i % 2 === 0 ? gw : second).ports.http, k.key, echo.port, 10_000 + i * 997)),
    );
    await Promise.all([settle(), settle(second)]);
    const expected = sum(moves);
    assert.deepEqual(await usageOf(db.sql, 'key_id', k.id), { up: expected.up, down: expected.down, tunnels: 16, refused: 0, failures: 0 });
  } finally {
    await second.close();
  }
});

test('shutdown writes the last batch, open tunnels included', async () => {
  const g = await startGateway(gatewayConfig({ TAILGATE_USAGE_FLUSH_MS: '3600000', TAILGATE_SHUTDOWN_GRACE_MS: '0' }), log);
  const k = await newKey('shutdown', g);
  const done = await echoThrough(g.ports.http, k.key, echo.port, 20_000);
  const s = await openTunnel(g.ports.http, k.key, echo.port);
  let got = 0;
  s.on('data', (c: Buffer) => (got += c.length));
  s.on('error', () => {});
  s.write(payload(5_000));
  await waitFor('the echo', 5_000, () => got === 5_000, 10);
  assert.deepEqual(await usageOf(db.sql, 'key_id', k.id), { up: 0, down: 0, tunnels: 0, refused: 0, failures: 0 }, 'nothing written before shutdown');
  await g.close();
  assert.deepEqual(await usageOf(db.sql, 'key_id', k.id), { up: done.up + 5_000, down: done.down + 5_000, tunnels: 2, refused: 0, failures: 0 });
});

test("the quota ledger: the database's total for the period plus this gateway's unwritten bytes, other gateways' included", async () => {
  const g = await startGateway(gatewayConfig({ TAILGATE_USAGE_FLUSH_MS: '3600000' }), log);
  try {
    const k = await newKey('quota', g);
    const now = new Date();
    const today = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
    g.usage.track(k.id, today);
    await g.usage.flush();
    assert.equal(g.usage.usedSince(k.id, today), 0);
    const mine = await echoThrough(g.ports.http, k.key, echo.port, 10_000);
    await waitFor('every tunnel closed', 5_000, () => g.usage.openMeters === 0, 10);
    assert.equal(g.usage.usedSince(k.id, today), mine.up + mine.down, 'unwritten bytes count at once');
    assert.deepEqual(await usageOf(db.sql, 'key_id', k.id), { up: 0, down: 0, tunnels: 0, refused: 0, failures: 0 });
    await g.usage.flush();
    assert.equal(g.usage.usedSince(k.id, today), mine.up + mine.down, 'written, the same');
    const theirs = await echoThrough(gw.ports.http, k.key, echo.port, 5_000);
    await settle();
    await g.usage.flush();
    assert.equal(g.usage.usedSince(k.id, today), mine.up + mine.down + theirs.up + theirs.down, "the other gateway's bytes after a refresh");
    assert.equal(g.usage.usedSince(k.id, today + 86_400_000), 0, 'a period that has not begun');
  } finally {
    await g.close();
  }
});

test('the usage API: series per key and device, totals by key and device, errors naming the field', async () => {
  const k = await newKey('api');
  const moved = await echoThrough(gw.ports.http, k.key, echo.port, 12_345);
  await settle();
  const hour = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000).toISOString();

  const series = await api('GET', `/keys/${k.id}/usage`);
  assert.equal(series.status, 200, series.text);
  assert.equal(series.json.step, 'hour');
  assert.equal(series.json.series.length, 25, 'the last 24 hours and the one running');
  assert.deepEqual(series.json.total, { bytesUp: moved.up, bytesDown: moved.down, tunnels: 1, refused: 0, failures: 0 });
  assert.deepEqual(series.json.series.at(-1), { t: hour, bytesUp: moved.up, bytesDown: moved.down, tunnels: 1, refused: 0, failures: 0 });

  const daily = await api('GET', `/keys/${k.id}/usage?step=day&from=${encodeURIComponent(new Date(Date.now() - 3 * 86_400_000).toISOString())}`);
  assert.equal(daily.status, 200, daily.text);
  assert.equal(daily.json.series.length, 4);
  assert.deepEqual(daily.json.total, series.json.total);
  assert.ok(daily.json.series.every((p: { t: string }) => p.t.endsWith('T00:00:00.000Z')));

  const dev = await api('GET', `/devices/${deviceId}/usage?step=hour`);
  assert.equal(dev.status, 200, dev.text);
  const devRow = await usageOf(db.sql, 'device_id', deviceId);
  assert.equal(dev.json.total.bytesUp, devRow.up);

  const byKey = await api('GET', '/usage?by=key');
  assert.equal(byKey.status, 200, byKey.text);
  const bytes = (r: { bytesUp: number; bytesDown: number }) => r.bytesUp + r.bytesDown;
  for (let i = 1; i < byKey.json.usage.length; i++) assert.ok(bytes(byKey.json.usage[i - 1]) >= bytes(byKey.json.usage[i]), 'most bytes first');
  assert.deepEqual(byKey.json.usage.find((r: { id: number }) => r.id === k.id), { id: k.id, name: 'api', bytesUp: moved.up, bytesDown: moved.down, tunnels: 1, refused: 0, failures: 0 });
  const byDevice = await api('GET', '/usage?by=device');
  assert.equal(byDevice.status, 200, byDevice.text);
  assert.equal(byDevice.json.usage[0].name, 'usage-dev');

  // A deleted key's usage stays.
  assert.equal((await adminCall(gw.ports.api, TOKEN, 'DELETE', `/keys/${k.id}`)).status, 200);
  const gone = await api('GET', `/keys/${k.id}/usage`);
  assert.deepEqual(gone.json.total, series.json.total);
  assert.equal((await api('GET', '/usage')).json.usage.find((r: { id: number }) => r.id === k.id).name, null);

  assertError(await api('GET', `/keys/${k.id}/usage?step=week`), 400, 'invalid_request', /^querystring\.step must be one of: hour, day$/);
  assertError(await api('GET', `/keys/${k.id}/usage?from=yesterday`), 400, 'invalid_request', /^querystring\.from /);
  assertError(await api('GET', `/devices/${deviceId}/usage?from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z`), 400, 'invalid_request', /querystring\.from must be before querystring\.to/);
  assertError(await api('GET', `/keys/${k.id}/usage?from=2000-01-01T00:00:00Z`), 400, 'invalid_request', /^querystring\.from: the range holds \d+ steps/);
  assertError(await api('GET', '/usage?by=pool'), 400, 'invalid_request', /^querystring\.by must be one of: key, device$/);
  assertError(await api('GET', '/usage?color=red'), 400, 'invalid_request', /^querystring\.color is not a known field$/);
  const anonymous = await callApi({ base: `http://127.0.0.1:${gw.ports.api}` } as Api, checker, TOKEN, 'GET', '/usage', { token: null });
  assert.equal(anonymous.status, 401);
  checker.assertCovered((p) => p.endsWith('/usage'));
});

test('GET /usage/series: bytes per step of every key or device in one answer, deleted ones kept, errors naming the field', async () => {
  const k = await newKey('sparkline');
  const moved = await echoThrough(gw.ports.http, k.key, echo.port, 7_777);
  await settle();

  const byKey = await api('GET', '/usage/series?by=key');
  assert.equal(byKey.status, 200, byKey.text);
  assert.equal(byKey.json.step, 'hour');
  const mine = byKey.json.series.find((s: { id: number }) => s.id === k.id);
  assert.equal(mine.name, 'sparkline');
  assert.equal(mine.bytes.length, 25, 'the last 24 hours and the one running');
  assert.equal(mine.bytes.at(-1), moved.up + moved.down);
  assert.ok(mine.bytes.slice(0, -1).every((b: number) => b === 0));
  // Every key that exists has a series, with traffic or not.
  const keyIds = (await adminCall(gw.ports.api, TOKEN, 'GET', '/keys')).json.map((x: { id: number }) => x.id);
  const ids = byKey.json.series.map((s: { id: number }) => s.id);
  for (const id of keyIds) assert.ok(ids.includes(id), `key ${id} has no series`);
  assert.deepEqual(ids, [...ids].sort((a: number, b: number) => a - b));

  // By device (the default): the device's series adds up to its rows over the same range.
  const byDevice = await api('GET', '/usage/series?step=day');
  assert.equal(byDevice.status, 200, byDevice.text);
  assert.equal(byDevice.json.by, 'device');
  assert.equal(byDevice.json.series.length >= 1, true);
  const dev = byDevice.json.series.find((s: { id: number }) => s.id === deviceId);
  const row = await usageOf(db.sql, 'device_id', deviceId);
  assert.equal(dev.bytes.reduce((a: number, b: number) => a + b, 0), row.up + row.down);
  assert.ok(byDevice.json.series.every((s: { id: number }) => s.id !== 0), 'no device 0');

  assert.equal((await adminCall(gw.ports.api, TOKEN, 'DELETE', `/keys/${k.id}`)).status, 200);
  const gone = (await api('GET', '/usage/series?by=key')).json.series.find((s: { id: number }) => s.id === k.id);
  assert.deepEqual(gone, { id: k.id, name: null, bytes: mine.bytes });

  assertError(await api('GET', '/usage/series?step=week'), 400, 'invalid_request', /^querystring\.step must be one of: hour, day$/);
  assertError(await api('GET', '/usage/series?by=pool'), 400, 'invalid_request', /^querystring\.by must be one of: key, device$/);
  assertError(await api('GET', '/usage/series?from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z'), 400, 'invalid_request', /querystring\.from must be before querystring\.to/);
  assertError(await api('GET', '/usage/series?from=2020-01-01T00:00:00Z'), 400, 'invalid_request', /^querystring\.from: the range holds \d+ steps, more than 1000/);
  const anonymous = await callApi({ base: `http://127.0.0.1:${gw.ports.api}` } as Api, checker, TOKEN, 'GET', '/usage/series', { token: null });
  assert.equal(anonymous.status, 401);
  checker.assertCovered((p) => p === '/usage/series');
});

test('metrics: bytes per device by name; per key only when TAILGATE_METRICS_KEY_LABELS=true, by name', async () => {
  const metricsOf = async (g: Gateway) => {
    const res = await fetch(`http://127.0.0.1:${g.ports.api}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` }, signal: AbortSignal.timeout(5_000) });
    return res.text();
  };
  const value = (text: string, series: string) => Number(new RegExp(`^${series.replace(/[{}"]/g, '\\$&')} (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);
  const labelled = await startGateway(gatewayConfig({ TAILGATE_METRICS_KEY_LABELS: 'true' }), log);
  try {
    const k = await newKey('metered', labelled);
    const before = value(await metricsOf(gw), 'tailgate_device_bytes_total{device="usage-dev",direction="up"}');
    const moved = await echoThrough(gw.ports.http, k.key, echo.port, 4_321);
    await waitFor('every tunnel closed', 5_000, () => gw.usage.openMeters === 0, 10);
    const text = await metricsOf(gw);
    assert.equal(value(text, 'tailgate_device_bytes_total{device="usage-dev",direction="up"}') - (Number.isNaN(before) ? 0 : before), moved.up);
    assert.doesNotMatch(text, /tailgate_key_bytes_total/);

    const other = await echoThrough(labelled.ports.http, k.key, echo.port, 777);
    await settle(labelled);
    const labelledText = await metricsOf(labelled);
    assert.equal(value(labelledText, 'tailgate_key_bytes_total{key="metered",direction="up"}'), other.up);
    assert.equal(value(labelledText, 'tailgate_key_bytes_total{key="metered",direction="down"}'), other.down);
    assert.doesNotMatch(labelledText, new RegExp(k.key));
  } finally {
    await labelled.close();
  }
});

test('the embedded store accounts the same', async () => {
  const dir = await createTempDir('tailgate-usage');
  const g = await startGateway(
    loopbackConfig(TOKEN, { TAILGATE_DATA_DIR: dir.dir, TAILGATE_USAGE_FLUSH_MS: '100' }),
    log,
  );
  try {
    const r = await adminCall(g.ports.api, TOKEN, 'POST', '/register', { key: 'usage-embedded-key-0001', ip: device.host, port: device.port, name: 'embedded-dev' });
    assert.equal(r.status, 201, JSON.stringify(r.json));
    const keyId = r.json.node.id;
    const moves = [await echoThrough(g.ports.http, 'usage-embedded-key-0001', echo.port, 33_333)];
    moves.push(await curlMoved(viaSocks('usage-embedded-key-0001', g), `http://127.0.0.1:${web.port}/big?n=1000`));
    moves.push(await curlMoved(viaHttp('usage-embedded-key-0001', g), `http://127.0.0.1:${web.port}/big?n=2000`));
    await settle(g);
    const expected = sum(moves);
    const series = await api('GET', `/keys/${keyId}/usage?step=day`, g);
    assert.equal(series.status, 200, series.text);
    assert.deepEqual(series.json.total, { bytesUp: expected.up, bytesDown: expected.down, tunnels: 3, refused: 0, failures: 0 });
    const totals = await api('GET', '/usage?by=device', g);
    assert.equal(totals.json.usage[0].name, 'embedded-dev');
    assert.equal(totals.json.usage[0].bytesDown, expected.down);
  } finally {
    await g.close();
    await dir.remove();
  }
});
