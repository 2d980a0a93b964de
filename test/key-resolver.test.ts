// The key cache's logic (TTLs, single flight, invalidation races, size bound) against an in-memory store and a
// manual clock: the store is only the input here, and the clock moves when a test says so, so nothing sleeps and
// every race happens in the order the test sets. One test at the end runs the resolver on the real PostgreSQL store.
import { deviceOf } from './helpers/routes.js';
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { hashKey } from '../src/core/key.js';
import { createLogger } from '../src/log.js';
import { KeyResolver, type Clock, type KeyResolverOptions } from '../src/tunnel/key-resolver.js';
import { openStore } from '../src/store/index.js';
import type { NodeBinding, NodeRecord, NodeStore, RegistryStore, ResolvedKey } from '../src/store/types.js';
import { createTestDatabase } from './helpers/db.js';

/** Time moves only through advance(). It starts far from 0: lru-cache reads a start time of 0 as "no TTL". */
class ManualClock implements Clock {
  private ms = 1_000_000;
  now(): number {
    return this.ms;
  }
  advance(ms: number): void {
    this.ms += ms;
  }
}

interface HeldLookup {
  /** Resolves once the lookup has read its answer. */
  reached: Promise<void>;
  /** Lets the lookup answer with what it read. */
  release(): void;
}

/**
 * Bindings in a Map, counting lookups. A lookup reads the Map when it is made, as the database reads the row; a held
 * lookup then answers only when the test releases it, so a test decides what happens while it is in flight.
 */
class MemoryStore implements NodeStore {
  lookups = 0;
  private readonly rows = new Map<string, NodeRecord>();
  private readonly holds: { until: Promise<void>; reached(): void }[] = [];
  private failures = 0;
  private nextId = 1;

  /** Holds the next lookup not held yet (several calls hold that many lookups, in the order they are made). */
  holdNextLookup(): HeldLookup {
    let release!: () => void;
    let reached!: () => void;
    const until = new Promise<void>((r) => (release = r));
    const reachedP = new Promise<void>((r) => (reached = r));
    this.holds.push({ until, reached });
    return { reached: reachedP, release };
  }

  failNextLookups(n: number): void {
    this.failures = n;
  }

  async findByKeyHash(keyHash: string): Promise<NodeRecord | null> {
    this.lookups++;
    if (this.failures > 0) {
      this.failures--;
      throw new Error('database unavailable (injected)');
    }
    const answer = this.rows.get(keyHash) ?? null;
    const held = this.holds.shift();
    if (held !== undefined) {
      held.reached();
      await held.until;
    }
    return answer;
  }

  /** What the resolver asks: the key's record as the real store's resolveKey shapes it (a device key). */
  async resolveKey(keyHash: string): Promise<ResolvedKey | null> {
    const node = await this.findByKeyHash(keyHash);
    if (node === null) return null;
    return { id: node.id, disabled: false, expiresAt: null, target: { device: node.id }, limits: {}, devices: [{ ...node, labels: {}, enabled: true }] };
  }

  async upsert(b: NodeBinding): Promise<{ node: NodeRecord; created: boolean }> {
    const old = this.rows.get(b.keyHash);
    const now = new Date();
    const node: NodeRecord = {
      id: old?.id ?? this.nextId++,
      name: b.name ?? null,
      ip: b.ip,
      ipv6: b.ipv6 ?? null,
      port: b.port,
      protocol: b.protocol,
      keyHash: b.keyHash,
      headscaleNodeId: b.headscaleNodeId ?? null,
      createdAt: old?.createdAt ?? now,
      updatedAt: now,
    };
    this.rows.set(b.keyHash, node);
    return { node, created: old === undefined };
  }

  async list(): Promise<NodeRecord[]> {
    return [...this.rows.values()];
  }

  async get(id: number): Promise<NodeRecord | null> {
    return [...this.rows.values()].find((n) => n.id === id) ?? null;
  }

  async remove(id: number): Promise<NodeRecord | null> {
    const node = await this.get(id);
    if (node !== null) this.rows.delete(node.keyHash);
    return node;
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {}
}

/** Runs every promise callback that can run now: the store does no I/O, so whatever is not held has then settled. */
const settle = () => new Promise<void>((r) => setImmediate(r));

let store: MemoryStore;
let clock: ManualClock;
let n = 0;
/** A key no other test uses. */
const freshKey = () => `resolver-key-${++n}`;
const newResolver = (opts: KeyResolverOptions) => new KeyResolver(store, opts, { clock });

async function register(key: string, ip = '100.64.0.10', port = 8939): Promise<NodeRecord> {
  return (await store.upsert({ keyHash: hashKey(key), ip, port, protocol: 'http' })).node;
}

describe('KeyResolver', () => {
  beforeEach(() => {
    store = new MemoryStore();
    clock = new ManualClock();
  });

  test('a known key resolves to its route and is then answered from memory', async () => {
    const key = freshKey();
    const node = await register(key, '100.64.0.11', 9000);
    const resolver = newResolver({ max: 100, positiveTtlMs: 60_000, negativeTtlMs: 5_000 });
    const route = await deviceOf(resolver.resolve(key));
    assert.deepEqual(route, { nodeId: node.id, keyId: node.id, gate: null, id: node.id, name: String(node.id), labels: {}, keyHash: hashKey(key), ip: '100.64.0.11', port: 9000, protocol: 'http' });
    for (let i = 0; i < 100; i++) assert.deepEqual(await resolver.resolve(key), route);
    assert.equal(store.lookups, 1);
    // A hit hands back the stored settled promise itself: nothing allocated per connection but the hash.
    assert.equal(resolver.resolve(key), resolver.resolve(key));
  });

  test('resolveHash (what the listeners call, with the hash auth computed) shares the cache with resolve', async () => {
    const key = freshKey();
    const node = await register(key, '100.64.0.21', 9001);
    const resolver = newResolver({ max: 100, positiveTtlMs: 60_000, negativeTtlMs: 5_000 });
    const route = await deviceOf(resolver.resolveHash(hashKey(key)));
    assert.equal(route?.nodeId, node.id);
    assert.equal(resolver.resolve(key), resolver.resolveHash(hashKey(key)));
    assert.equal(store.lookups, 1);
  });

  test('an unknown key is remembered as unknown for the negative TTL only', async () => {
    const key = freshKey();
    const resolver = newResolver({ max: 100, positiveTtlMs: 60_000, negativeTtlMs: 150 });
    assert.equal(await resolver.resolve(key), null);
    for (let i = 0; i < 50; i++) assert.equal(await resolver.resolve(key), null);
    clock.advance(149);
    assert.equal(await resolver.resolve(key), null);
    assert.equal(store.lookups, 1, 'a key-guessing client must not reach the database on every attempt');
    clock.advance(2);
    assert.equal(await resolver.resolve(key), null);
    assert.equal(store.lookups, 2);
  });

  test('a known key is read again after the positive TTL', async () => {
    const key = freshKey();
    await register(key, '100.64.0.12');
    const resolver = newResolver({ max: 100, positiveTtlMs: 150, negativeTtlMs: 5_000 });
    assert.equal((await deviceOf(resolver.resolve(key)))?.ip, '100.64.0.12');
    // Changed behind the resolver's back (as another gateway would): visible after the TTL at the latest.
    await register(key, '100.64.0.13');
    assert.equal((await deviceOf(resolver.resolve(key)))?.ip, '100.64.0.12');
    clock.advance(149);
    assert.equal((await deviceOf(resolver.resolve(key)))?.ip, '100.64.0.12');
    clock.advance(2);
    assert.equal((await deviceOf(resolver.resolve(key)))?.ip, '100.64.0.13');
    assert.equal(store.lookups, 2);
  });

  test('TTLs of 0 turn caching off', async () => {
    const known = freshKey();
    const unknown = freshKey();
    await register(known);
    const resolver = newResolver({ max: 100, positiveTtlMs: 0, negativeTtlMs: 0 });
    for (let i = 0; i < 3; i++) {
      assert.ok(await resolver.resolve(known));
      assert.equal(await resolver.resolve(unknown), null);
    }
    assert.equal(store.lookups, 6);
    assert.equal(resolver.size, 0);
  });

  test('invalidate makes a registration visible to the very next lookup', async () => {
    const key = freshKey();
    const resolver = newResolver({ max: 100, positiveTtlMs: 60_000, negativeTtlMs: 60_000 });
    assert.equal(await resolver.resolve(key), null);
    await register(key, '100.64.0.14');
    assert.equal(await resolver.resolve(key), null, 'without invalidation the negative entry still answers');
    resolver.invalidate(hashKey(key));
    assert.equal((await deviceOf(resolver.resolve(key)))?.ip, '100.64.0.14');
  });

  test('invalidate makes a revocation visible to the very next lookup', async () => {
    const key = freshKey();
    const node = await register(key);
    const resolver = newResolver({ max: 100, positiveTtlMs: 60_000, negativeTtlMs: 60_000 });
    assert.ok(await resolver.resolve(key));
    await store.remove(node.id);
    resolver.invalidate(hashKey(key));
    assert.equal(await resolver.resolve(key), null);
  });

  test('concurrent lookups of one key share a single query', async () => {
    const known = freshKey();
    const unknown = freshKey();
    await register(known, '100.64.0.15');
    const resolver = newResolver({ max: 100, positiveTtlMs: 60_000, negativeTtlMs: 60_000 });
    const holds = [store.holdNextLookup(), store.holdNextLookup()];
    const pending = Array.from({ length: 50 }, (_, i) => resolver.resolve(i % 2 === 0 ? known : unknown));
    await Promise.all(holds.map((h) => h.reached));
    await settle();
    assert.equal(store.lookups, 2, 'while the first query of each key is in flight, the others wait for it');
    for (const h of holds) h.release();
    const results = await Promise.all(pending);
    assert.equal(store.lookups, 2);
    for (const [i, r] of results.entries()) assert.equal((await deviceOf(r))?.ip ?? null, i % 2 === 0 ? '100.64.0.15' : null);
  });

  test('a lookup in flight during a revocation neither answers nor caches what it read before', async () => {
    const key = freshKey();
    const node = await register(key, '100.64.0.16');
    const resolver = newResolver({ max: 100, positiveTtlMs: 60_000, negativeTtlMs: 60_000 });

    const held = store.holdNextLookup();
    const early = resolver.resolve(key);
    const joined = resolver.resolve(key);
    await held.reached; // the lookup has read the row, still bound
    await store.remove(node.id);
    resolver.invalidate(hashKey(key));
    const heldLate = store.holdNextLookup();
    const late = resolver.resolve(key); // starts after the revocation
    await heldLate.reached;
    held.release();
    await settle();
    // The early lookup threw its read away and joined the one that started after the revocation.
    assert.equal(store.lookups, 2);
    heldLate.release();

    assert.equal(await early, null, 'a connection that raced the revocation must not get the revoked route');
    assert.equal(await joined, null);
    assert.equal(await late, null);
    assert.equal(await resolver.resolve(key), null, 'the stale read must not have been cached');
    assert.equal(store.lookups, 2);
  });

  const forgetters: [string, (resolver: KeyResolver, key: string) => void][] = [
    ['invalidate', (resolver, key) => resolver.invalidate(hashKey(key))],
    ['invalidateAll', (resolver) => resolver.invalidateAll()],
  ];
  for (const [how, forget] of forgetters) {
    test(`a lookup in flight during a re-registration answers with the new binding (${how})`, async () => {
      const key = freshKey();
      await register(key, '100.64.0.17');
      const resolver = newResolver({ max: 100, positiveTtlMs: 60_000, negativeTtlMs: 60_000 });
      const held = store.holdNextLookup();
      const early = resolver.resolve(key);
      await held.reached;
      await register(key, '100.64.0.18');
      forget(resolver, key);
      held.release();
      assert.equal((await deviceOf(early))?.ip, '100.64.0.18');
      assert.equal((await deviceOf(resolver.resolve(key)))?.ip, '100.64.0.18');
      assert.equal(store.lookups, 2);
    });
  }

  test('database errors reach the caller and are not cached', async () => {
    const key = freshKey();
    await register(key, '100.64.0.19');
    const resolver = newResolver({ max: 100, positiveTtlMs: 60_000, negativeTtlMs: 60_000 });
    store.failNextLookups(1);
    const a = resolver.resolve(key);
    const b = resolver.resolve(key);
    await assert.rejects(a, /database unavailable/);
    await assert.rejects(b, /database unavailable/);
    assert.equal(store.lookups, 1);
    assert.equal((await deviceOf(resolver.resolve(key)))?.ip, '100.64.0.19');
    assert.equal(store.lookups, 2);
  });

  test('a known key whose entry expired keeps its last route while the database fails; unknown and invalidated keys do not', async () => {
    const known = freshKey();
    const unknown = freshKey();
    const revoked = freshKey();
    await register(known, '100.64.0.31');
    await register(revoked, '100.64.0.32');
    const resolver = newResolver({ max: 100, positiveTtlMs: 150, negativeTtlMs: 150 });
    assert.equal((await deviceOf(resolver.resolve(known)))?.ip, '100.64.0.31');
    assert.equal((await deviceOf(resolver.resolve(revoked)))?.ip, '100.64.0.32');
    assert.equal(await resolver.resolve(unknown), null);
    resolver.invalidate(hashKey(revoked));
    clock.advance(200);
    store.failNextLookups(3);
    assert.equal((await deviceOf(resolver.resolve(known)))?.ip, '100.64.0.31', 'served from the expired entry');
    await assert.rejects(resolver.resolve(unknown), /database unavailable/, 'an unknown key is not answered from memory');
    await assert.rejects(resolver.resolve(revoked), /database unavailable/, 'an invalidated key is not answered from memory');
    assert.equal(store.lookups, 6, 'every expired key was asked for');
    // Once the database answers, the key is read and cached again.
    await register(known, '100.64.0.33');
    assert.equal((await deviceOf(resolver.resolve(known)))?.ip, '100.64.0.33');
    assert.equal((await deviceOf(resolver.resolve(known)))?.ip, '100.64.0.33');
    assert.equal(store.lookups, 7);
  });

  test('the cache holds at most max keys, least recently used out first', async () => {
    const keys = [freshKey(), freshKey(), freshKey()];
    for (const k of keys) await register(k);
    const resolver = newResolver({ max: 2, positiveTtlMs: 60_000, negativeTtlMs: 60_000 });
    for (const k of keys) await resolver.resolve(k);
    assert.equal(resolver.size, 2);
    assert.equal(store.lookups, 3);
    await resolver.resolve(keys[2]!);
    await resolver.resolve(keys[1]!);
    assert.equal(store.lookups, 3);
    await resolver.resolve(keys[0]!);
    assert.equal(store.lookups, 4);
  });

  test('invalidateAll forgets every key', async () => {
    const key = freshKey();
    await register(key);
    const resolver = newResolver({ max: 100, positiveTtlMs: 60_000, negativeTtlMs: 60_000 });
    await resolver.resolve(key);
    await resolver.resolve(freshKey());
    assert.equal(resolver.size, 2);
    resolver.invalidateAll();
    assert.equal(resolver.size, 0);
    await resolver.resolve(key);
    assert.equal(store.lookups, 3);
  });
});

describe('KeyResolver on the PostgreSQL store', () => {
  const log = createLogger('silent');
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let pg: NodeStore & RegistryStore;
  before(async () => {
    db = await createTestDatabase('resolver');
    pg = await openStore({ database: db.target, dataDir: '/unused', log });
  });
  after(async () => {
    await pg?.close();
    await db?.drop();
  });

  test('register, resolve, change, invalidate, resolve again, revoke', async () => {
    const key = 'resolver-key-on-postgres';
    const keyHash = hashKey(key);
    const resolver = new KeyResolver(pg, { max: 100, positiveTtlMs: 60_000, negativeTtlMs: 60_000 });
    assert.equal(await resolver.resolve(key), null);
    resolver.invalidate(keyHash);
    const { node } = await pg.upsert({ keyHash, ip: '100.64.0.30', port: 9002, protocol: 'socks5' });
    assert.deepEqual(await resolver.resolve(key), { nodeId: node.id, keyId: node.id, gate: null, id: node.id, name: String(node.id), labels: {}, keyHash, ip: '100.64.0.30', port: 9002, protocol: 'socks5' });

    await pg.upsert({ keyHash, ip: '100.64.0.31', port: 9002, protocol: 'socks5' });
    assert.equal((await deviceOf(resolver.resolve(key)))?.ip, '100.64.0.30', 'answered from memory until invalidated');
    resolver.invalidate(keyHash);
    assert.deepEqual(await resolver.resolveHash(keyHash), { nodeId: node.id, keyId: node.id, gate: null, id: node.id, name: String(node.id), labels: {}, keyHash, ip: '100.64.0.31', port: 9002, protocol: 'socks5' });

    await pg.remove(node.id);
    resolver.invalidate(keyHash);
    assert.equal(await resolver.resolve(key), null);
  });
});
