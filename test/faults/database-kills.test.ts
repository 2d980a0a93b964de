// The gateway's database connections ended by the server again and again (pg_terminate_backend every 30 ms, as a
// failover or an operator does) while the API writes pools (transactions) and keys (the key-write group). The gateway
// must go on: every call answered (its result, or 503 while the database is taken for down; a write cut mid-commit
// may have committed, so a later call on its pool may find it gone), none hanging, no exception out of the PostgreSQL
// client's timers (the test runner fails the test on one), and afterwards the API works and holds what it said it made.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import postgres from 'postgres';
import { pino } from 'pino';
import { startGateway, type Gateway } from '../../src/app.js';
import { waitFor } from '../../testbed/wait.js';
import { adminCall } from '../helpers/connect-tunnel.js';
import { ADMIN_DATABASE_URL, createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { loopbackConfig } from '../helpers/gateway-config.js';

const TOKEN = 'test-admin-token-dbkills-0123456789';
const KILLING_MS = 6_000;
/** Often enough that most calls meet a killed connection, seldom enough that some get through between kills. */
const KILL_EVERY_MS = 300;
/** The API's database timeout (TAILGATE_DATABASE_TIMEOUT_MS, 5 s) and a margin for a loaded machine. */
const ANSWER_MS = 7_000;

let db: TestDatabase;
let gw: Gateway;
/** Rejections nobody handled: a Node process ends on the first one by default. */
const unhandled: string[] = [];
const onUnhandled = (err: unknown) => void unhandled.push(String((err as Error)?.message ?? err));

before(async () => {
  process.on('unhandledRejection', onUnhandled);
  db = await createTestDatabase('dbkills');
  gw = await startGateway(loopbackConfig(TOKEN, { DATABASE_URL: db.url }), pino({ level: 'silent' }));
});

after(async () => {
  process.off('unhandledRejection', onUnhandled);
  await gw?.close();
  await db?.drop();
});

test('connections killed under API writes: every call answered, the gateway goes on, nothing it confirmed is lost', { timeout: 120_000 }, async () => {
  const devices: number[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await adminCall(gw.ports.api, TOKEN, 'POST', '/register', { key: `dbkills-device-key-000${i}`, ip: '127.0.0.2', port: 9001 + i, name: `dbkills-${i}` });
    assert.equal(r.status, 201, JSON.stringify(r.json));
  }
  for (const d of (await adminCall(gw.ports.api, TOKEN, 'GET', '/devices')).json) devices.push(d.id);
  assert.equal(devices.length, 3);

  const killer = postgres(ADMIN_DATABASE_URL, { max: 1, onnotice: () => {} });
  let killing = true;
  let kills = 0;
  const killLoop = (async () => {
    while (killing) {
      const ended = await killer`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ${db.name} AND pid <> pg_backend_pid()`;
      kills += ended.length;
      await sleep(KILL_EVERY_MS);
    }
  })();

  const statuses = new Map<number, number>();
  const failures: string[] = [];
  const keysMade: number[] = [];
  const poolsKept = new Set<number>();
  let n = 0;
  const slow: string[] = [];
  const call = async (method: string, path: string, body?: unknown) => {
    const t0 = performance.now();
    try {
      // Longer than the bound asserted below, so that a late answer is measured rather than cut off.
      const r = await adminCall(gw.ports.api, TOKEN, method, path, body, 20_000);
      const ms = performance.now() - t0;
      if (ms > ANSWER_MS) slow.push(`${method} ${path} ${r.status} ${Math.round(ms)} ms ${JSON.stringify(r.json).slice(0, 120)}`);
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
      return r;
    } catch (err) {
      failures.push(`${method} ${path}: ${(err as Error).message} after ${Math.round(performance.now() - t0)} ms`);
      return undefined;
    }
  };
  const worker = async (w: number) => {
    const until = performance.now() + KILLING_MS;
    while (performance.now() < until) {
      const i = n++;
      const created = await call('POST', '/pools', { name: `p-${w}-${i}`, devices: devices.slice(0, 1 + (i % 3)) });
      if (created?.status === 201) {
        const id = created.json.id as number;
        const patched = await call('PATCH', `/pools/${id}`, { devices: devices.slice(i % 3) });
        if (i % 2 === 0) await call('DELETE', `/pools/${id}`);
        else if (patched?.status === 200) poolsKept.add(id);
      }
      const key = await call('POST', '/keys', { device: devices[i % 3], name: `k-${w}-${i}` });
      if (key?.status === 201) keysMade.push(key.json.id as number);
    }
  };
  await Promise.all(Array.from({ length: 6 }, (_, w) => worker(w)));
  killing = false;
  await killLoop;
  await killer.end({ timeout: 1 });

  const figures = { kills, calls: n, statuses: Object.fromEntries(statuses), keysMade: keysMade.length, poolsKept: poolsKept.size };
  console.log(`database-kills figures ${JSON.stringify(figures)}`);
  assert.deepEqual(failures, [], 'every call answered');
  assert.deepEqual(slow, [], `every call answered within ${ANSWER_MS} ms`);
  assert.ok(kills >= 20, `the server ended the gateway's connections ${kills} times`);
  assert.deepEqual([...statuses.keys()].filter((s) => ![200, 201, 204, 404, 503].includes(s)), [], JSON.stringify(figures));
  assert.ok((statuses.get(201) ?? 0) > 0 && (statuses.get(503) ?? 0) > 0, `some calls went through, some met a killed connection: ${JSON.stringify(figures)}`);

  // The database is reachable again: the API writes, and holds everything it confirmed.
  assert.deepEqual(unhandled, [], 'no rejection left unhandled');
  const fresh = await waitFor('the API creating pools again', 30_000, async () => {
    const r = await call('POST', '/pools', { name: 'after-the-kills', devices });
    return r?.status === 201 ? r : undefined;
  }, 100);
  assert.deepEqual([...failures, ...slow], [], `every call after the kills answered within ${ANSWER_MS} ms`);
  assert.deepEqual([...fresh.json.devices].sort(), [...devices].sort());
  const keyIds = new Set((await call('GET', '/keys'))!.json.map((k: { id: number }) => k.id));
  assert.deepEqual(keysMade.filter((id) => !keyIds.has(id)), [], 'every key answered 201 is there');
  const poolIds = new Set((await call('GET', '/pools'))!.json.map((p: { id: number }) => p.id));
  assert.deepEqual([...poolsKept].filter((id) => !poolIds.has(id)), [], 'every pool created and updated (200) is there');
  const key = await call('POST', '/keys', { device: devices[0], name: 'after-the-kills' });
  assert.equal(key?.status, 201, JSON.stringify(key?.json));
  assert.deepEqual(unhandled, [], 'no rejection left unhandled');
});
