// The `postgres` client as tailgate installs it (scripts/patch-postgres.mjs, run by npm ci), on the real PostgreSQL:
// connections killed by the server (pg_terminate_backend, as a restart or an operator does) in the middle of a query,
// of a transaction and of a reserved connection. Each case ended the process, replayed an old error or ran a statement
// outside its transaction before the fixes.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import postgres from 'postgres';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { waitFor } from '../testbed/wait.js';
import { outcomeWithin } from './helpers/outcome.js';

let db: TestDatabase;
const uncaught: Error[] = [];
const onUncaught = (err: Error) => void uncaught.push(err);

before(async () => {
  db = await createTestDatabase('pgclient');
  await db.sql`CREATE TABLE writes (n integer)`;
  // An exception thrown from the client's timers would end the process; here it is recorded, and each test asserts
  // there was none.
  process.on('uncaughtException', onUncaught);
});

after(async () => {
  process.off('uncaughtException', onUncaught);
  await db?.drop();
});

/** Runs `fn` with a one-connection client of the test database, ended afterwards whatever happens. */
async function withClient(fn: (sql: postgres.Sql) => Promise<void>): Promise<void> {
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  try {
    await fn(sql);
  } finally {
    await sql.end({ timeout: 1 });
  }
}

async function kill(pid: number): Promise<void> {
  const [row] = await db.sql<{ ok: boolean }[]>`SELECT pg_terminate_backend(${pid}) AS ok`;
  assert.equal(row?.ok, true, `backend ${pid} terminated`);
}

async function pidOf(sql: postgres.Sql | postgres.TransactionSql | postgres.ReservedSql): Promise<number> {
  const [row] = await sql<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
  return row!.pid;
}

/** Runs a 10 s statement on `sql`'s connection and kills its backend while it runs; the statement must fail. */
async function killMidQuery(sql: postgres.Sql | postgres.ReservedSql): Promise<void> {
  const pid = await pidOf(sql);
  const slow = sql`SELECT pg_sleep(10)`.then(
    () => 'answered',
    (err: Error) => err.message,
  );
  await running(pid);
  await kill(pid);
  assert.notEqual(await slow, 'answered');
}

/** Until backend `pid` is running a pg_sleep. */
const running = (pid: number) =>
  waitFor('the statement running', 5_000, async () => (await db.sql`SELECT 1 FROM pg_stat_activity WHERE pid = ${pid} AND query LIKE '%pg_sleep%'`).length === 1, 10);

/** Lets the client's timers and immediates run, where the crash came from. */
const settle = () => sleep(200);

describe('the postgres client with connections killed by the server', () => {
  test('is the patched 3.4.9, in both its module forms', () => {
    const require = createRequire(import.meta.url);
    const root = path.resolve(path.dirname(require.resolve('postgres')), '..', '..');
    for (const file of ['src/connection.js', 'src/index.js', 'cjs/src/connection.js', 'cjs/src/index.js']) {
      assert.match(readFileSync(path.join(root, file), 'utf8'), /tailgate-patch/, `${file} carries the fixes (npm ci runs scripts/patch-postgres.mjs)`);
    }
  });

  test('a transaction killed mid-statement fails, the process goes on and the client works after', async () => {
    await withClient(async (sql) => {
      let pid = 0;
      const tx = sql.begin(async (t) => {
        pid = await pidOf(t);
        await t`SELECT pg_sleep(10)`;
      });
      await waitFor('the transaction started', 5_000, () => pid !== 0, 10);
      await running(pid);
      await kill(pid);
      await assert.rejects(tx);
      await settle();
      assert.deepEqual(uncaught.map((e) => e.message), []);
      const [row] = await sql<{ n: number }[]>`SELECT 1 AS n`;
      assert.equal(row?.n, 1);
    });
  });

  test('a query killed mid-way fails, and the next query on the reconnected connection succeeds', async () => {
    await withClient(async (sql) => {
      await killMidQuery(sql);
      await settle();
      // One connection: the next queries run on the same connection object, reconnected.
      for (let i = 0; i < 3; i++) {
        const [row] = await sql<{ n: number }[]>`SELECT ${i}::int AS n`;
        assert.equal(row?.n, i, `query ${i} after the kill`);
      }
      assert.deepEqual(uncaught.map((e) => e.message), []);
    });
  });

  test('a transaction whose connection was killed while it waited runs nothing more, on no connection', async () => {
    await db.sql`TRUNCATE writes`;
    await withClient(async (sql) => {
      let pid = 0;
      let go!: () => void;
      const resume = new Promise<void>((r) => (go = r));
      const tx = sql
        .begin(async (t) => {
          pid = await pidOf(t);
          await t`INSERT INTO writes VALUES (1)`;
          await resume;
          await t`INSERT INTO writes VALUES (2)`;
        })
        .then(
          () => 'committed',
          (err: Error) => err.message,
        );
      await waitFor('the first insert made', 5_000, async () => pid !== 0 && (await db.sql`SELECT 1 FROM pg_stat_activity WHERE pid = ${pid} AND state = 'idle in transaction'`).length === 1, 10);
      await kill(pid);
      // Another query makes the pool reconnect the same (only) connection while the transaction still holds it.
      const other = sql<{ n: number }[]>`SELECT 7 AS n`;
      await settle();
      go();
      assert.notEqual(await tx, 'committed');
      assert.equal((await other)[0]?.n, 7);
      await settle();
      assert.deepEqual((await db.sql<{ n: number }[]>`SELECT n FROM writes ORDER BY n`).map((r) => r.n), [], 'neither insert is there');
      assert.deepEqual(uncaught.map((e) => e.message), []);
    });
  });

  test('statements queued behind a reserved connection that is killed are failed, not left waiting', async () => {
    // The store's key-write group pipelines a whole group on a reserved connection: statements with parameters queue
    // behind each other there, and one left unanswered would hold every later key write of the gateway.
    await withClient(async (sql) => {
      const reserved = await sql.reserve();
      const pid = await pidOf(reserved);
      const outcome = (q: Promise<unknown>) => outcomeWithin(q, 5_000);
      const slow = outcome(reserved`SELECT pg_sleep(10)`);
      const behind = Array.from({ length: 3 }, (_, i) => outcome(reserved`SELECT ${i}::int + ${i}::int AS n`));
      await running(pid);
      await kill(pid);
      assert.deepEqual(await Promise.all([slow, ...behind]), ['failed', 'failed', 'failed', 'failed']);
      reserved.release();
      const [row] = await sql<{ n: number }[]>`SELECT 1 AS n`;
      assert.equal(row?.n, 1);
      assert.deepEqual(uncaught.map((e) => e.message), []);
    });
  });

  test('a reserved connection killed mid-statement refuses its next statement, and its release leaves the pool working', async () => {
    await withClient(async (sql) => {
      const reserved = await sql.reserve();
      await killMidQuery(reserved);
      await assert.rejects(reserved`SELECT 1`, /CONNECTION_CLOSED|terminating connection/);
      reserved.release();
      await settle();
      const answers = await Promise.all(Array.from({ length: 5 }, (_, i) => sql<{ n: number }[]>`SELECT ${i}::int AS n`));
      assert.deepEqual(answers.map((r) => r[0]?.n), [0, 1, 2, 3, 4]);
      assert.deepEqual(uncaught.map((e) => e.message), []);
    });
  });
});
