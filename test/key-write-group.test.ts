// Group commit of key writes (src/store/write-group.ts): writes that arrive while one commits share the next
// transaction; when one of them is refused the group is rolled back and each write runs again alone.
// Against the local PostgreSQL server, and through the store on both backends.
import assert from 'node:assert/strict';
import postgres from 'postgres';
import { after, before, describe, test } from 'node:test';
import { hashKey } from '../src/core/key.js';
import { createLogger } from '../src/log.js';
import { openStore, StoreError } from '../src/store/index.js';
import type { NodeChange, NodeStore, RegistryStore } from '../src/store/types.js';
import { WriteGroup } from '../src/store/write-group.js';
import { waitFor } from '../testbed/wait.js';
import { createTempDir, createTestDatabase, type TestDatabase } from './helpers/db.js';
import { outcomeWithin } from './helpers/outcome.js';

const log = createLogger('silent');
type Store = NodeStore & RegistryStore;

describe('WriteGroup on a PostgreSQL server', () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase('write_group');
    await db.sql.unsafe(`CREATE TABLE t (h text PRIMARY KEY);
      CREATE TABLE d (h text UNIQUE DEFERRABLE INITIALLY DEFERRED)`);
  });
  after(async () => db?.drop());

  test('writes asked for while one commits share the next transaction; a lone write has its own', async () => {
    const group = new WriteGroup(db.sql);
    const txid = (h: string) => group.statement({ statement: (q) => q`INSERT INTO t (h) VALUES (${h}) RETURNING txid_current()::text AS x`, result: (rows) => String(rows[0]!.x) });
    const all = await Promise.all(Array.from({ length: 10 }, (_, i) => txid(`shared-${i}`)));
    // The first found nothing in flight and went alone; the nine behind it waited for it and committed as one.
    assert.equal(new Set(all.slice(1)).size, 1, `the queued writes committed in ${new Set(all.slice(1)).size} transactions`);
    assert.notEqual(all[0], all[1]);
    const later = await txid('alone');
    assert.ok(!all.includes(later), 'a write asked for after the group had committed is not part of it');
    assert.equal((await db.sql`SELECT count(*)::int AS n FROM t WHERE h LIKE 'shared-%'`)[0]!.n, 10);
  });

  test('a write of several statements keeps a transaction of its own, in its turn', async () => {
    const group = new WriteGroup(db.sql);
    const txid = (h: string) => group.statement({ statement: (q) => q`INSERT INTO t (h) VALUES (${h}) RETURNING txid_current()::text AS x`, result: (rows) => String(rows[0]!.x) });
    const several = () => group.transaction(async (q) => {
      // Reads what the writes asked for before it wrote: they have committed by now.
      const [row] = await q<{ n: number }[]>`SELECT count(*)::int AS n FROM t WHERE h LIKE 'turn-a%'`;
      await q`INSERT INTO t (h) VALUES (${`turn-seen-${row!.n}`})`;
      return String((await q<{ x: string }[]>`SELECT txid_current()::text AS x`)[0]!.x);
    });
    const ids = await Promise.all([txid('turn-a0'), txid('turn-a1'), txid('turn-a2'), several(), txid('turn-b0'), txid('turn-b1')]);
    assert.equal(new Set(ids).size, 4, `transactions: ${ids.join(' ')}`);
    assert.equal(ids[1], ids[2]);
    assert.equal(ids[4], ids[5]);
    assert.equal((await db.sql`SELECT count(*)::int AS n FROM t WHERE h = 'turn-seen-3'`)[0]!.n, 1);
  });

  test('a refused write fails alone, with its own error, and the others commit', async () => {
    const group = new WriteGroup(db.sql);
    await db.sql`INSERT INTO t (h) VALUES ('taken')`;
    const insert = (h: string) => group.statement({ statement: (q) => q`INSERT INTO t (h) VALUES (${h})`, result: () => h });
    const outcomes = await Promise.allSettled([
      insert('first'),
      insert('g-1'),
      insert('taken'),
      insert('g-2'),
      group.transaction(async () => {
        throw new Error('refused by the caller');
      }),
      insert('g-3'),
    ]);
    assert.deepEqual(
      outcomes.map((o) => o.status),
      ['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'rejected', 'fulfilled'],
    );
    assert.equal(((outcomes[2] as PromiseRejectedResult).reason as { code?: string }).code, '23505');
    assert.equal(((outcomes[4] as PromiseRejectedResult).reason as Error).message, 'refused by the caller');
    const rows = await db.sql<{ h: string }[]>`SELECT h FROM t WHERE h IN ('first', 'g-1', 'g-2', 'g-3') ORDER BY h`;
    assert.deepEqual(
      rows.map((r) => r.h),
      ['first', 'g-1', 'g-2', 'g-3'],
    );
  });

  test('a commit the server refuses writes nothing of the group, and each write is run again alone', async () => {
    const group = new WriteGroup(db.sql);
    // A deferred unique constraint is checked at COMMIT: two writes of the group inserting the same value each
    // succeed, and the commit refuses the transaction. Alone, the first of them commits.
    const insert = (h: string) => group.statement({ statement: (q) => q`INSERT INTO d (h) VALUES (${h}) RETURNING txid_current()::text AS x`, result: (rows) => String(rows[0]!.x) });
    const outcomes = await Promise.allSettled([insert('lead'), insert('dup'), insert('other'), insert('dup')]);
    assert.deepEqual(
      outcomes.map((o) => o.status),
      ['fulfilled', 'fulfilled', 'fulfilled', 'rejected'],
    );
    assert.equal(((outcomes[3] as PromiseRejectedResult).reason as { code?: string }).code, '23505');
    const txids = outcomes.slice(0, 3).map((o) => (o as PromiseFulfilledResult<string>).value);
    assert.equal(new Set(txids).size, 3, 'after the refused commit each write went alone');
    assert.deepEqual(
      (await db.sql<{ h: string }[]>`SELECT h FROM d ORDER BY h`).map((r) => r.h),
      ['dup', 'lead', 'other'],
    );
  });

  test('a group whose connection the server ends fails every write of it, and the next write commits', async () => {
    // The group is pipelined on a reserved connection, its statements queued behind each other: the server ending
    // that connection must answer all of them, or the group and every key write after it would wait for good.
    await db.sql.unsafe('CREATE TABLE IF NOT EXISTS u (h text PRIMARY KEY)');
    const sql = postgres(db.url, { max: 2, onnotice: () => {} });
    const first = postgres(db.url, { max: 1, onnotice: () => {} });
    const second = postgres(db.url, { max: 1, onnotice: () => {} });
    const within5s = (p: Promise<unknown>) => outcomeWithin(p, 5_000);
    try {
      const group = new WriteGroup(sql);
      const insert = (table: 't' | 'u', h: string) => group.statement({ statement: (q) => q`INSERT INTO ${q(table)} (h) VALUES (${h})`, result: () => h });
      // A lone write held on one lock, while five more queue behind it; they go as one group, held on another lock.
      await first`BEGIN`;
      await first`LOCK TABLE t IN ACCESS EXCLUSIVE MODE`;
      await second`BEGIN`;
      await second`LOCK TABLE u IN ACCESS EXCLUSIVE MODE`;
      const lone = within5s(insert('t', 'ended-lone'));
      const waiting = (table: string) =>
        db.sql<{ pid: number }[]>`SELECT pid FROM pg_stat_activity WHERE datname = ${db.name} AND wait_event_type = 'Lock' AND query LIKE ${`INSERT INTO "${table}"%`}`;
      await waitFor('the lone write waiting', 5_000, async () => (await waiting('t')).length === 1, 10);
      const grouped = Array.from({ length: 5 }, (_, i) => insert('u', `ended-${i}`));
      await first`COMMIT`;
      assert.equal(await lone, 'answered');
      const [blocked] = await waitFor('the group waiting', 5_000, async () => {
        const rows = await waiting('u');
        return rows.length === 1 ? rows : undefined;
      }, 10);
      await db.sql`SELECT pg_terminate_backend(${blocked!.pid})`;
      assert.deepEqual(await Promise.all(grouped.map(within5s)), ['failed', 'failed', 'failed', 'failed', 'failed']);
      await second`COMMIT`;
      assert.equal(await within5s(insert('u', 'after-the-end')), 'answered');
      assert.deepEqual((await db.sql<{ h: string }[]>`SELECT h FROM u ORDER BY h`).map((r) => r.h), ['after-the-end']);
    } finally {
      await Promise.all([sql, first, second].map((c) => c.end({ timeout: 1 })));
    }
  });
});

interface Backend {
  open(): Promise<Store>;
  /** Distinct transactions that wrote these key rows (PostgreSQL server only: PGlite is reached through the store). */
  transactions?(ids: number[]): Promise<number>;
  teardown(): Promise<void>;
}

async function postgresBackend(): Promise<Backend> {
  const db = await createTestDatabase('key_writes');
  return {
    open: () => openStore({ database: db.target, dataDir: '/unused', log }),
    transactions: async (ids) => (await db.sql<{ n: number }[]>`SELECT count(DISTINCT xmin::text)::int AS n FROM keys WHERE id = ANY(${ids}::int[])`)[0]!.n,
    teardown: () => db.drop(),
  };
}

async function embeddedBackend(): Promise<Backend> {
  const tmp = await createTempDir('tailgate-key-writes');
  return { open: () => openStore({ database: undefined, dataDir: tmp.dir, log }), teardown: () => tmp.remove() };
}

for (const make of [postgresBackend, embeddedBackend]) {
  describe(`key writes arriving together, ${make === postgresBackend ? 'PostgreSQL server' : 'embedded PGlite'}`, () => {
    let backend: Backend;
    let store: Store;
    before(async () => {
      backend = await make();
      store = await backend.open();
    });
    after(async () => {
      await store?.close();
      await backend?.teardown();
    });

    test('keys created together share one commit, and each is announced', async () => {
      const device = await store.createDevice({ ip: '100.64.9.1', port: 8939, protocol: 'http' });
      const changes: NodeChange[] = [];
      const stop = await store.watch?.((c) => changes.push(c), () => {});
      try {
        const fresh = Array.from({ length: 20 }, (_, i) => hashKey(`together-${i}`));
        const created = await Promise.all(fresh.map((keyHash) => store.createKey({ keyHash, target: { device: device.id } })));
        assert.deepEqual(
          created.map((k) => k.keyHash),
          fresh,
        );
        for (const k of created) assert.deepEqual(await store.getKey(k.id), k);
        if (backend.transactions !== undefined) {
          // The first went alone; the others waited for it and shared a commit (or a few, on a slow machine).
          const n = await backend.transactions(created.map((k) => k.id));
          assert.ok(n < created.length / 2, `20 keys created together took ${n} transactions`);
        }
        if (stop !== undefined) {
          await waitFor('an insert notification for every key', 5_000, () => fresh.every((h) => changes.some((c) => c.op === 'insert' && c.keyHash === h)), 20);
        }
      } finally {
        await stop?.();
      }
    });

    test('each write of a group gets the answer it would have had alone, refusals included', async () => {
      const device = await store.createDevice({ ip: '100.64.9.2', port: 8939, protocol: 'http' });
      const doomed = await store.createKey({ keyHash: hashKey('mixed-doomed'), target: { device: device.id } });
      const changes: NodeChange[] = [];
      const stop = await store.watch?.((c) => changes.push(c), () => {});
      try {
        const fresh = Array.from({ length: 5 }, (_, i) => hashKey(`mixed-${i}`));
        const [created, duplicate, nowhere, removed, missing, renamed] = await Promise.all([
          Promise.all(fresh.map((keyHash) => store.createKey({ keyHash, target: { device: device.id } }))),
          store.createKey({ keyHash: doomed.keyHash, target: { device: device.id } }).catch((err: unknown) => err),
          store.createKey({ keyHash: hashKey('mixed-nowhere'), target: { device: 999_999 } }).catch((err: unknown) => err),
          store.removeKey(doomed.id),
          store.updateKey(999_999, { disabled: true }).catch((err: unknown) => err),
          store.upsert({ keyHash: hashKey('mixed-legacy'), ip: '100.64.9.3', port: 8939, protocol: 'http' }),
        ]);
        for (const k of created) assert.deepEqual(await store.getKey(k.id), k);
        // Writes run in the order they were asked for: the duplicate comes before the removal of the key it copies.
        assert.ok(duplicate instanceof StoreError && duplicate.kind === 'conflict', String(duplicate));
        assert.ok(nowhere instanceof StoreError && nowhere.kind === 'foreign-key', String(nowhere));
        assert.equal(removed?.id, doomed.id);
        assert.equal(await store.getKey(doomed.id), null);
        assert.ok(missing instanceof StoreError && missing.kind === 'not-found', String(missing));
        assert.equal(renamed.created, true);
        assert.equal((await store.findByKeyHash(hashKey('mixed-legacy')))?.id, renamed.node.id);
        assert.equal(await store.resolveKey(hashKey('mixed-nowhere')), null);
        if (stop !== undefined) {
          await waitFor('a notification for every change', 5_000, () => fresh.every((h) => changes.some((c) => c.op === 'insert' && c.keyHash === h)) && changes.some((c) => c.op === 'delete' && c.keyHash === doomed.keyHash), 20);
          assert.ok(!changes.some((c) => c.keyHash === hashKey('mixed-nowhere')), 'a refused write announces nothing');
        }
      } finally {
        await stop?.();
      }
    });
  });
}
