// Migration 3 (keys apart from devices) on databases filled by the previous schema and the previous code's writes,
// on both backends: every node becomes a device and a key with the node's id and key hash, the legacy view answers
// exactly as before, and a gateway started on the migrated database keeps routing the old keys.
import { deviceOf } from './helpers/routes.js';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import type { Sql } from 'postgres';
import { startGateway } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { hashKey } from '../src/core/key.js';
import { createLogger } from '../src/log.js';
import { openEmbedded } from '../src/store/embedded.js';
import { openStore } from '../src/store/index.js';
import { MIGRATIONS, migrate } from '../src/store/migrations.js';
import type { NodeBinding, NodeRecord } from '../src/store/types.js';
import { KeyResolver } from '../src/tunnel/key-resolver.js';
import { curl } from './helpers/curl.js';
import { createTempDir, createTestDatabase, type TestDatabase } from './helpers/db.js';
import { startHttpDevice, type Device } from './helpers/devices.js';
import { startHttpTarget, type Listening } from './helpers/targets.js';

const log = createLogger('silent');

/** The previous SqlNodeStore.upsert, verbatim in what it wrote. */
async function previousUpsert(sql: Sql, b: NodeBinding): Promise<void> {
  await sql`
    INSERT INTO nodes (key_hash, ip, ipv6, port, protocol, name, headscale_node_id)
    VALUES (${b.keyHash}, ${b.ip}, ${b.ipv6 ?? null}, ${b.port}, ${b.protocol}, ${b.name ?? null}, ${b.headscaleNodeId ?? null})
    ON CONFLICT (key_hash) DO UPDATE SET
      ip = EXCLUDED.ip,
      port = EXCLUDED.port,
      protocol = EXCLUDED.protocol,
      ipv6 = CASE WHEN ${b.ipv6 === undefined}::boolean THEN nodes.ipv6 ELSE EXCLUDED.ipv6 END,
      name = CASE WHEN ${b.name === undefined}::boolean THEN nodes.name ELSE EXCLUDED.name END,
      headscale_node_id = CASE WHEN ${b.headscaleNodeId === undefined}::boolean THEN nodes.headscale_node_id ELSE EXCLUDED.headscale_node_id END,
      updated_at = now()`;
}

/** The previous SqlNodeStore.list, as records. */
async function previousList(sql: Sql): Promise<NodeRecord[]> {
  const rows = await sql<Record<string, any>[]>`
    SELECT id, name, ip, ipv6, port, protocol, key_hash, headscale_node_id, created_at, updated_at FROM nodes ORDER BY id`;
  return rows.map((r) => ({
    id: r.id,
    name: r.name,
    ip: r.ip,
    ipv6: r.ipv6,
    port: r.port,
    protocol: r.protocol,
    keyHash: r.key_hash,
    headscaleNodeId: r.headscale_node_id,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  }));
}

const KEYS = ['LegacyKeyOne-0123456789', 'LegacyKeyTwo-0123456789', 'LegacyKeyThree-012345678', 'LegacyKeyFour-0123456789'];

/** Fills a database at schema version 2 the way the previous code did: registrations, a re-registration, a revocation. */
async function fillPrevious(sql: Sql, devicePort: number): Promise<NodeRecord[]> {
  assert.deepEqual(await migrate(sql, log, MIGRATIONS.slice(0, 2)), [1, 2]);
  await previousUpsert(sql, { keyHash: hashKey(KEYS[0]!), ip: '127.0.0.1', port: devicePort, protocol: 'http', name: 'phone-a' });
  await previousUpsert(sql, { keyHash: hashKey(KEYS[1]!), ip: '100.64.0.2', port: 8939, protocol: 'socks5' });
  await previousUpsert(sql, { keyHash: hashKey(KEYS[2]!), ip: '100.64.0.3', port: 8939, protocol: 'http' });
  await previousUpsert(sql, { keyHash: hashKey(KEYS[3]!), ip: '100.64.0.4', port: 8939, protocol: 'http', name: 'phone-d' });
  await new Promise((r) => setTimeout(r, 20));
  await previousUpsert(sql, {
    keyHash: hashKey(KEYS[1]!),
    ip: '100.64.0.22',
    ipv6: 'fd7a:115c:a1e0::22',
    port: 9000,
    protocol: 'socks5',
    headscaleNodeId: '22',
    name: 'phone-b',
  });
  await sql`DELETE FROM nodes WHERE key_hash = ${hashKey(KEYS[2]!)}`;
  const nodes = await previousList(sql);
  assert.equal(nodes.length, 3);
  return nodes;
}

interface Backend {
  name: string;
  /** Fills the database at version 2 and returns what the previous code listed. */
  fill(devicePort: number): Promise<NodeRecord[]>;
  env(): Record<string, string>;
  open(): ReturnType<typeof openStore>;
  /** A raw query, only while no store is open on the backend. */
  query(text: string): Promise<Record<string, any>[]>;
  teardown(): Promise<void>;
}

function postgresBackend(): Backend {
  let db: TestDatabase;
  return {
    name: 'PostgreSQL server',
    async fill(port) {
      db = await createTestDatabase('migrate3');
      return fillPrevious(db.sql, port);
    },
    env: () => ({ DATABASE_URL: db.url }),
    open: () => openStore({ database: db.target, dataDir: '/unused', log }),
    query: async (text) => [...(await db.sql.unsafe(text))],
    teardown: async () => db?.drop(),
  };
}

function embeddedBackend(): Backend {
  let tmp: { dir: string; remove(): Promise<void> };
  const raw = async <T>(run: (sql: Sql) => Promise<T>): Promise<T> => {
    const embedded = await openEmbedded(tmp.dir, log);
    try {
      return await run(embedded.sql);
    } finally {
      await embedded.sql.end({ timeout: 5 });
      await embedded.release();
    }
  };
  return {
    name: 'embedded PGlite',
    async fill(port) {
      tmp = await createTempDir('tailgate-migrate3');
      return raw((sql) => fillPrevious(sql, port));
    },
    env: () => ({ TAILGATE_DATA_DIR: tmp.dir }),
    open: () => openStore({ database: undefined, dataDir: tmp.dir, log }),
    query: (text) => raw(async (sql) => [...(await sql.unsafe(text))]),
    teardown: async () => tmp?.remove(),
  };
}

for (const backend of [postgresBackend(), embeddedBackend()]) {
  describe(`migration 3 on a ${backend.name} filled by the previous schema`, { timeout: 120_000 }, () => {
    let device: Device;
    let target: Listening;
    let previous: NodeRecord[];

    before(async () => {
      [device, target] = await Promise.all([startHttpDevice(), startHttpTarget()]);
      previous = await backend.fill(device.port);
    });
    after(async () => {
      await Promise.all([device?.close(), target?.close()]);
      await backend.teardown();
    });

    test('the legacy view answers exactly as the previous code did', async () => {
      const store = await backend.open();
      try {
        assert.deepEqual(await store.list(), previous);
        for (const node of previous) {
          assert.deepEqual(await store.get(node.id), node);
          assert.deepEqual(await store.findByKeyHash(node.keyHash), node);
        }
        assert.equal(await store.findByKeyHash(hashKey(KEYS[2]!)), null, 'the revoked key stays revoked');
      } finally {
        await store.close();
      }
    });

    test('every node became a device and a key with its id and key hash, and nodes is no longer a table', async () => {
      const devices = await backend.query('SELECT id, name, ip, ipv6, port, protocol, labels, headscale_node_id, enabled FROM devices ORDER BY id');
      const keys = await backend.query('SELECT id, key_hash, target_device_id, target_pool_id, disabled, expires_at FROM keys ORDER BY id');
      assert.deepEqual(
        devices,
        previous.map((n) => ({
          id: n.id,
          name: n.name,
          ip: n.ip,
          ipv6: n.ipv6,
          port: n.port,
          protocol: n.protocol,
          labels: {},
          headscale_node_id: n.headscaleNodeId,
          enabled: true,
        })),
      );
      assert.deepEqual(
        keys,
        previous.map((n) => ({ id: n.id, key_hash: n.keyHash, target_device_id: n.id, target_pool_id: null, disabled: false, expires_at: null })),
      );
      const kinds = await backend.query(`SELECT relname, relkind FROM pg_class WHERE relname IN ('nodes', 'devices', 'keys', 'pools', 'pool_devices') ORDER BY relname`);
      assert.deepEqual(
        kinds.map((r) => `${r.relname}:${r.relkind}`),
        ['devices:r', 'keys:r', 'nodes:v', 'pool_devices:r', 'pools:r'],
      );
      const triggers = await backend.query(`SELECT tgname FROM pg_trigger WHERE tgname = 'nodes_changed'`);
      assert.deepEqual(triggers, []);
    });

    test('new registrations get ids past every migrated one', async () => {
      const store = await backend.open();
      try {
        const { node, created } = await store.upsert({ keyHash: hashKey('NewKeyAfterMigration-01'), ip: '100.64.0.9', port: 8939, protocol: 'http' });
        assert.equal(created, true);
        const maxId = Math.max(...previous.map((n) => n.id));
        assert.ok(node.id > maxId, `new key id ${node.id} collides with migrated ids up to ${maxId}`);
        const device = (await store.listDevices()).at(-1)!;
        assert.ok(device.id > maxId, `new device id ${device.id} collides with migrated ids up to ${maxId}`);
        assert.deepEqual(await store.remove(node.id), node);
      } finally {
        await store.close();
      }
    });

    test('a gateway on the migrated database keeps resolving and routing the old keys', async () => {
      const store = await backend.open();
      try {
        const resolver = new KeyResolver(store, { max: 10, positiveTtlMs: 60_000, negativeTtlMs: 60_000 });
        const route = await deviceOf(resolver.resolve(KEYS[0]!));
        assert.equal(route?.nodeId, previous[0]!.id);
        assert.equal(route?.port, device.port);
        const resolved = await store.resolveKey(hashKey(KEYS[0]!));
        assert.deepEqual(resolved?.target, { device: previous[0]!.id });
        assert.deepEqual(
          resolved?.devices.map((d) => d.id),
          [previous[0]!.id],
        );
      } finally {
        await store.close();
      }

      const config = loadConfig({
        TAILGATE_LISTEN_HOST: '127.0.0.1',
        TAILGATE_HTTP_PORT: '0',
        TAILGATE_SOCKS_PORT: '0',
        TAILGATE_API_PORT: '0',
        TAILGATE_ADMIN_TOKEN: 'test-admin-token-0123456789',
        TAILGATE_ALLOW_CIDRS: '127.0.0.0/8',
        TAILGATE_DATA_DIR: '/nonexistent-unused',
        ...backend.env(),
      });
      const gw = await startGateway(config, pino({ level: 'silent' }));
      try {
        const key = KEYS[0]!;
        const res = await curl(['-x', `http://${key}:${key}@127.0.0.1:${gw.ports.http}`, `http://127.0.0.1:${target.port}/after-migration`]);
        assert.equal(res.exitCode, 0, res.stderr);
        assert.equal(res.httpCode, 200);
        assert.ok(device.seen.some((s) => s.includes(`:${target.port}`)), `the device saw ${JSON.stringify(device.seen)}`);
        const nodes = await fetch(`http://127.0.0.1:${gw.ports.api}/nodes`, { headers: { authorization: 'Bearer test-admin-token-0123456789' } });
        assert.equal(nodes.status, 200);
        const listed = (await nodes.json()) as { id: number }[];
        assert.deepEqual(
          listed.map((n) => n.id),
          previous.map((n) => n.id),
        );
      } finally {
        await gw.close();
      }
    });
  });
}
