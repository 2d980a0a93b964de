// Usage accounting across a database outage, on a PostgreSQL server of its own (initdb + pg_ctl in a temporary
// directory, on a free loopback port) so stopping it disturbs no other test: bytes keep moving while the server is
// down, the deltas are held in memory, and once it is back the totals equal what the client actually moved.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import postgres from 'postgres';
import { pino } from 'pino';
import { startGateway, type Gateway } from '../src/app.js';
import { waitFor } from '../testbed/wait.js';
import { adminCall, openTunnel } from './helpers/connect-tunnel.js';
import { startHttpDevice, type Device } from './helpers/devices.js';
import { loopbackConfig } from './helpers/gateway-config.js';
import { startPgServer, type PgServer } from './helpers/pg-server.js';
import { payload, startEchoTarget, type EchoTarget } from './helpers/targets.js';
import { echoThrough, usageOf } from './helpers/usage.js';

const TOKEN = 'test-admin-token-outage-0123456789';
const KEY = 'usage-outage-key-0001';

let server: PgServer;
let sql: postgres.Sql;
let gw: Gateway;
let device: Device;
let echo: EchoTarget;

before(async () => {
  server = await startPgServer('outage');
  const url = server.url;
  sql = postgres(url, { max: 1, connect_timeout: 5, onnotice: () => {} });
  device = await startHttpDevice('127.0.0.2');
  echo = await startEchoTarget();
  gw = await startGateway(
    loopbackConfig(TOKEN, { DATABASE_URL: url, TAILGATE_USAGE_FLUSH_MS: '100', TAILGATE_CONNECT_TIMEOUT_MS: '3000' }),
    pino({ level: 'silent' }),
  );
});

after(async () => {
  await gw?.close();
  await sql?.end({ timeout: 1 });
  await device?.close();
  await echo?.close();
  await server?.remove();
});

test('bytes moved while the database is down are written once it is back, exactly', async () => {
  const r = await adminCall(gw.ports.api, TOKEN, 'POST', '/register', { key: KEY, ip: device.host, port: device.port, name: 'outage-dev' });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  const keyId: number = r.json.node.id;

  // One long tunnel streaming the whole time, short tunnels alongside (the key stays in the gateway's cache).
  const long = await openTunnel(gw.ports.http, KEY, echo.port);
  let sent = 0;
  let received = 0;
  long.on('data', (c: Buffer) => (received += c.length));
  let streaming = true;
  const chunk = payload(4_096);
  const pump = (async () => {
    while (streaming) {
      long.write(chunk);
      sent += chunk.length;
      await new Promise((res) => setTimeout(res, 5));
    }
  })();
  let short = 0;
  const shortTunnels = async () => {
    for (let i = 0; i < 5; i++) short += (await echoThrough(gw.ports.http, KEY, echo.port, 1_000 + i)).up;
  };

  await shortTunnels();
  await waitFor('usage written while the database is up', 5_000, async () => (await usageOf(sql, 'key_id', keyId)).up > 0);

  await server.stop();
  const stoppedAt = sent;
  await shortTunnels();
  await waitFor('bytes moving with the database down', 5_000, () => sent > stoppedAt + 200_000, 20);
  await waitFor('deltas held in memory', 5_000, async () => {
    await gw.usage.flush();
    return gw.usage.held > 0;
  });
  await server.start();
  await shortTunnels();

  streaming = false;
  await pump;
  await waitFor('every byte echoed', 10_000, () => received === sent, 10);
  long.end();
  await waitFor('every tunnel closed', 5_000, () => gw.usage.openMeters === 0, 10);
  const expected = { up: sent + short, down: received + short, tunnels: 16, refused: 0, failures: 0 };
  const written = await waitFor('the totals written after the outage', 20_000, async () => {
    await gw.usage.flush();
    const u = await usageOf(sql, 'key_id', keyId);
    return gw.usage.held === 0 && u.up === expected.up ? u : undefined;
  });
  assert.deepEqual(written, expected);
  assert.ok(sent - stoppedAt > 200_000, 'bytes moved during the outage');
});

test('past TAILGATE_USAGE_MAX_CELLS new usage is dropped and counted, held buckets keep counting, and all is written once the database is back', async () => {
  const bounded = await startGateway(
    // Flushed by the test only, so no write is in flight while it counts buckets.
    loopbackConfig(TOKEN, { DATABASE_URL: server.url, TAILGATE_USAGE_FLUSH_MS: '3600000', TAILGATE_USAGE_MAX_CELLS: '2' }),
    pino({ level: 'silent' }),
  );
  const metric = async (name: string, label = '') => {
    const text = await bounded.metrics.registry.getSingleMetricAsString(name);
    const m = new RegExp(`^${name}${label.replace(/[{}]/g, '\\$&')} (\\d+)$`, 'm').exec(text);
    return m === null ? NaN : Number(m[1]);
  };
  try {
    const deviceId: number = (await adminCall(bounded.ports.api, TOKEN, 'GET', '/devices')).json[0].id;
    const keys: { id: number; key: string }[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await adminCall(bounded.ports.api, TOKEN, 'POST', '/keys', { device: deviceId, name: `bounded-${i}` });
      assert.equal(r.status, 201, JSON.stringify(r.json));
      keys.push({ id: r.json.id, key: r.json.key });
    }
    const [a, b, c] = keys as [(typeof keys)[0], (typeof keys)[0], (typeof keys)[0]];
    // Each key resolved once while the database is up, so the outage only affects the writing; written one by one,
    // since the bound holds whether the database is up or not.
    for (const k of keys) {
      await echoThrough(bounded.ports.http, k.key, echo.port, 1_000);
      await waitFor('the tunnel closed', 5_000, () => bounded.usage.openMeters === 0, 10);
      await waitFor('its usage written', 5_000, async () => {
        await bounded.usage.flush();
        return bounded.usage.held === 0;
      });
    }

    await server.stop();
    await echoThrough(bounded.ports.http, a.key, echo.port, 10_000);
    await echoThrough(bounded.ports.http, b.key, echo.port, 20_000);
    assert.equal(bounded.usage.held, 2, 'two buckets held: the bound');
    await echoThrough(bounded.ports.http, c.key, echo.port, 30_000);
    await echoThrough(bounded.ports.http, a.key, echo.port, 40_000);
    await bounded.usage.flush();
    assert.equal(bounded.usage.held, 2, 'no third bucket');
    assert.equal(await metric('tailgate_usage_unwritten_cells'), 2);
    assert.equal(await metric('tailgate_usage_dropped_total', '{what="bytes"}'), 60_000, "the third key's bytes, both ways");
    assert.equal(await metric('tailgate_usage_dropped_total', '{what="events"}'), 1, 'its tunnel');

    await server.start();
    await waitFor('the held buckets written', 20_000, async () => {
      await bounded.usage.flush();
      return bounded.usage.held === 0;
    });
    await echoThrough(bounded.ports.http, c.key, echo.port, 5_000);
    await bounded.usage.flush();
    assert.equal(bounded.usage.held, 0);

    // A write held up by a lock on the table: a bucket being written keeps counting in a twin that takes no place
    // under the bound, while a new bucket is still refused.
    await echoThrough(bounded.ports.http, a.key, echo.port, 1_000);
    await echoThrough(bounded.ports.http, b.key, echo.port, 1_000);
    await waitFor('the tunnels closed', 5_000, () => bounded.usage.openMeters === 0, 10);
    let unlock!: () => void;
    let locked!: () => void;
    const isLocked = new Promise<void>((r) => (locked = r));
    const lock = sql.begin(async (tx) => {
      await tx`LOCK TABLE usage_hourly IN EXCLUSIVE MODE`;
      locked();
      await new Promise<void>((r) => (unlock = r));
    });
    await isLocked;
    const writing = bounded.usage.flush();
    await echoThrough(bounded.ports.http, a.key, echo.port, 2_000);
    await echoThrough(bounded.ports.http, c.key, echo.port, 3_000);
    await waitFor('the tunnels closed', 5_000, () => bounded.usage.openMeters === 0, 10);
    assert.equal(bounded.usage.held, 2, 'two buckets in flight; the twin is not counted');
    unlock();
    await lock;
    await writing;
    assert.equal(bounded.usage.held, 1, 'the twin, once its original is written');
    await bounded.usage.flush();
    assert.equal(await metric('tailgate_usage_dropped_total', '{what="bytes"}'), 66_000, 'and the new bucket during the write');
    assert.deepEqual(await usageOf(sql, 'key_id', a.id), { up: 54_000, down: 54_000, tunnels: 5, refused: 0, failures: 0 });
    assert.deepEqual(await usageOf(sql, 'key_id', b.id), { up: 22_000, down: 22_000, tunnels: 3, refused: 0, failures: 0 });
    assert.deepEqual(await usageOf(sql, 'key_id', c.id), { up: 6_000, down: 6_000, tunnels: 2, refused: 0, failures: 0 }, 'what was dropped is missing; the rest is there');
  } finally {
    await bounded.close();
  }
});
