// The key cache in front of a real store (PostgreSQL, throw-away database). A counting decorator around
// the real store shows how often the database is actually asked.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { hashKey } from '../src/core/key.js';
import { createLogger } from '../src/log.js';
import { KeyResolver } from '../src/tunnel/key-resolver.js';
import { openStore } from '../src/store/index.js';
import type { NodeBinding, NodeRecord, NodeStore } from '../src/store/types.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';

/** The real store, counting lookups; can hold a lookup's answer back, or fail the next lookup. */
class CountingStore implements NodeStore {
  lookups = 0;
  private held: { until: Promise<void>; reached: () => void } | undefined;
  private failures = 0;

  constructor(private readonly inner: NodeStore) {}

  /** The next lookup reads the database, then waits for `release` before answering; `reached` resolves once it has read. */
  holdNextLookup(): { reached: Promise<void>; release: () => void } {
    let release!: () => void;
    let reached!: () => void;
    const until = new Promise<void>((r) => (release = r));
    const reachedP = new Promise<void>((r) => (reached = r));
    this.held = { until, reached };
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
    const answer = await this.inner.findByKeyHash(keyHash);
    const held = this.held;
    if (held !== undefined) {
      this.held = undefined;
      held.reached();
      await held.until;
    }
    return answer;
  }

  upsert(b: NodeBinding) {
    return this.inner.upsert(b);
  }
  list() {
    return this.inner.list();
  }
  get(id: number) {
    return this.inner.get(id);
  }
  remove(id: number) {
    return this.inner.remove(id);
  }
  ping() {
    return this.inner.ping();
  }
  close() {
    return this.inner.close();
  }
}

const log = createLogger('silent');
let db: TestDatabase;
let realStore: NodeStore;
let store: CountingStore;
let n = 0;
/** A key no other test uses. */
const freshKey = () => `resolver-key-${process.pid}-${++n}`;

async function register(key: string, ip = '100.64.0.10', port = 8939): Promise<NodeRecord> {
  return (await store.upsert({ keyHash: hashKey(key), ip, port, protocol: 'http' })).node;
}

describe('KeyResolver', () => {
  before(async () => {
    db = await createTestDatabase('resolver');
    realStore = await openStore({ database: db.target, dataDir: '/unused', log });
  });
  after(async () => {
    await realStore?.close();
    await db?.drop();
  });
  beforeEach(() => {
    store = new CountingStore(realStore);
  });

  test('a known key resolves to its route and is then answered from memory', async () => {
    const key = freshKey();
    const node = await register(key, '100.64.0.11', 9000);
    const resolver = new KeyResolver(store, { max: 100, positiveTtlMs: 60_000, negativeTtlMs: 5_000 });
    const route = await resolver.resolve(key);
    assert.deepEqual(route, { nodeId: node.id, keyHash: hashKey(key), ip: '100.64.0.11', port: 9000, protocol: 'http' });
    for (let i = 0; i < 100; i++) assert.deepEqual(await resolver.resolve(key), route);
    assert.equal(store.lookups, 1);
    // A hit hands back the stored settled promise itself: nothing allocated per connection but the hash.
    assert.equal(resolver.resolve(key), resolver.resolve(key));
  });

  test('resolveHash (what the listeners call, with the hash auth computed) shares the cache with resolve', async () => {
    const key = freshKey();
    const node = await register(key, '100.64.0.21', 9001);
    const resolver = new KeyResolver(store, { max: 100, positiveTtlMs: 60_000, negativeTtlMs: 5_000 });
    const route = await resolver.resolveHash(hashKey(key));
    assert.equal(route?.nodeId, node.id);
    assert.equal(resolver.resolve(key), resolver.resolveHash(hashKey(key)));
    assert.equal(store.lookups, 1);
  });

  test('an unknown key is remembered as unknown for the negative TTL only', async () => {
    const key = freshKey();
    const resolver = new KeyResolver(store, { max: 100, positiveTtlMs: 60_000, negativeTtlMs: 150 });
    assert.equal(await resolver.resolve(key), null);
    for (let i = 0; i < 50; i++) assert.equal(await resolver.resolve(key), null);
    assert.equal(store.lookups, 1, 'a key-guessing client must not reach the database on every attempt');
    await sleep(200);
    assert.equal(await resolver.resolve(key), null);
    assert.equal(store.lookups, 2);
  });

  test('a known key is read again after the positive TTL', async () => {
    const key = freshKey();
    await register(key, '100.64.0.12');
    const resolver = new KeyResolver(store, { max: 100, positiveTtlMs: 150, negativeTtlMs: 5_000 });
    assert.equal((await resolver.resolve(key))?.ip, '100.64.0.12');
    // Changed behind the resolver's back (as another gateway would): visible after the TTL at the latest.
    await register(key, '100.64.0.13');
    assert.equal((await resolver.resolve(key))?.ip, '100.64.0.12');
    await sleep(200);
    assert.equal((await resolver.resolve(key))?.ip, '100.64.0.13');
    assert.equal(store.lookups, 2);
  });

  test('TTLs of 0 turn caching off', async () => {
    const known = freshKey();
    const unknown = freshKey();
    await register(known);
    const resolver = new KeyResolver(store, { max: 100, positiveTtlMs: 0, negativeTtlMs: 0 });
    for (let i = 0; i < 3; i++) {
      assert.ok(await resolver.resolve(known));
      assert.equal(await resolver.resolve(unknown), null);
    }
    assert.equal(store.lookups, 6);
    assert.equal(resolver.size, 0);
  });

  test('invalidate makes a registration visible to the very next lookup', async () => {
    const key = freshKey();
    const resolver = new KeyResolver(store, { max: 100, positiveTtlMs: 60_000, negativeTtlMs: 60_000 });
    assert.equal(await resolver.resolve(key), null);
    await register(key, '100.64.0.14');
    assert.equal(await resolver.resolve(key), null, 'without invalidation the negative entry still answers');
    resolver.invalidate(hashKey(key));
    assert.equal((await resolver.resolve(key))?.ip, '100.64.0.14');
  });

  test('invalidate makes a revocation visible to the very next lookup', async () => {
    const key = freshKey();
    const node = await register(key);
    const resolver = new KeyResolver(store, { max: 100, positiveTtlMs: 60_000, negativeTtlMs: 60_000 });
    assert.ok(await resolver.resolve(key));
    await store.remove(node.id);
    resolver.invalidate(hashKey(key));
    assert.equal(await resolver.resolve(key), null);
  });

  test('concurrent lookups of one key share a single query', async () => {
    const known = freshKey();
    const unknown = freshKey();
    await register(known, '100.64.0.15');
    const resolver = new KeyResolver(store, { max: 100, positiveTtlMs: 60_000, negativeTtlMs: 60_000 });
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => resolver.resolve(i % 2 === 0 ? known : unknown)));
    assert.equal(store.lookups, 2);
    results.forEach((r, i) => assert.equal(r?.ip ?? null, i % 2 === 0 ? '100.64.0.15' : null));
  });

  test('a lookup in flight during a revocation neither answers nor caches what it read before', async () => {
    const key = freshKey();
    const node = await register(key, '100.64.0.16');
    const resolver = new KeyResolver(store, { max: 100, positiveTtlMs: 60_000, negativeTtlMs: 60_000 });

    const held = store.holdNextLookup();
    const early = resolver.resolve(key);
    const joined = resolver.resolve(key);
    await held.reached; // the lookup has read the row, still bound
    await store.remove(node.id);
    resolver.invalidate(hashKey(key));
    const late = resolver.resolve(key); // starts after the revocation
    held.release();

    assert.equal(await early, null, 'a connection that raced the revocation must not get the revoked route');
    assert.equal(await joined, null);
    assert.equal(await late, null);
    assert.equal(await resolver.resolve(key), null, 'the stale read must not have been cached');
    assert.equal(store.lookups, 2);
  });

  test('a lookup in flight during a re-registration answers with the new binding', async () => {
    const key = freshKey();
    await register(key, '100.64.0.17');
    const resolver = new KeyResolver(store, { max: 100, positiveTtlMs: 60_000, negativeTtlMs: 60_000 });
    const held = store.holdNextLookup();
    const early = resolver.resolve(key);
    await held.reached;
    await register(key, '100.64.0.18');
    resolver.invalidate(hashKey(key));
    held.release();
    assert.equal((await early)?.ip, '100.64.0.18');
    assert.equal((await resolver.resolve(key))?.ip, '100.64.0.18');
  });

  test('database errors reach the caller and are not cached', async () => {
    const key = freshKey();
    await register(key, '100.64.0.19');
    const resolver = new KeyResolver(store, { max: 100, positiveTtlMs: 60_000, negativeTtlMs: 60_000 });
    store.failNextLookups(1);
    const a = resolver.resolve(key);
    const b = resolver.resolve(key);
    await assert.rejects(a, /database unavailable/);
    await assert.rejects(b, /database unavailable/);
    assert.equal(store.lookups, 1);
    assert.equal((await resolver.resolve(key))?.ip, '100.64.0.19');
    assert.equal(store.lookups, 2);
  });

  test('the cache holds at most max keys, least recently used out first', async () => {
    const keys = [freshKey(), freshKey(), freshKey()];
    for (const k of keys) await register(k);
    const resolver = new KeyResolver(store, { max: 2, positiveTtlMs: 60_000, negativeTtlMs: 60_000 });
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
    const resolver = new KeyResolver(store, { max: 100, positiveTtlMs: 60_000, negativeTtlMs: 60_000 });
    await resolver.resolve(key);
    await resolver.resolve(freshKey());
    assert.equal(resolver.size, 2);
    resolver.invalidateAll();
    assert.equal(resolver.size, 0);
    await resolver.resolve(key);
    assert.equal(store.lookups, 3);
  });
});
