// Devices, pools and keys through the management API over real HTTP, in front of a real PostgreSQL store, the real
// key resolver (what the proxies ask on every connection) and real sockets in the tunnel registry. Every answer is
// checked against the schema GET /openapi.json declares for its status.
import { UsageRecorder } from '../src/tunnel/usage.js';
import { deviceOf } from './helpers/routes.js';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { hashKey, keyTag } from '../src/core/key.js';
import { RegistrarError } from '../src/headscale/types.js';
import { openStore } from '../src/store/index.js';
import type { DeviceRecord, NodeStore, RegistryStore } from '../src/store/types.js';
import { assertError, callApi, DocumentChecker, FixedTailnet, startApi, type Answer, type Api, type CallOptions } from './helpers/api.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { ScriptedRegistrar } from './helpers/registrar.js';
import { startTunnelSockets, type TunnelSockets } from './helpers/tunnel-sockets.js';

const ADMIN = 'admin-token-registry-0123456789';
const ENROLL = 'enroll-token-registry-0123456789';

/** Every log line, to check that no secret ever reaches one. */
const logLines: string[] = [];
const log = pino(
  { level: 'debug' },
  new Writable({
    write(chunk: Buffer, _enc, done) {
      logLines.push(chunk.toString());
      done();
    },
  }),
);

const checker = new DocumentChecker();
const call = (method: string, path: string, opts: CallOptions = {}): Promise<Answer> => callApi(api, checker, ADMIN, method, path, opts);

/** Every secret the API handed out or was given, to look for in later answers and in the log. */
const secrets: string[] = [];

let db: TestDatabase;
let store: NodeStore & RegistryStore;
let api: Api;
let sockets: TunnelSockets;
const registrar = new ScriptedRegistrar();
const tailnet = new FixedTailnet();

let ipCounter = 10;
async function device(extra: Partial<DeviceRecord> = {}): Promise<DeviceRecord> {
  const ip = `100.64.9.${++ipCounter}`;
  return store.createDevice({ ip, port: 8939, protocol: 'http', name: `dev-${ipCounter}`, ...extra });
}

/** POST /keys, asserting it was created; returns the answer's JSON (the view and the secret). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function createKey(body: Record<string, unknown>): Promise<any> {
  const a = await call('POST', '/keys', { body });
  assert.equal(a.status, 201, a.text);
  secrets.push(a.json.key);
  return a.json;
}

const keys = (o: object) => Object.keys(o).sort();
let quotaLedger: UsageRecorder;
const KEY_FIELDS = ['createdAt', 'disabled', 'expiresAt', 'id', 'keyPrefix', 'limits', 'name', 'target'];

before(async () => {
  db = await createTestDatabase('api_registry');
  store = await openStore({ database: db.target, dataDir: '/unused', log });
  // The ledger a gateway uses, not started: bytes recorded here count as this gateway's unwritten bytes.
  quotaLedger = new UsageRecorder({ store, log, flushMs: 3_600_000, maxCells: 1_000 });
  api = await startApi({ TAILGATE_ADMIN_TOKEN: ADMIN, TAILGATE_ENROLL_TOKEN: ENROLL }, store, log, { registrar, tailnet, quotaLedger });
  sockets = await startTunnelSockets(api.tunnels);
  const document = await call('GET', '/openapi.json');
  assert.equal(document.status, 200, document.text);
  checker.load(document.json);
});

after(async () => {
  await sockets?.close();
  await api?.app.close();
  await store?.close();
  await db?.drop();
  const all = logLines.join('');
  assert.ok(secrets.length > 0);
  for (const secret of [ADMIN, ENROLL, ...secrets]) assert.ok(!all.includes(secret), `a secret reached the log: ${secret.slice(0, 4)}...`);
});

describe('keys', () => {
  test('POST /keys generates a 32-character base62 secret, shown in that answer only', async () => {
    const d = await device();
    const created = await createKey({ name: 'customer-1', device: d.id });
    assert.match(created.key, /^[0-9A-Za-z]{32}$/);
    assert.deepEqual(keys(created), [...KEY_FIELDS, 'key'].sort());
    assert.deepEqual(created.target, { device: d.id });
    assert.equal(created.keyPrefix, keyTag(hashKey(created.key)));
    assert.equal(created.disabled, false);
    assert.equal(created.expiresAt, null);
    assert.equal(created.name, 'customer-1');
    // The key routes at once, through the real resolver.
    const route = await deviceOf(api.resolver.resolve(created.key));
    assert.equal(route?.ip, d.ip);

    const one = await call('GET', `/keys/${created.id}`);
    assert.equal(one.status, 200, one.text);
    assert.deepEqual(keys(one.json), KEY_FIELDS);
    const list = await call('GET', '/keys');
    assert.equal(list.status, 200);
    assert.ok(list.json.some((k: { id: number }) => k.id === created.id));
    for (const answer of [one, list]) assert.ok(!answer.text.includes(created.key), 'the secret came back');
    const stored = await store.getKey(created.id);
    assert.equal(stored?.keyHash, hashKey(created.key), 'only the hash is stored');
  });

  test('limits: set at creation, merged by PATCH (null removes one, limits: null all), shown with the quota\'s use; bad values name the field', async () => {
    const d = await device();
    const created = await createKey({ device: d.id, limits: { maxTunnels: 3, tunnelsPerSecond: 2.5, quota: { bytes: 1000, period: 'total' } } });
    assert.deepEqual(created.limits, { maxTunnels: 3, tunnelsPerSecond: 2.5, quota: { bytes: 1000, period: 'total' } });
    assert.deepEqual(created.quota, { used: 0, limit: 1000, periodStart: '1970-01-01T00:00:00.000Z', resetsAt: null, exhausted: false });
    quotaLedger.bytes(created.id, d.id, 200, 1000);
    const got = await call('GET', `/keys/${created.id}`);
    assert.equal(got.status, 200, got.text);
    assert.deepEqual(got.json.quota, { used: 1200, limit: 1000, periodStart: '1970-01-01T00:00:00.000Z', resetsAt: null, exhausted: true });
    const monthly = await call('PATCH', `/keys/${created.id}`, { body: { limits: { maxTunnels: null, bytesPerSecondDown: 1_048_576, quota: { bytes: 5_000_000, period: 'month' } } } });
    assert.equal(monthly.status, 200, monthly.text);
    assert.deepEqual(monthly.json.limits, { tunnelsPerSecond: 2.5, bytesPerSecondDown: 1_048_576, quota: { bytes: 5_000_000, period: 'month' } });
    const now = new Date();
    assert.equal(monthly.json.quota.periodStart, new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)).toISOString());
    assert.equal(monthly.json.quota.resetsAt, new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1)).toISOString());
    const daily = await call('PATCH', `/keys/${created.id}`, { body: { limits: { quota: { bytes: 10, period: 'day' } } } });
    assert.equal(daily.json.quota.periodStart, new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate())).toISOString());
    const none = await call('PATCH', `/keys/${created.id}`, { body: { limits: null } });
    assert.deepEqual(none.json.limits, {});
    assert.equal(none.json.quota, undefined);
    assert.deepEqual((await store.getKey(created.id))?.limits, {});

    const id = created.id;
    assertError(await call('PATCH', `/keys/${id}`, { body: { limits: { maxTunnels: 0 } } }), 400, 'invalid_request', /^body\.limits\.maxTunnels must be >= 1$/);
    assertError(await call('PATCH', `/keys/${id}`, { body: { limits: { maxTunnels: 'x' } } }), 400, 'invalid_request', /^body\.limits\.maxTunnels must be an integer or null$/);
    assertError(await call('PATCH', `/keys/${id}`, { body: { limits: { tunnelsPerSecond: 0 } } }), 400, 'invalid_request', /^body\.limits\.tunnelsPerSecond must be > 0$/);
    assertError(await call('PATCH', `/keys/${id}`, { body: { limits: { bytesPerSecondUp: 10 } } }), 400, 'invalid_request', /^body\.limits\.bytesPerSecondUp must be >= 1024$/);
    assertError(await call('PATCH', `/keys/${id}`, { body: { limits: { quota: { bytes: 5 } } } }), 400, 'invalid_request', /^body\.limits\.quota\.period is required$/);
    assertError(await call('PATCH', `/keys/${id}`, { body: { limits: { quota: { bytes: 5, period: 'week' } } } }), 400, 'invalid_request', /^body\.limits\.quota\.period must be one of: day, month, total$/);
    assertError(await call('PATCH', `/keys/${id}`, { body: { limits: { speed: 5 } } }), 400, 'invalid_request', /^body\.limits\.speed is not a known field$/);
    assertError(await call('PATCH', `/keys/${id}`, { body: { limits: { tunnelBurst: 5 } } }), 400, 'invalid_request', /^limits\.tunnelBurst: needs limits\.tunnelsPerSecond/);
    assertError(await call('POST', '/keys', { body: { device: d.id, limits: { tunnelBurst: 5 } } }), 400, 'invalid_request', /^limits\.tunnelBurst: needs limits\.tunnelsPerSecond/);
    assert.deepEqual((await store.getKey(id))?.limits, {}, 'nothing refused was written');
  });

  test('two generated secrets differ', async () => {
    const d = await device();
    const a = await createKey({ device: d.id });
    const b = await createKey({ device: d.id });
    assert.notEqual(a.key, b.key);
  });

  test('a given key follows the key rules, and is refused with 409 when another key has it', async () => {
    const d = await device();
    const given = `given-${process.pid}-key-abcdef`;
    const created = await createKey({ device: d.id, key: given, expiresAt: '2999-01-01T00:00:00Z' });
    assert.equal(created.key, given);
    assert.equal(created.expiresAt, '2999-01-01T00:00:00.000Z');
    assert.equal((await deviceOf(api.resolver.resolve(given)))?.ip, d.ip);
    assertError(await call('POST', '/keys', { body: { device: d.id, key: given } }), 409, 'conflict', /^key: already in use/);
    assertError(await call('POST', '/keys', { body: { device: d.id, key: 'has space inside' } }), 400, 'invalid_request', /^body\.key must be printable ASCII/);
    assertError(await call('POST', '/keys', { body: { device: d.id, key: 'short' } }), 400, 'invalid_request', /^body\.key must be at least 8 characters$/);
  });

  test('POST /keys names the field at fault: target missing, both, unknown, malformed', async () => {
    const d = await device();
    assertError(await call('POST', '/keys', { body: {} }), 400, 'invalid_request', /^device: give device or pool/);
    assertError(await call('POST', '/keys', { body: { device: d.id, pool: 1 } }), 400, 'invalid_request', /^device: give device or pool, not both$/);
    assertError(await call('POST', '/keys', { body: { device: 999_999 } }), 400, 'unknown_reference', /^device: no device 999999$/);
    assertError(await call('POST', '/keys', { body: { pool: 999_999 } }), 400, 'unknown_reference', /^pool: no pool 999999$/);
    assertError(await call('POST', '/keys', { body: { device: '1' } }), 400, 'invalid_request', /^body\.device must be an integer$/);
    assertError(await call('POST', '/keys', { body: { device: d.id, expiresAt: 'tomorrow' } }), 400, 'invalid_request', /^body\.expiresAt /);
    assertError(await call('POST', '/keys', { body: { device: d.id, colour: 'red' } }), 400, 'invalid_request', /^body\.colour is not a known field$/);
    assertError(await call('POST', '/keys', { token: null, body: { device: d.id } }), 401, 'unauthorized', /missing/);
    assertError(await call('POST', '/keys', { token: ENROLL, body: { device: d.id } }), 403, 'forbidden', /enrollment token/);
  });

  test('a key with an expiry in the past is refused by the resolver', async () => {
    const d = await device();
    const created = await createKey({ device: d.id, expiresAt: '2000-01-01T00:00:00Z' });
    assert.equal(await api.resolver.resolve(created.key), null);
  });

  test('GET /keys/:id: 404 for no such key, 400 for a malformed id', async () => {
    assertError(await call('GET', '/keys/999999'), 404, 'not_found', /^id: no key 999999$/);
    assertError(await call('GET', '/keys/abc'), 400, 'invalid_request', /^params\.id must be a positive integer$/);
    assertError(await call('GET', '/keys/9999999999'), 400, 'invalid_request', /^params\.id must be at most 2147483647$/);
    assertError(await call('GET', '/keys', { token: null }), 401, 'unauthorized', /missing/);
  });

  test('PATCH /keys/:id changes name, expiry and target; the next connection follows the new target', async () => {
    const [d1, d2] = [await device(), await device()];
    const created = await createKey({ device: d1.id });
    assert.equal((await deviceOf(api.resolver.resolve(created.key)))?.ip, d1.ip, 'cached on d1');
    const a = await call('PATCH', `/keys/${created.id}`, { body: { name: 'renamed', device: d2.id, expiresAt: '2999-06-01T00:00:00Z' } });
    assert.equal(a.status, 200, a.text);
    assert.deepEqual(keys(a.json), KEY_FIELDS);
    assert.equal(a.json.name, 'renamed');
    assert.deepEqual(a.json.target, { device: d2.id });
    assert.equal(a.json.expiresAt, '2999-06-01T00:00:00.000Z');
    assert.equal((await deviceOf(api.resolver.resolve(created.key)))?.ip, d2.ip, 'the cache was invalidated');
    const cleared = await call('PATCH', `/keys/${created.id}`, { body: { name: null, expiresAt: null } });
    assert.equal(cleared.json.name, null);
    assert.equal(cleared.json.expiresAt, null);
    assert.ok(!cleared.text.includes(created.key));
  });

  test('PATCH /keys/:id errors name the field', async () => {
    const d = await device();
    const created = await createKey({ device: d.id });
    assertError(await call('PATCH', `/keys/${created.id}`, { body: {} }), 400, 'invalid_request', /^body must name at least 1 field/);
    assertError(await call('PATCH', `/keys/${created.id}`, { body: { device: 999_998 } }), 400, 'unknown_reference', /^device: no device 999998$/);
    assertError(await call('PATCH', `/keys/${created.id}`, { body: { device: d.id, pool: 1 } }), 400, 'invalid_request', /^device: give device or pool, not both$/);
    assertError(await call('PATCH', `/keys/${created.id}`, { body: { disabled: 'yes' } }), 400, 'invalid_request', /^body\.disabled must be true or false$/);
    assertError(await call('PATCH', `/keys/${created.id}`, { body: { key: 'another-secret-123' } }), 400, 'invalid_request', /^body\.key is not a known field$/);
    assertError(await call('PATCH', '/keys/999999', { body: { name: 'x' } }), 404, 'not_found', /^id: no key 999999$/);
  });

  test('disabling a key refuses it from the next connection on and cuts its open tunnels; enabling restores it', async () => {
    const d = await device();
    const created = await createKey({ device: d.id });
    assert.ok(await api.resolver.resolve(created.key), 'cached as routing');
    const tunnel = await sockets.open(hashKey(created.key));
    const a = await call('PATCH', `/keys/${created.id}`, { body: { disabled: true } });
    assert.equal(a.status, 200, a.text);
    assert.equal(a.json.disabled, true);
    await tunnel.closed();
    assert.equal(await api.resolver.resolve(created.key), null);
    const b = await call('PATCH', `/keys/${created.id}`, { body: { disabled: false } });
    assert.equal(b.json.disabled, false);
    assert.equal((await deviceOf(api.resolver.resolve(created.key)))?.ip, d.ip);
  });

  test('rotate: the old secret stops at once, the new one works, open tunnels stay; the new secret is shown once', async () => {
    const d = await device();
    const created = await createKey({ device: d.id });
    assert.ok(await api.resolver.resolve(created.key), 'the old secret is cached as routing');
    const tunnel = await sockets.open(hashKey(created.key));
    const rotated = await call('POST', `/keys/${created.id}/rotate`);
    assert.equal(rotated.status, 200, rotated.text);
    secrets.push(rotated.json.key);
    assert.deepEqual(keys(rotated.json), [...KEY_FIELDS, 'key'].sort());
    assert.match(rotated.json.key, /^[0-9A-Za-z]{32}$/);
    assert.notEqual(rotated.json.key, created.key);
    assert.equal(rotated.json.id, created.id);
    assert.equal(rotated.json.keyPrefix, keyTag(hashKey(rotated.json.key)));
    assert.equal(await api.resolver.resolve(created.key), null, 'the old secret is refused at once');
    assert.equal((await deviceOf(api.resolver.resolve(rotated.json.key)))?.ip, d.ip);
    assert.equal(tunnel.client.destroyed, false, 'the open tunnel stays');
    const again = await call('GET', `/keys/${created.id}`);
    assert.ok(!again.text.includes(rotated.json.key));
    assert.equal(again.json.keyPrefix, rotated.json.keyPrefix);

    // A delete after the rotation cuts the tunnel the old secret opened as well.
    const del = await call('DELETE', `/keys/${created.id}`);
    assert.equal(del.status, 200, del.text);
    assert.equal(del.json.tunnelsClosed, 1);
    await tunnel.closed();
    assertError(await call('POST', '/keys/999999/rotate'), 404, 'not_found', /^id: no key 999999$/);
  });

  test('DELETE /keys/:id refuses the key at once and cuts its open tunnels', async () => {
    const d = await device();
    const created = await createKey({ device: d.id });
    assert.ok(await api.resolver.resolve(created.key));
    const tunnels = [await sockets.open(hashKey(created.key)), await sockets.open(hashKey(created.key))];
    const a = await call('DELETE', `/keys/${created.id}`);
    assert.equal(a.status, 200, a.text);
    assert.deepEqual(keys(a.json), ['key', 'message', 'success', 'tunnelsClosed']);
    assert.equal(a.json.tunnelsClosed, 2);
    assert.equal(a.json.key.id, created.id);
    assert.ok(!a.text.includes(created.key));
    await Promise.all(tunnels.map((t) => t.closed()));
    assert.equal(await api.resolver.resolve(created.key), null);
    assertError(await call('DELETE', `/keys/${created.id}`), 404, 'not_found', /^id: no key \d+$/);
    assert.ok(await store.getDevice(d.id), 'the device stays');
  });
});

describe('devices', () => {
  test('GET /devices and /devices/:id show the device with its live state from the tailnet', async () => {
    const up = await device({ labels: { country: 'de' } });
    const down = await device();
    const unknown = await device();
    tailnet.online.set(up.ip, true);
    tailnet.links.set(up.ip, { lastHandshake: '2026-11-30T12:00:00.000Z', relayed: false });
    tailnet.online.set(down.ip, false);
    tailnet.links.set(down.ip, { lastHandshake: null, relayed: true });

    const a = await call('GET', `/devices/${up.id}`);
    assert.equal(a.status, 200, a.text);
    assert.deepEqual(keys(a.json), [
      'createdAt',
      'enabled',
      'headscaleNodeId',
      'health',
      'id',
      'ip',
      'ipv6',
      'labels',
      'lastHandshake',
      'name',
      'online',
      'openTunnels',
      'port',
      'protocol',
      'relayed',
      'updatedAt',
    ]);
    assert.deepEqual(a.json.labels, { country: 'de' });
    assert.equal(a.json.online, true);
    assert.deepEqual({ ...a.json.health, since: typeof a.json.health.since }, { state: 'up', reason: 'online', since: 'string' });
    assert.ok(Math.abs(Date.parse(a.json.health.since) - Date.now()) < 60_000, a.json.health.since);
    assert.equal(a.json.lastHandshake, '2026-11-30T12:00:00.000Z');
    assert.equal(a.json.relayed, false);
    assert.equal(a.json.openTunnels, 0);
    // What the pipeline records reaches the view: tunnels through the device, and a breaker opened by dial failures.
    const board = api.deviceStatus.board;
    const state = board.state(up.id);
    board.tunnelOpened(state);
    board.tunnelOpened(state);
    assert.equal((await call('GET', `/devices/${up.id}`)).json.openTunnels, 2);
    board.tunnelClosed(state);
    board.tunnelClosed(state);
    for (let i = 0; i < 3; i++) board.failed(state, 'refused', false);
    const broken = (await call('GET', `/devices/${up.id}`)).json;
    assert.deepEqual([broken.health.state, broken.health.reason, broken.openTunnels], ['down', 'dial-failures', 0]);
    board.succeeded(state);
    assert.equal((await call('GET', `/devices/${up.id}`)).json.health.state, 'up');

    const b = await call('GET', `/devices/${down.id}`);
    assert.deepEqual([b.json.health.state, b.json.health.reason], ['down', 'offline']);
    assert.equal(b.json.relayed, true);
    const c = await call('GET', `/devices/${unknown.id}`);
    assert.equal(c.json.online, null);
    assert.deepEqual([c.json.health.state, c.json.health.reason], ['unknown', 'no-status']);
    assert.equal(c.json.lastHandshake, null);
    assert.equal(c.json.relayed, null);

    const list = await call('GET', '/devices');
    assert.equal(list.status, 200);
    assert.deepEqual(
      list.json.filter((d: { id: number }) => [up.id, down.id, unknown.id].includes(d.id)).map((d: { id: number }) => d.id),
      [up.id, down.id, unknown.id],
    );
    assertError(await call('GET', '/devices', { token: null }), 401, 'unauthorized', /missing/);
    assertError(await call('GET', '/devices/999999'), 404, 'not_found', /^id: no device 999999$/);
    assertError(await call('GET', '/devices/0'), 400, 'invalid_request', /^params\.id must be a positive integer$/);
  });

  test('a device registered through POST /register is a device with its key', async () => {
    const secret = `register-${process.pid}-device-key`;
    secrets.push(secret);
    const reg = await call('POST', '/register', { body: { key: secret, ip: '100.64.9.200', name: 'registered' } });
    assert.equal(reg.status, 201, reg.text);
    const list = await call('GET', '/devices');
    assert.ok(list.json.some((d: { ip: string; name: string }) => d.ip === '100.64.9.200' && d.name === 'registered'));
    const keyList = await call('GET', '/keys');
    assert.ok(keyList.json.some((k: { keyPrefix: string }) => k.keyPrefix === keyTag(hashKey(secret))));
    assert.ok(!keyList.text.includes(secret));
  });

  test('PATCH /devices/:id changes name, labels, port and protocol; the next connection uses them', async () => {
    const d = await device();
    const created = await createKey({ device: d.id });
    assert.equal((await deviceOf(api.resolver.resolve(created.key)))?.port, 8939, 'cached');
    const a = await call('PATCH', `/devices/${d.id}`, { body: { name: 'phone-7', labels: { country: 'fr', carrier: 'orange' }, port: 1080, protocol: 'socks5' } });
    assert.equal(a.status, 200, a.text);
    assert.equal(a.json.name, 'phone-7');
    assert.deepEqual(a.json.labels, { country: 'fr', carrier: 'orange' });
    assert.equal(a.json.port, 1080);
    assert.equal(a.json.protocol, 'socks5');
    const route = await deviceOf(api.resolver.resolve(created.key));
    assert.equal(route?.port, 1080);
    assert.equal(route?.protocol, 'socks5');
  });

  test('PATCH /devices/:id errors name the field', async () => {
    const d = await device();
    assertError(await call('PATCH', `/devices/${d.id}`, { body: {} }), 400, 'invalid_request', /^body must name at least 1 field/);
    assertError(await call('PATCH', `/devices/${d.id}`, { body: { port: 70000 } }), 400, 'invalid_request', /^body\.port must be <= 65535$/);
    assertError(await call('PATCH', `/devices/${d.id}`, { body: { protocol: 'ftp' } }), 400, 'invalid_request', /^body\.protocol must be one of: http, socks5$/);
    assertError(await call('PATCH', `/devices/${d.id}`, { body: { labels: { country: 7 } } }), 400, 'invalid_request', /^body\.labels\.country must be a string$/);
    assertError(await call('PATCH', `/devices/${d.id}`, { body: { ip: '100.64.0.9' } }), 400, 'invalid_request', /^body\.ip is not a known field$/);
    assertError(await call('PATCH', '/devices/999999', { body: { name: 'x' } }), 404, 'not_found', /^id: no device 999999$/);
  });

  test('disabling a device cuts the tunnels of keys that target it and refuses them; enabling restores them', async () => {
    const d = await device();
    const other = await device();
    const created = await createKey({ device: d.id });
    const bystander = await createKey({ device: other.id });
    assert.ok(await api.resolver.resolve(created.key));
    const tunnel = await sockets.open(hashKey(created.key));
    const untouched = await sockets.open(hashKey(bystander.key));
    const a = await call('PATCH', `/devices/${d.id}`, { body: { enabled: false } });
    assert.equal(a.status, 200, a.text);
    assert.equal(a.json.enabled, false);
    assert.deepEqual([a.json.health.state, a.json.health.reason], ['down', 'disabled']);
    assert.equal(a.json.health.since, a.json.updatedAt, 'down since it was disabled');
    await tunnel.closed();
    assert.equal(untouched.client.destroyed, false);
    assert.equal(await api.resolver.resolve(created.key), null);
    await call('PATCH', `/devices/${d.id}`, { body: { enabled: true } });
    assert.equal((await deviceOf(api.resolver.resolve(created.key)))?.ip, d.ip);
    untouched.client.destroy();
  });

  test('DELETE /devices/:id deletes the device and its keys, and cuts their tunnels', async () => {
    const d = await device();
    const created = await createKey({ device: d.id });
    assert.ok(await api.resolver.resolve(created.key));
    const tunnel = await sockets.open(hashKey(created.key));
    const a = await call('DELETE', `/devices/${d.id}`);
    assert.equal(a.status, 200, a.text);
    assert.deepEqual(keys(a.json), ['device', 'headscaleDeleted', 'message', 'success', 'tunnelsClosed']);
    assert.equal(a.json.tunnelsClosed, 1);
    assert.equal(a.json.headscaleDeleted, false);
    assert.equal(a.json.device.id, d.id);
    await tunnel.closed();
    assert.equal(await api.resolver.resolve(created.key), null);
    assert.equal(await store.getKey(created.id), null);
    assertError(await call('GET', `/devices/${d.id}`), 404, 'not_found', /^id: no device \d+$/);
    assertError(await call('DELETE', `/devices/${d.id}`), 404, 'not_found', /^id: no device \d+$/);
  });

  test('DELETE /devices/:id?purge=true deletes it in Headscale first; a Headscale failure changes nothing', async () => {
    const d = await device({ headscaleNodeId: '4242' });
    registrar.deleteFailure = new RegistrarError('unreachable', 'Headscale at http://127.0.0.1:1 is unreachable: ECONNREFUSED');
    try {
      assertError(await call('DELETE', `/devices/${d.id}?purge=true`), 502, 'headscale_unreachable', /^purge: Headscale at .* is unreachable/);
      assert.ok(await store.getDevice(d.id), 'the device is still there');
    } finally {
      registrar.deleteFailure = undefined;
    }
    const a = await call('DELETE', `/devices/${d.id}?purge=true`);
    assert.equal(a.status, 200, a.text);
    assert.equal(a.json.headscaleDeleted, true);
    assert.deepEqual(registrar.deleted.slice(-1), ['4242']);
    assert.equal(await store.getDevice(d.id), null);
    assertError(await call('DELETE', `/devices/${d.id}?purge=maybe`), 400, 'invalid_request', /^querystring\.purge must be one of/);
  });
});

describe('pools', () => {
  test('POST /pools with devices or a selector; GET /pools/:id shows the members now', async () => {
    const [d1, d2] = [await device({ labels: { country: 'nl', farm: `f${process.pid}` } }), await device()];
    const explicit = await call('POST', '/pools', { body: { name: `explicit-${process.pid}`, devices: [d1.id, d2.id] } });
    assert.equal(explicit.status, 201, explicit.text);
    assert.deepEqual(keys(explicit.json), ['createdAt', 'devices', 'id', 'name', 'selector', 'updatedAt']);
    assert.deepEqual(explicit.json.devices, [d1.id, d2.id]);
    assert.equal(explicit.json.selector, null);

    const selector = await call('POST', '/pools', { body: { name: `selector-${process.pid}`, selector: { farm: `f${process.pid}` } } });
    assert.equal(selector.status, 201, selector.text);
    assert.deepEqual(selector.json.devices, []);
    // A device that registers later with matching labels joins with no call.
    const late = await device({ labels: { farm: `f${process.pid}` } });
    const one = await call('GET', `/pools/${selector.json.id}`);
    assert.equal(one.status, 200, one.text);
    assert.deepEqual(
      one.json.members.map((m: { id: number }) => m.id),
      [d1.id, late.id],
    );
    assert.equal(one.json.members[0].health.state, 'unknown');

    const list = await call('GET', '/pools');
    assert.equal(list.status, 200);
    assert.ok(list.json.some((p: { id: number }) => p.id === explicit.json.id));
    assertError(await call('GET', '/pools', { token: null }), 401, 'unauthorized', /missing/);
    assertError(await call('GET', '/pools/999999'), 404, 'not_found', /^id: no pool 999999$/);
  });

  test('POST /pools errors name the field', async () => {
    const d = await device();
    const name = `dup-${process.pid}`;
    assert.equal((await call('POST', '/pools', { body: { name, devices: [d.id] } })).status, 201);
    assertError(await call('POST', '/pools', { body: { name, devices: [d.id] } }), 409, 'conflict', new RegExp(`^name: a pool named "${name}" exists$`));
    assertError(await call('POST', '/pools', { body: { name: 'both', devices: [d.id], selector: { a: 'b' } } }), 400, 'invalid_request', /^selector: give devices or selector, not both$/);
    assertError(await call('POST', '/pools', { body: { name: 'neither' } }), 400, 'invalid_request', /^devices: give devices/);
    assertError(await call('POST', '/pools', { body: { name: 'ghost', devices: [d.id, 999_997] } }), 400, 'unknown_reference', /^devices: no device 999997$/);
    assertError(await call('POST', '/pools', { body: { devices: [d.id] } }), 400, 'invalid_request', /^body\.name is required$/);
    assertError(await call('POST', '/pools', { body: { name: 'empty', selector: {} } }), 400, 'invalid_request', /^body\.selector /);
  });

  test('a key can target a pool; DELETE /pools/:id is refused with 409 while it does', async () => {
    const d = await device();
    const pool = await call('POST', '/pools', { body: { name: `targeted-${process.pid}`, devices: [d.id] } });
    const created = await createKey({ pool: pool.json.id, name: 'pool-key' });
    assert.deepEqual(created.target, { pool: pool.json.id });
    assertError(await call('DELETE', `/pools/${pool.json.id}`), 409, 'conflict', /^id: pool \d+ is the target of 1 key$/);
    assert.ok(await store.getPool(pool.json.id));
    assert.equal((await call('DELETE', `/keys/${created.id}`)).status, 200);
    const a = await call('DELETE', `/pools/${pool.json.id}`);
    assert.equal(a.status, 200, a.text);
    assert.deepEqual(keys(a.json), ['message', 'pool', 'success']);
    assert.equal(a.json.pool.id, pool.json.id);
    assertError(await call('DELETE', `/pools/${pool.json.id}`), 404, 'not_found', /^id: no pool \d+$/);
  });

  test('PATCH /pools/:id renames and switches between devices and a selector', async () => {
    const d = await device({ labels: { tier: `t${process.pid}` } });
    const pool = await call('POST', '/pools', { body: { name: `patch-${process.pid}`, devices: [d.id] } });
    const a = await call('PATCH', `/pools/${pool.json.id}`, { body: { name: `patched-${process.pid}`, selector: { tier: `t${process.pid}` } } });
    assert.equal(a.status, 200, a.text);
    assert.equal(a.json.name, `patched-${process.pid}`);
    assert.deepEqual(a.json.selector, { tier: `t${process.pid}` });
    assert.deepEqual(a.json.devices, []);
    const members = await call('GET', `/pools/${pool.json.id}`);
    assert.deepEqual(
      members.json.members.map((m: { id: number }) => m.id),
      [d.id],
    );
    const other = await call('POST', '/pools', { body: { name: `other-${process.pid}`, devices: [d.id] } });
    assertError(await call('PATCH', `/pools/${other.json.id}`, { body: { name: `patched-${process.pid}` } }), 409, 'conflict', /^name: a pool named/);
    assertError(await call('PATCH', `/pools/${other.json.id}`, { body: { devices: [999_996] } }), 400, 'unknown_reference', /^devices: no device 999996$/);
    assertError(await call('PATCH', `/pools/${other.json.id}`, { body: {} }), 400, 'invalid_request', /^body must name at least 1 field/);
    assertError(await call('PATCH', '/pools/999999', { body: { name: 'x' } }), 404, 'not_found', /^id: no pool 999999$/);
  });
});

describe('the OpenAPI document', () => {
  test('declares the request bodies and the shared views', () => {
    const doc = checker.document;
    assert.deepEqual(keys(doc.components.schemas.Key.properties), [...KEY_FIELDS, 'quota'].sort());
    assert.ok(doc.components.schemas.Device && doc.components.schemas.Pool && doc.components.schemas.PoolWithMembers);
    for (const [path, method] of [
      ['/keys', 'post'],
      ['/keys/{id}', 'patch'],
      ['/pools', 'post'],
      ['/pools/{id}', 'patch'],
      ['/devices/{id}', 'patch'],
    ] as const) {
      assert.ok(doc.paths[path][method].requestBody?.content['application/json'].schema, `${method} ${path} has no request schema`);
    }
  });

  test("every devices, pools and keys route's real answers were checked against the document, successes and errors", () => {
    // The usage routes are checked in usage.e2e.test.ts.
    checker.assertCovered((path) => /^\/(devices|pools|keys)(\/|$)/.test(path) && !path.endsWith('/usage'));
  });
});
