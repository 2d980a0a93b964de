// The registry service (keys, devices, pools) against a real PostgreSQL store, the real key resolver and the real
// tunnel registry holding real sockets, each recording what it did, so the tests see the order of the steps: the
// store, then the key cache, then the open tunnels; Headscale first for a purge.
import { deviceOf } from './helpers/routes.js';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { generateSecret, RegistryService } from '../src/bindings/registry.js';
import { hashKey } from '../src/core/key.js';
import { RegistrarError } from '../src/headscale/types.js';
import { openStore } from '../src/store/index.js';
import type { NodeStore, RegistryStore } from '../src/store/types.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { recordingStore, RecordingResolver, RecordingTunnels, refusal } from './helpers/recording.js';
import { ScriptedRegistrar } from './helpers/registrar.js';
import { startTunnelSockets, type TunnelSockets } from './helpers/tunnel-sockets.js';

const log = pino({ level: 'silent' });
const RECORDED = new Set(['createKey', 'updateKey', 'rotateKey', 'removeKey', 'updateDevice', 'removeDevice', 'updatePool', 'removePool', 'listKeys', 'getDevice', 'getKey']);

let db: TestDatabase;
let store: NodeStore & RegistryStore;
const openSockets: TunnelSockets[] = [];

/** A fresh service over the shared store, with its own record of steps. */
async function harness() {
  const steps: string[] = [];
  const registrar = new ScriptedRegistrar(steps);
  const resolver = new RecordingResolver(store, steps);
  const tunnels = new RecordingTunnels(steps);
  const sockets = await startTunnelSockets(tunnels);
  openSockets.push(sockets);
  const service = new RegistryService({ store: recordingStore(store, steps, RECORDED), keyCache: resolver, tunnels, registrar, log });
  return { steps, registrar, resolver, sockets, service };
}

let ipCounter = 0;
const newDevice = (headscaleNodeId: string | null = null) =>
  store.createDevice({ ip: `100.64.7.${++ipCounter}`, port: 8939, protocol: 'http', headscaleNodeId });

before(async () => {
  db = await createTestDatabase('bindings_registry');
  store = await openStore({ database: db.target, dataDir: '/unused', log });
});

after(async () => {
  await Promise.all(openSockets.map((s) => s.close()));
  await store?.close();
  await db?.drop();
});

describe('secrets', () => {
  test('generated secrets are 32 base62 characters, every character in use', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const secret = generateSecret();
      assert.match(secret, /^[0-9A-Za-z]{32}$/);
      for (const c of secret) seen.add(c);
    }
    assert.equal(seen.size, 62);
  });
});

describe('keys', () => {
  test('create: the store, then the cache entry a failed attempt may have left', async () => {
    const h = await harness();
    const d = await newDevice();
    const secret = generateSecret();
    assert.equal(await h.resolver.resolve(secret), null, 'cached as unknown');
    h.steps.length = 0;
    const { key } = await h.service.createKey({ device: d.id, key: secret });
    assert.deepEqual(h.steps, ['store.createKey', 'cache.invalidate']);
    assert.equal(key.keyHash, hashKey(secret));
    assert.equal((await deviceOf(h.resolver.resolve(secret)))?.ip, d.ip);
  });

  test('rotate invalidates the OLD hash (and the new one) and cuts nothing', async () => {
    const h = await harness();
    const d = await newDevice();
    const { key, secret } = await h.service.createKey({ device: d.id });
    await h.resolver.resolve(secret);
    const tunnel = await h.sockets.open(key.keyHash);
    h.steps.length = 0;
    h.resolver.invalidated.length = 0;
    const rotated = await h.service.rotateKey(key.id);
    assert.deepEqual(h.steps, ['store.getKey', 'store.rotateKey', 'cache.invalidate', 'cache.invalidate']);
    assert.deepEqual(h.resolver.invalidated, [key.keyHash, hashKey(rotated.secret)]);
    assert.equal(await h.resolver.resolve(secret), null);
    assert.equal(tunnel.client.destroyed, false);
  });

  test('disable: the store, the cache, then the tunnels, including those opened before a rotation', async () => {
    const h = await harness();
    const d = await newDevice();
    const { key } = await h.service.createKey({ device: d.id });
    const before = await h.sockets.open(key.keyHash);
    const rotated = await h.service.rotateKey(key.id);
    const afterRotation = await h.sockets.open(hashKey(rotated.secret));
    h.steps.length = 0;
    await h.service.updateKey(key.id, { disabled: true });
    assert.deepEqual(h.steps, ['store.updateKey', 'cache.invalidate', 'tunnels.closeKey', 'tunnels.closeKey']);
    await Promise.all([before.closed(), afterRotation.closed()]);
  });

  test('an expiry moved into the past cuts the open tunnels like a disable', async () => {
    const h = await harness();
    const d = await newDevice();
    const { key, secret } = await h.service.createKey({ device: d.id });
    assert.ok(await h.resolver.resolve(secret));
    const tunnel = await h.sockets.open(key.keyHash);
    h.steps.length = 0;
    await h.service.updateKey(key.id, { expiresAt: new Date(Date.now() - 1_000) });
    assert.deepEqual(h.steps, ['store.updateKey', 'cache.invalidate', 'tunnels.closeKey']);
    await tunnel.closed();
    assert.equal(await h.resolver.resolve(secret), null);
  });

  test('a rename neither invalidates nor cuts; a new target invalidates but keeps tunnels', async () => {
    const h = await harness();
    const [d1, d2] = [await newDevice(), await newDevice()];
    const { key } = await h.service.createKey({ device: d1.id });
    const tunnel = await h.sockets.open(key.keyHash);
    h.steps.length = 0;
    await h.service.updateKey(key.id, { name: 'renamed' });
    assert.deepEqual(h.steps, ['store.updateKey']);
    h.steps.length = 0;
    await h.service.updateKey(key.id, { device: d2.id });
    assert.deepEqual(h.steps, ['store.updateKey', 'cache.invalidate']);
    assert.equal(tunnel.client.destroyed, false);
  });

  test('delete: the store, the cache, then the tunnels', async () => {
    const h = await harness();
    const d = await newDevice();
    const { key } = await h.service.createKey({ device: d.id });
    const tunnel = await h.sockets.open(key.keyHash);
    h.steps.length = 0;
    const removed = await h.service.removeKey(key.id);
    assert.deepEqual(h.steps, ['store.removeKey', 'cache.invalidate', 'tunnels.closeKey']);
    assert.equal(removed.tunnelsClosed, 1);
    await tunnel.closed();
    const err = await refusal(() => h.service.removeKey(key.id));
    assert.equal(err.kind, 'not-found');
    assert.equal(err.message, `id: no key ${key.id}`);
  });

  test('an unknown target is a refusal naming the field', async () => {
    const h = await harness();
    const err = await refusal(() => h.service.createKey({ pool: 987_654 }));
    assert.equal(err.kind, 'unknown-reference');
    assert.equal(err.message, 'pool: no pool 987654');
  });
});

describe('devices', () => {
  test('disable: keys read first, the store, every cached route, then the tunnels of keys that target it', async () => {
    const h = await harness();
    const d = await newDevice();
    const { key } = await h.service.createKey({ device: d.id });
    const tunnel = await h.sockets.open(key.keyHash);
    h.steps.length = 0;
    await h.service.updateDevice(d.id, { enabled: false });
    assert.deepEqual(h.steps, ['store.listKeys', 'store.updateDevice', 'cache.invalidateAll', 'tunnels.closeKey']);
    await tunnel.closed();
  });

  test('a port change drops every cached route and cuts nothing', async () => {
    const h = await harness();
    const d = await newDevice();
    h.steps.length = 0;
    await h.service.updateDevice(d.id, { port: 3128 });
    assert.deepEqual(h.steps, ['store.updateDevice', 'cache.invalidateAll']);
  });

  test('purge: Headscale first; its failure leaves the device in place', async () => {
    const h = await harness();
    const d = await newDevice('9001');
    const { key } = await h.service.createKey({ device: d.id });
    h.registrar.deleteFailure = new RegistrarError('upstream', 'Headscale answered 500');
    h.steps.length = 0;
    const err = await refusal(() => h.service.removeDevice(d.id, true));
    assert.equal(err.kind, 'registrar');
    assert.deepEqual(h.steps, ['store.getDevice', 'headscale.deleteNode']);
    assert.ok(await store.getDevice(d.id));
    h.registrar.deleteFailure = undefined;
    const tunnel = await h.sockets.open(key.keyHash);
    h.steps.length = 0;
    const removed = await h.service.removeDevice(d.id, true);
    assert.deepEqual(h.steps, ['store.getDevice', 'headscale.deleteNode', 'store.listKeys', 'store.removeDevice', 'cache.invalidateAll', 'tunnels.closeKey']);
    assert.equal(removed.headscaleDeleted, true);
    assert.equal(removed.tunnelsClosed, 1);
    await tunnel.closed();
  });
});

describe('pools', () => {
  test('delete is a conflict while a key targets the pool', async () => {
    const h = await harness();
    const d = await newDevice();
    const pool = await h.service.createPool({ name: `p-${process.pid}`, devices: [d.id] });
    const { key } = await h.service.createKey({ pool: pool.id });
    const err = await refusal(() => h.service.removePool(pool.id));
    assert.equal(err.kind, 'conflict');
    assert.match(err.message, /^id: pool \d+ is the target of 1 key$/);
    await h.service.removeKey(key.id);
    assert.equal((await h.service.removePool(pool.id)).id, pool.id);
  });

  test('an update drops every cached route', async () => {
    const h = await harness();
    const d = await newDevice();
    const pool = await h.service.createPool({ name: `q-${process.pid}`, devices: [d.id] });
    h.steps.length = 0;
    await h.service.updatePool(pool.id, { selector: { country: 'de' } });
    assert.deepEqual(h.steps, ['store.updatePool', 'cache.invalidateAll']);
  });
});
