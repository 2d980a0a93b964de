// The binding service against a real PostgreSQL store, the real key resolver and the real tunnel registry holding
// real sockets (test/helpers/recording.ts). Each of them records what it was asked, once it has done it, so the
// tests see the order of the steps: store write, then key-cache invalidation, then the key's tunnels; Headscale where
// its answer decides what is written (approval) or where its failure must leave everything unchanged (purge).
import { deviceOf } from './helpers/routes.js';
import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { pino } from 'pino';
import { BindingError } from '../src/bindings/errors.js';
import { BindingService } from '../src/bindings/service.js';
import { RegistrarError } from '../src/headscale/types.js';
import { hashKey } from '../src/core/key.js';
import { AddressAllowList, parseCidrList } from '../src/core/cidr.js';
import { openStore } from '../src/store/index.js';
import type { NodeStore, RegistryStore } from '../src/store/types.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { waitFor } from '../testbed/wait.js';
import { recordingStore, RecordingResolver, RecordingTunnels, refusal } from './helpers/recording.js';
import { ScriptedRegistrar } from './helpers/registrar.js';
import { startTunnelSockets, type TunnelSockets } from './helpers/tunnel-sockets.js';

const log = pino({ level: 'silent' });
const RECORDED_STORE_CALLS = new Set(['findByKeyHash', 'upsert', 'get', 'remove']);

let db: TestDatabase;
let store: NodeStore & RegistryStore;
let steps: string[];
let registrar: ScriptedRegistrar;
let resolver: RecordingResolver;
let tunnels: RecordingTunnels;
let sockets: TunnelSockets;
let service: BindingService;

const DEFAULTS = { port: 8939, protocol: 'http' as const };

function newService(withRegistrar = true): BindingService {
  return new BindingService({
    store: recordingStore(store, steps, RECORDED_STORE_CALLS),
    keyCache: resolver,
    tunnels,
    allowList: new AddressAllowList(parseCidrList('100.64.0.0/10,fd7a:115c:a1e0::/48')),
    deviceDefaults: DEFAULTS,
    registrar: withRegistrar ? registrar : undefined,
    log,
  });
}

let keyCounter = 0;
const newKey = () => `B${process.pid.toString(36)}x${(++keyCounter).toString(36)}`.padEnd(24, 'Z');

before(async () => {
  db = await createTestDatabase('bindings');
  store = await openStore({ database: db.target, dataDir: '/unused', log });
});

after(async () => {
  await store?.close();
  await db?.drop();
});

beforeEach(async () => {
  steps = [];
  registrar = new ScriptedRegistrar(steps);
  resolver = new RecordingResolver(store, steps);
  tunnels = new RecordingTunnels(steps);
  sockets = await startTunnelSockets(tunnels);
  service = newService();
});

afterEach(async () => {
  await sockets.close();
  await service.close();
});

describe('register', () => {
  test('by address: the store is written, then the cached route is dropped, and the key resolves at once', async () => {
    const key = newKey();
    assert.equal(await resolver.resolve(key), null, 'cached as unknown');
    steps.length = 0;
    const { node, created, via } = await service.register({ key, ip: '100.64.5.1' });
    assert.deepEqual(steps, ['store.findByKeyHash', 'store.upsert', 'cache.invalidate']);
    assert.equal(created, true);
    assert.equal(via, 'address');
    assert.deepEqual({ ip: node.ip, port: node.port, protocol: node.protocol, keyHash: node.keyHash }, { ip: '100.64.5.1', ...DEFAULTS, keyHash: hashKey(key) });
    assert.equal((await deviceOf(resolver.resolve(key)))?.ip, '100.64.5.1');
  });

  test('through Headscale: approval comes before the store write, and an approved key is not approved again', async () => {
    const key = newKey();
    registrar.devices.set(key, { headscaleNodeId: '501', name: 'approved', ipv4: '100.64.5.2', ipv6: 'FD7A:115C:A1E0::0502' });
    const first = await service.register({ key });
    assert.deepEqual(steps, ['store.findByKeyHash', 'headscale.approve', 'store.upsert', 'cache.invalidate']);
    assert.equal(first.via, 'Headscale approval');
    assert.deepEqual(
      { ip: first.node.ip, ipv6: first.node.ipv6, name: first.node.name, headscaleNodeId: first.node.headscaleNodeId },
      { ip: '100.64.5.2', ipv6: 'fd7a:115c:a1e0::502', name: 'approved', headscaleNodeId: '501' },
    );

    steps.length = 0;
    const again = await service.register({ key, port: 3128 });
    assert.deepEqual(steps, ['store.findByKeyHash', 'store.upsert', 'cache.invalidate']);
    assert.equal(again.via, 'existing Headscale approval');
    assert.equal(again.created, false);
    assert.equal(again.node.port, 3128);
    assert.equal(registrar.approveCalls, 1);
  });

  test('rebind: the new binding is used from the next lookup on, fields left out keep their value, open tunnels stay', async () => {
    const key = newKey();
    registrar.devices.set(key, { headscaleNodeId: '502', name: 'moving', ipv4: '100.64.5.3', ipv6: 'fd7a:115c:a1e0::503' });
    await service.register({ key, port: 9000, protocol: 'socks5' });
    assert.equal((await deviceOf(resolver.resolve(key)))?.ip, '100.64.5.3');
    const tunnel = await sockets.open(hashKey(key));

    steps.length = 0;
    const { node, created, via } = await service.register({ key, ip: '100.64.5.4' });
    assert.deepEqual(steps, ['store.findByKeyHash', 'store.upsert', 'cache.invalidate'], 'a rebind cuts no tunnel');
    assert.equal(created, false);
    assert.equal(via, 'address');
    assert.deepEqual(
      { ip: node.ip, port: node.port, protocol: node.protocol, ipv6: node.ipv6, headscaleNodeId: node.headscaleNodeId },
      { ip: '100.64.5.4', port: 9000, protocol: 'socks5', ipv6: null, headscaleNodeId: null },
      "what was known about the old device is not kept for a new one",
    );
    assert.equal((await deviceOf(resolver.resolve(key)))?.ip, '100.64.5.4');
    assert.equal(tunnels.size, 1);
    assert.equal(tunnel.client.destroyed, false);
  });

  test('addresses: not an address, outside the allowed ranges, or none at all are refused before anything is written', async () => {
    const notIp = await refusal(() => service.register({ key: newKey(), ip: 'fe80::1%eth0' }));
    assert.equal(notIp.kind, 'invalid-address');
    assert.equal(notIp.message, 'ip: "fe80::1%eth0" is not an IP address');

    const outside = await refusal(() => service.register({ key: newKey(), ip: '10.0.0.1' }));
    assert.equal(outside.kind, 'address-not-allowed');
    assert.equal(outside.message, 'ip: 10.0.0.1 is outside the allowed device ranges (100.64.0.0/10,fd7a:115c:a1e0::/48, TAILGATE_ALLOW_CIDRS)');

    const fromHeadscale = newKey();
    registrar.devices.set(fromHeadscale, { headscaleNodeId: '503', name: 'odd', ipv4: '192.168.1.9', ipv6: null });
    const odd = await refusal(() => service.register({ key: fromHeadscale }));
    assert.equal(odd.kind, 'address-not-allowed');
    assert.match(odd.message, /^ip: 192\.168\.1\.9 \(the device's address in Headscale\) is outside/);

    const noHeadscale = newService(false);
    const required = await refusal(() => noHeadscale.register({ key: newKey() }));
    assert.equal(required.kind, 'address-required');
    assert.equal(required.message, 'ip: required (Headscale approval is not configured)');

    assert.ok(!steps.includes('store.upsert') && !steps.includes('cache.invalidate'), steps.join(', '));
    assert.equal(await store.findByKeyHash(hashKey(fromHeadscale)), null);
  });

  test("Headscale's refusals keep their kind and reason, name the key, and leave the store untouched", async () => {
    for (const [kind, message] of [
      ['bad-key', 'key: not a Headscale registration key'],
      ['not-found', 'Headscale has no pending registration for this key (expired)'],
      ['unreachable', 'Headscale at http://127.0.0.1:1 is unreachable: ECONNREFUSED'],
      ['upstream', 'Headscale answered HTTP 500 while approving: boom'],
    ] as const) {
      const key = newKey();
      registrar.devices.set(key, new RegistrarError(kind, message));
      steps.length = 0;
      const err = await refusal(() => service.register({ key }));
      assert.equal(err.kind, 'registrar');
      assert.equal(err.registrarFailure, kind);
      assert.equal(err.message, message.startsWith('key:') ? message : `key: ${message}`);
      assert.deepEqual(steps, ['store.findByKeyHash', 'headscale.approve']);
    }
  });

  test('a failure that is not a refusal (the database) passes through unchanged', async () => {
    const failing = Object.assign(Object.create(store) as NodeStore, { findByKeyHash: () => Promise.reject(new Error('connection lost')) });
    const broken = new BindingService({
      store: failing,
      keyCache: resolver,
      tunnels,
      allowList: new AddressAllowList(parseCidrList('100.64.0.0/10')),
      deviceDefaults: DEFAULTS,
      log,
    });
    await assert.rejects(broken.register({ key: newKey(), ip: '100.64.5.9' }), (err: Error) => !(err instanceof BindingError) && err.message === 'connection lost');
  });
});

describe('revoke and purge', () => {
  test('revoke: the store first, then the cached route, then the key’s open tunnels (and only that key’s)', async () => {
    const key = newKey();
    const { node } = await service.register({ key, ip: '100.64.6.1' });
    assert.ok(await resolver.resolve(key), 'cached before the revocation');
    const t1 = await sockets.open(hashKey(key));
    const t2 = await sockets.open(hashKey(key));
    const bystander = await sockets.open(hashKey(newKey()));

    steps.length = 0;
    const revoked = await service.revoke(node.id);
    assert.deepEqual(steps, ['store.remove', 'cache.invalidate', 'tunnels.closeKey']);
    assert.deepEqual({ id: revoked.node.id, tunnelsClosed: revoked.tunnelsClosed, headscaleDeleted: revoked.headscaleDeleted }, { id: node.id, tunnelsClosed: 2, headscaleDeleted: false });
    await Promise.all([t1.closed(), t2.closed()]);
    assert.equal(await resolver.resolve(key), null);
    assert.equal(await store.get(node.id), null);
    await waitFor('only the bystander left', 3_000, () => tunnels.size === 1, 20);
    assert.equal(bystander.client.destroyed, false);
  });

  test('revoking an id that is not bound is not-found, and nothing else happens', async () => {
    const err = await refusal(() => service.revoke(2_000_000_000));
    assert.equal(err.kind, 'not-found');
    assert.equal(err.message, 'id: no node 2000000000');
    assert.deepEqual(steps, ['store.remove']);
  });

  test('purge: Headscale deletes the node before the binding goes, then as revoke', async () => {
    const key = newKey();
    registrar.devices.set(key, { headscaleNodeId: '601', name: 'purged', ipv4: '100.64.6.2', ipv6: null });
    const { node } = await service.register({ key });
    const tunnel = await sockets.open(hashKey(key));

    steps.length = 0;
    const purged = await service.purge(node.id);
    assert.deepEqual(steps, ['store.get', 'headscale.deleteNode', 'store.remove', 'cache.invalidate', 'tunnels.closeKey']);
    assert.deepEqual({ tunnelsClosed: purged.tunnelsClosed, headscaleDeleted: purged.headscaleDeleted }, { tunnelsClosed: 1, headscaleDeleted: true });
    assert.deepEqual(registrar.deleted, ['601']);
    await tunnel.closed();
  });

  test('a purge Headscale fails changes nothing, so it can be retried; a node already gone there counts as deleted', async () => {
    const key = newKey();
    registrar.devices.set(key, { headscaleNodeId: '602', name: 'retry', ipv4: '100.64.6.3', ipv6: null });
    const { node } = await service.register({ key });
    const tunnel = await sockets.open(hashKey(key));
    await resolver.resolve(key);

    registrar.deleteFailure = new RegistrarError('unreachable', 'Headscale at http://127.0.0.1:1 is unreachable: ECONNREFUSED');
    steps.length = 0;
    const err = await refusal(() => service.purge(node.id));
    assert.equal(err.kind, 'registrar');
    assert.equal(err.registrarFailure, 'unreachable');
    assert.equal(err.message, 'purge: Headscale at http://127.0.0.1:1 is unreachable: ECONNREFUSED');
    assert.deepEqual(steps, ['store.get', 'headscale.deleteNode']);
    assert.ok(await store.get(node.id));
    assert.equal(tunnel.client.destroyed, false);
    assert.equal(tunnels.size, 1);

    registrar.deleteFailure = new RegistrarError('not-found', 'no such node');
    const retried = await service.purge(node.id);
    assert.equal(retried.headscaleDeleted, false);
    assert.equal(retried.tunnelsClosed, 1);
    await tunnel.closed();
  });

  test('purge without Headscale is refused before anything is read; a binding Headscale never approved is purged without it', async () => {
    const { node } = await service.register({ key: newKey(), ip: '100.64.6.4' });
    steps.length = 0;
    const err = await refusal(() => newService(false).purge(node.id));
    assert.equal(err.kind, 'purge-unavailable');
    assert.equal(err.message, 'purge: Headscale is not configured (HEADSCALE_URL)');
    assert.deepEqual(steps, []);

    const purged = await service.purge(node.id);
    assert.deepEqual(steps, ['store.get', 'store.remove', 'cache.invalidate', 'tunnels.closeKey']);
    assert.equal(purged.headscaleDeleted, false);
    assert.equal((await refusal(() => service.purge(node.id))).kind, 'not-found');
  });
});

describe('changes announced through the store', () => {
  test("this gateway's own revocation counts the tunnels its change notification cut first", async () => {
    const key = newKey();
    const keyHash = hashKey(key);
    const open = [await sockets.open(keyHash), await sockets.open(keyHash)];
    service.applyChange({ op: 'delete', keyHash });
    for (const t of open) await t.closed();
    assert.equal(new RecordingTunnels([]).closeKey(keyHash), 0, 'another registry has nothing to claim');
    assert.equal(tunnels.closeKey(keyHash), 2, 'the revocation that follows claims the two');
    assert.equal(tunnels.closeKey(keyHash), 0, 'once');
  });

  test('an update drops the cached route; a delete also cuts the key’s tunnels; a resync drops every route', async () => {
    const key = newKey();
    const tunnel = await sockets.open(hashKey(key));
    service.applyChange({ op: 'update', keyHash: hashKey(key) });
    assert.deepEqual(steps, ['cache.invalidate']);
    assert.equal(tunnel.client.destroyed, false);
    service.applyChange({ op: 'delete', keyHash: hashKey(key) });
    assert.deepEqual(steps, ['cache.invalidate', 'cache.invalidate', 'tunnels.closeKeyOnChange']);
    await tunnel.closed();
    service.resync();
    assert.deepEqual(steps.slice(-1), ['cache.invalidateAll']);
  });

  test('after the listener reconnects, a key revoked while nobody heard it loses its tunnels; a key still bound keeps them', async () => {
    const kept = newKey();
    const gone = newKey();
    await service.register({ key: kept, ip: '100.64.0.41' });
    const { node } = await service.register({ key: gone, ip: '100.64.0.42' });
    const keptTunnel = await sockets.open(hashKey(kept));
    const goneTunnel = await sockets.open(hashKey(gone));
    // Deleted behind this gateway's back, as another gateway's revocation during a lost listener would be.
    assert.notEqual(await store.remove(node.id), null);
    service.resync(false);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(goneTunnel.client.destroyed, false, 'a resync announced by a change reads nothing again');
    service.resync(true);
    await goneTunnel.closed();
    assert.equal(keptTunnel.client.destroyed, false);
    assert.equal(tunnels.closeKey(hashKey(gone)), 1, 'counted as cut on a change');
    keptTunnel.client.destroy();
    await keptTunnel.closed();
  });

  test('a revocation by another gateway on the same database cuts this gateway’s tunnels of the key, until close()', async () => {
    const other = await openStore({ database: db.target, dataDir: '/unused', log });
    try {
      await service.followChanges();
      const key = newKey();
      const { node } = await service.register({ key, ip: '100.64.7.1' });
      await resolver.resolve(key);
      const tunnel = await sockets.open(hashKey(key));
      assert.ok(await other.remove(node.id));
      await tunnel.closed();
      assert.equal(await resolver.resolve(key), null);

      await service.close();
      const after = newKey();
      const second = await other.upsert({ keyHash: hashKey(after), ip: '100.64.7.2', port: 8939, protocol: 'http' });
      const kept = await sockets.open(hashKey(after));
      steps.length = 0;
      assert.ok(await other.remove(second.node.id));
      // A notification would arrive within milliseconds; give it time to prove none is applied.
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(kept.client.destroyed, false);
      assert.deepEqual(steps, []);
    } finally {
      await other.close();
    }
  });

  test('a key another gateway binds gets its device warmed up on this gateway; updates and deletes do not', async () => {
    const other = await openStore({ database: db.target, dataDir: '/unused', log });
    const warmed: string[] = [];
    const here = new BindingService({
      store,
      keyCache: resolver,
      tunnels,
      allowList: new AddressAllowList(parseCidrList('100.64.0.0/10')),
      deviceDefaults: DEFAULTS,
      warmUp: (ip) => warmed.push(ip),
      log,
    });
    try {
      await here.followChanges();
      const key = newKey();
      const { node } = await other.upsert({ keyHash: hashKey(key), ip: '100.64.7.3', port: 8939, protocol: 'http' });
      await waitFor('the warm-up of the new key’s device', 5_000, () => (warmed.length > 0 ? true : undefined), 20);
      assert.deepEqual(warmed, ['100.64.7.3']);
      await other.upsert({ keyHash: hashKey(key), ip: '100.64.7.4', port: 8939, protocol: 'http' });
      assert.ok(await other.remove(node.id));
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(warmed, ['100.64.7.3'], 'only a new key warms its device up');
    } finally {
      await here.close();
      await other.close();
    }
  });
});
