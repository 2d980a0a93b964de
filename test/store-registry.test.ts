// Keys, devices and pools as separate things (RegistryStore), the legacy node view over them, resolveKey, the
// store's typed errors, and the change notifications of the new tables, on both backends.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { hashKey } from '../src/core/key.js';
import { createLogger } from '../src/log.js';
import { openStore, StoreError, type StoreErrorKind } from '../src/store/index.js';
import type { NodeChange, NodeStore, RegistryStore } from '../src/store/types.js';
import { createTempDir, createTestDatabase, type TestDatabase } from './helpers/db.js';
import { waitFor } from '../testbed/wait.js';

const log = createLogger('silent');
type Store = NodeStore & RegistryStore;

function refused(kind: StoreErrorKind, message?: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof StoreError, `expected a StoreError, got ${String(err)}`);
    assert.equal(err.kind, kind, err.message);
    if (message) assert.match(err.message, message);
    return true;
  };
}

interface Backend {
  name: string;
  setup(): Promise<void>;
  open(): Promise<Store>;
  teardown(): Promise<void>;
}

function postgresBackend(): Backend {
  let db: TestDatabase;
  return {
    name: 'PostgreSQL server',
    setup: async () => {
      db = await createTestDatabase('registry');
    },
    open: () => openStore({ database: db.target, dataDir: '/unused', log }),
    teardown: async () => db?.drop(),
  };
}

function embeddedBackend(): Backend {
  let tmp: { dir: string; remove(): Promise<void> };
  return {
    name: 'embedded PGlite',
    setup: async () => {
      tmp = await createTempDir('tailgate-registry');
    },
    open: () => openStore({ database: undefined, dataDir: tmp.dir, log }),
    teardown: async () => tmp?.remove(),
  };
}

for (const backend of [postgresBackend(), embeddedBackend()]) {
  describe(`registry on ${backend.name}`, () => {
    let store: Store;
    before(async () => {
      await backend.setup();
      store = await backend.open();
    });
    after(async () => {
      await store?.close();
      await backend.teardown();
    });

    test('devices: create, get, list, patch, remove', async () => {
      const d = await store.createDevice({ ip: '100.64.1.1', port: 8939, protocol: 'http', name: 'de-1', labels: { country: 'de', carrier: 'vodafone' } });
      assert.equal(d.enabled, true);
      assert.deepEqual(d.labels, { country: 'de', carrier: 'vodafone' });
      assert.equal(d.ipv6, null);
      assert.deepEqual(await store.getDevice(d.id), d);
      assert.ok((await store.listDevices()).some((x) => x.id === d.id));

      const patched = await store.updateDevice(d.id, { port: 3128, protocol: 'socks5', enabled: false, labels: { country: 'fr' } });
      assert.equal(patched.port, 3128);
      assert.equal(patched.protocol, 'socks5');
      assert.equal(patched.enabled, false);
      assert.deepEqual(patched.labels, { country: 'fr' });
      assert.equal(patched.name, 'de-1', 'an absent field stays');
      assert.equal((await store.updateDevice(d.id, { name: null })).name, null, 'null clears the name');

      assert.deepEqual((await store.removeDevice(d.id))?.id, d.id);
      assert.equal(await store.removeDevice(d.id), null);
      assert.equal(await store.getDevice(d.id), null);
      await assert.rejects(store.updateDevice(d.id, { port: 1 }), refused('not-found', new RegExp(`no device ${d.id}`)));
    });

    test('the schema refuses what it rules out, as typed errors', async () => {
      await assert.rejects(store.createDevice({ ip: '100.64.1.2', port: 0, protocol: 'http' }), refused('invalid', /devices_port_range/));
      await assert.rejects(
        store.createDevice({ ip: '100.64.1.2', port: 1, protocol: 'http', labels: { n: 5 } as never }),
        refused('invalid', /devices_labels_string_map/),
      );
      await assert.rejects(store.createPool({ name: 'x', selector: { a: ['b'] } as never }), refused('invalid', /pools_selector_string_map/));
      await assert.rejects(store.createPool({ name: 'both', devices: [], selector: {} }), refused('invalid', /either devices or a selector/));
      await assert.rejects(store.createPool({ name: 'neither' }), refused('invalid', /needs devices or a selector/));
      await assert.rejects(store.createKey({ keyHash: 'nope', target: { device: 1 } }), refused('invalid', /keys_key_hash_is_sha256_hex/));
      await assert.rejects(store.createKey({ keyHash: hashKey('to-nowhere'), target: { device: 999_999 } }), refused('foreign-key'));
      await assert.rejects(store.createKey({ keyHash: hashKey('to-nowhere'), target: { pool: 999_999 } }), refused('foreign-key'));
      await assert.rejects(store.createPool({ name: 'ghosts', devices: [999_999] }), refused('foreign-key'));
      await assert.rejects(store.updateKey(999_999, { disabled: true }), refused('not-found'));
      await assert.rejects(store.rotateKey(999_999, hashKey('x')), refused('not-found'));
      await assert.rejects(store.updatePool(999_999, { name: 'x' }), refused('not-found'));
    });

    test('pools: explicit members, selectors over labels, and no deleting a pool that keys target', async () => {
      const de1 = await store.createDevice({ ip: '100.64.2.1', port: 8939, protocol: 'http', labels: { country: 'de', carrier: 'o2' } });
      const de2 = await store.createDevice({ ip: '100.64.2.2', port: 8939, protocol: 'http', labels: { country: 'de', carrier: 'vodafone' } });
      const fr1 = await store.createDevice({ ip: '100.64.2.3', port: 8939, protocol: 'http', labels: { country: 'fr' } });

      const explicit = await store.createPool({ name: 'mixed', devices: [fr1.id, de1.id, de1.id] });
      assert.deepEqual(explicit.devices, [de1.id, fr1.id].sort((a, b) => a - b));
      assert.equal(explicit.selector, null);
      const germany = await store.createPool({ name: 'germany', selector: { country: 'de' } });
      assert.deepEqual(germany.devices, []);
      assert.deepEqual(germany.selector, { country: 'de' });
      await assert.rejects(store.createPool({ name: 'germany', selector: {} }), refused('conflict', /pools_name_key/));

      const members = async (id: number) => (await store.getPool(id))!.members.map((d) => d.id);
      assert.deepEqual(await members(explicit.id), [de1.id, fr1.id]);
      assert.deepEqual(await members(germany.id), [de1.id, de2.id]);
      // A device that registers later with matching labels joins with no call.
      const de3 = await store.createDevice({ ip: '100.64.2.4', port: 8939, protocol: 'http', labels: { country: 'de' } });
      assert.deepEqual(await members(germany.id), [de1.id, de2.id, de3.id]);
      await store.updateDevice(de2.id, { labels: { country: 'at' } });
      assert.deepEqual(await members(germany.id), [de1.id, de3.id]);

      const narrowed = await store.updatePool(germany.id, { name: 'germany-vodafone', selector: { country: 'de', carrier: 'o2' } });
      assert.equal(narrowed.name, 'germany-vodafone');
      assert.deepEqual(await members(germany.id), [de1.id]);
      // Switching to explicit members drops the selector, and back.
      const nowExplicit = await store.updatePool(germany.id, { devices: [de3.id] });
      assert.equal(nowExplicit.selector, null);
      assert.deepEqual(nowExplicit.devices, [de3.id]);
      assert.deepEqual(await members(germany.id), [de3.id]);
      const back = await store.updatePool(germany.id, { selector: { country: 'fr' } });
      assert.deepEqual(back.devices, []);
      assert.deepEqual(await members(germany.id), [fr1.id]);
      assert.ok((await store.listPools()).some((p) => p.id === explicit.id && p.devices.length === 2));

      const key = await store.createKey({ keyHash: hashKey('pool-key-0001'), target: { pool: explicit.id } });
      await assert.rejects(store.removePool(explicit.id), refused('conflict', /target of 1 key/));
      await store.removeKey(key.id);
      assert.equal((await store.removePool(explicit.id))?.id, explicit.id);
      assert.equal(await store.getPool(explicit.id), null);
      assert.equal(await store.removePool(explicit.id), null);
      // Removing a device takes it out of explicit pools.
      await store.removeDevice(de3.id);
      assert.deepEqual((await store.listPools()).find((p) => p.id === germany.id)?.devices, []);
    });

    test('keys: create, get, list, update, rotate, remove; the secret is only ever a hash', async () => {
      const dev = await store.createDevice({ ip: '100.64.3.1', port: 8939, protocol: 'http' });
      const pool = await store.createPool({ name: 'keys-pool', devices: [dev.id] });
      const expires = new Date(Date.now() + 3_600_000);
      const key = await store.createKey({ name: 'customer-1', keyHash: hashKey('key-secret-0001'), target: { device: dev.id }, expiresAt: expires });
      assert.deepEqual(key.target, { device: dev.id });
      assert.equal(key.expiresAt?.getTime(), expires.getTime());
      assert.equal(key.disabled, false);
      assert.deepEqual(await store.getKey(key.id), key);
      assert.ok((await store.listKeys()).some((k) => k.id === key.id));
      await assert.rejects(store.createKey({ keyHash: hashKey('key-secret-0001'), target: { pool: pool.id } }), refused('conflict', /keys_key_hash_key/));

      const moved = await store.updateKey(key.id, { target: { pool: pool.id }, expiresAt: null, disabled: true });
      assert.deepEqual(moved.target, { pool: pool.id });
      assert.equal(moved.expiresAt, null);
      assert.equal(moved.disabled, true);
      assert.equal(moved.name, 'customer-1');

      const rotated = await store.rotateKey(key.id, hashKey('key-secret-0002'));
      assert.equal(rotated.id, key.id);
      assert.equal(rotated.keyHash, hashKey('key-secret-0002'));
      assert.equal(await store.resolveKey(hashKey('key-secret-0001')), null, 'the old secret stops at once');
      assert.equal((await store.resolveKey(hashKey('key-secret-0002')))?.id, key.id);

      assert.equal((await store.removeKey(key.id))?.id, key.id);
      assert.equal(await store.removeKey(key.id), null);
      assert.equal(await store.getKey(key.id), null);
    });

    test('resolveKey gives the key and its eligible devices; the legacy view routes only device keys that may route', async () => {
      const a = await store.createDevice({ ip: '100.64.4.1', port: 8939, protocol: 'http', labels: { country: 'nl', tier: 'a' } });
      const b = await store.createDevice({ ip: '100.64.4.2', port: 8939, protocol: 'socks5', labels: { country: 'nl' } });
      const off = await store.createDevice({ ip: '100.64.4.3', port: 8939, protocol: 'http', labels: { country: 'nl' }, enabled: false });
      const explicit = await store.createPool({ name: 'nl-explicit', devices: [a.id, off.id] });
      const selector = await store.createPool({ name: 'nl', selector: { country: 'nl' } });
      const empty = await store.createPool({ name: 'empty', devices: [] });

      const deviceKey = await store.createKey({ keyHash: hashKey('resolve-device'), target: { device: b.id } });
      const r1 = await store.resolveKey(deviceKey.keyHash);
      assert.deepEqual(r1, { id: deviceKey.id, disabled: false, expiresAt: null, limits: {}, target: { device: b.id }, devices: [b] });

      const explicitKey = await store.createKey({ keyHash: hashKey('resolve-explicit'), target: { pool: explicit.id } });
      assert.deepEqual((await store.resolveKey(explicitKey.keyHash))?.devices, [a]);
      const selectorKey = await store.createKey({ keyHash: hashKey('resolve-selector'), target: { pool: selector.id } });
      assert.deepEqual((await store.resolveKey(selectorKey.keyHash))?.devices, [a, b]);
      const emptyKey = await store.createKey({ keyHash: hashKey('resolve-empty'), target: { pool: empty.id } });
      assert.deepEqual(await store.resolveKey(emptyKey.keyHash), { id: emptyKey.id, disabled: false, expiresAt: null, limits: {}, target: { pool: empty.id }, devices: [] });
      const offKey = await store.createKey({ keyHash: hashKey('resolve-off'), target: { device: off.id } });
      assert.deepEqual((await store.resolveKey(offKey.keyHash))?.devices, []);
      assert.equal(await store.resolveKey(hashKey('resolve-unknown')), null);

      // The legacy view: a node is a key that targets a device, shown with the key's id.
      const node = await store.findByKeyHash(deviceKey.keyHash);
      assert.equal(node?.id, deviceKey.id);
      assert.equal(node?.ip, b.ip);
      assert.equal(node?.protocol, 'socks5');
      assert.equal(await store.findByKeyHash(explicitKey.keyHash), null, 'pool keys are not nodes');
      assert.equal(await store.get(explicitKey.id), null);
      assert.ok(!(await store.list()).some((n) => n.id === explicitKey.id));
      assert.equal(await store.findByKeyHash(offKey.keyHash), null, 'a disabled device routes nothing');
      await store.updateKey(deviceKey.id, { disabled: true });
      assert.equal(await store.findByKeyHash(deviceKey.keyHash), null, 'a disabled key routes nothing');
      assert.equal((await store.resolveKey(deviceKey.keyHash))?.disabled, true, 'resolveKey says why');
      await store.updateKey(deviceKey.id, { disabled: false, expiresAt: new Date(Date.now() - 1000) });
      assert.equal(await store.findByKeyHash(deviceKey.keyHash), null, 'an expired key routes nothing');
      await store.updateKey(deviceKey.id, { expiresAt: new Date(Date.now() + 60_000) });
      assert.equal((await store.findByKeyHash(deviceKey.keyHash))?.id, deviceKey.id);

      // Registering a pool key must not turn it into a one-device key.
      await assert.rejects(
        store.upsert({ keyHash: selectorKey.keyHash, ip: '100.64.4.9', port: 8939, protocol: 'http' }),
        refused('conflict', /targets a pool/),
      );
    });

    test('legacy upsert and remove keep devices that something else still uses', async () => {
      const first = await store.upsert({ keyHash: hashKey('legacy-shared-1'), ip: '100.64.5.1', port: 8939, protocol: 'http', name: 'shared' });
      assert.equal(first.created, true);
      const [key] = (await store.listKeys()).filter((k) => k.id === first.node.id);
      const deviceId = (key!.target as { device: number }).device;
      const device = (await store.getDevice(deviceId))!;
      assert.equal(device.name, 'shared');
      assert.equal(device.ip, '100.64.5.1');

      // Re-registering updates the key's device in place.
      const again = await store.upsert({ keyHash: hashKey('legacy-shared-1'), ip: '100.64.5.2', port: 8940, protocol: 'socks5' });
      assert.equal(again.created, false);
      assert.equal(again.node.id, first.node.id);
      const updated = (await store.getDevice(deviceId))!;
      assert.equal(updated.ip, '100.64.5.2');
      assert.equal(updated.port, 8940);
      assert.equal(updated.name, 'shared');

      // A second key on the same device keeps the device when the first is removed...
      const second = await store.createKey({ keyHash: hashKey('legacy-shared-2'), target: { device: deviceId } });
      assert.deepEqual(await store.remove(first.node.id), again.node);
      assert.ok(await store.getDevice(deviceId), 'the device another key targets stays');
      // ...and an explicit pool keeps it when the last key goes.
      const pool = await store.createPool({ name: 'keeps-device', devices: [deviceId] });
      assert.equal((await store.remove(second.id))?.id, second.id);
      assert.ok(await store.getDevice(deviceId), 'the device a pool lists stays');
      await store.removePool(pool.id);

      // A device used by nothing else goes with its key.
      const lone = await store.upsert({ keyHash: hashKey('legacy-lone'), ip: '100.64.5.3', port: 8939, protocol: 'http' });
      const loneDevice = (await store.resolveKey(hashKey('legacy-lone')))!.devices[0]!;
      await store.remove(lone.node.id);
      assert.equal(await store.getDevice(loneDevice.id), null);

      // Removing a device removes the keys that target it.
      const doomed = await store.upsert({ keyHash: hashKey('legacy-doomed'), ip: '100.64.5.4', port: 8939, protocol: 'http' });
      const doomedDevice = (await store.resolveKey(hashKey('legacy-doomed')))!.devices[0]!;
      await store.removeDevice(doomedDevice.id);
      assert.equal(await store.get(doomed.node.id), null);
      assert.equal(await store.getKey(doomed.node.id), null);
    });
  });
}

describe('change notifications of the new tables', () => {
  let db: TestDatabase;
  let writer: Store;
  let reader: Store;
  let stop: () => Promise<void>;
  const changes: NodeChange[] = [];
  let resyncs = 0;

  before(async () => {
    db = await createTestDatabase('registry_notify');
    writer = await openStore({ database: db.target, dataDir: '/unused', log });
    reader = await openStore({ database: db.target, dataDir: '/unused', log });
    stop = await reader.watch!(
      (change) => changes.push(change),
      () => resyncs++,
    );
    // The first resync comes with the listener's connection.
    await waitFor('the initial resync', 10_000, () => resyncs > 0, 20);
  });
  after(async () => {
    await stop?.();
    await writer?.close();
    await reader?.close();
    await db?.drop();
  });

  test('key rows notify by key hash, as the previous version understands them', async () => {
    const device = await writer.createDevice({ ip: '100.64.6.1', port: 8939, protocol: 'http' });
    const key = await writer.createKey({ keyHash: hashKey('notify-registry-1'), target: { device: device.id } });
    await waitFor('the insert', 10_000, () => changes.some((c) => c.op === 'insert' && c.keyHash === key.keyHash), 20);
    await writer.rotateKey(key.id, hashKey('notify-registry-2'));
    // The old hash is announced as updated, not deleted: gateways forget it (the next lookup finds no such key) but keep
    // the tunnels it opened, as a rotation promises.
    await waitFor('the rotation', 10_000, () => changes.some((c) => c.op === 'update' && c.keyHash === key.keyHash), 20);
    assert.ok(!changes.some((c) => c.op === 'delete' && c.keyHash === key.keyHash), 'a rotation deletes nothing');
    // A device change reaches the keys that target it by their hashes (no pools yet, so no resync).
    const before = resyncs;
    await writer.updateDevice(device.id, { port: 3128 });
    await waitFor('the device update', 10_000, () => changes.some((c) => c.op === 'update' && c.keyHash === hashKey('notify-registry-2')), 20);
    assert.equal(resyncs, before);
    await writer.removeDevice(device.id);
    await waitFor('the cascaded key delete', 10_000, () => changes.some((c) => c.op === 'delete' && c.keyHash === hashKey('notify-registry-2')), 20);
  });

  test('device, pool and membership changes resynchronise every cache once pools exist', async () => {
    let before = resyncs;
    const pool = await writer.createPool({ name: 'notify-pool', selector: { country: 'de' } });
    await waitFor('a resync for the new pool', 10_000, () => resyncs > before, 20);
    before = resyncs;
    const device = await writer.createDevice({ ip: '100.64.6.2', port: 8939, protocol: 'http', labels: { country: 'de' } });
    await waitFor('a resync for a device a selector may pick up', 10_000, () => resyncs > before, 20);
    before = resyncs;
    await writer.updatePool(pool.id, { devices: [device.id] });
    await waitFor('a resync for the membership', 10_000, () => resyncs > before, 20);
    before = resyncs;
    await db.sql`UPDATE devices SET enabled = false WHERE id = ${device.id}`;
    await waitFor('a resync for a hand edit', 10_000, () => resyncs > before, 20);
  });

  test('the nodes view takes hand edits as the nodes table did, and they are announced', async () => {
    const h = hashKey('hand-edited-key-0001');
    const [inserted] = await db.sql<{ id: number }[]>`
      INSERT INTO nodes (key_hash, ip, port, protocol, name) VALUES (${h}, '100.64.7.1', 8939, 'http', 'by-hand') RETURNING id`;
    await waitFor('the hand insert', 10_000, () => changes.some((c) => c.op === 'insert' && c.keyHash === h), 20);
    const node = await writer.get(inserted!.id);
    assert.equal(node?.keyHash, h);
    assert.equal(node?.name, 'by-hand');
    const device = (await writer.resolveKey(h))!.devices[0]!;
    assert.equal(device.ip, '100.64.7.1');

    await db.sql`UPDATE nodes SET ip = '100.64.7.2' WHERE id = ${inserted!.id}`;
    await waitFor('the hand update', 10_000, () => changes.some((c) => c.op === 'update' && c.keyHash === h), 20);
    assert.equal((await writer.getDevice(device.id))?.ip, '100.64.7.2');

    const deleted = await db.sql`DELETE FROM nodes WHERE id = ${inserted!.id} RETURNING id`;
    assert.equal(deleted.length, 1);
    await waitFor('the hand delete', 10_000, () => changes.some((c) => c.op === 'delete' && c.keyHash === h), 20);
    assert.equal(await writer.getKey(inserted!.id), null);
    assert.equal(await writer.getDevice(device.id), null, 'the device no one else uses goes with it');
  });
});
