// The brute-force throttle through the whole gateway on PostgreSQL: curl and raw sockets on both listeners, from
// several loopback source addresses (127.0.0.1 to .4). The store is wrapped to count key lookups, so "refused without
// a lookup" is measured, not assumed.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { startGateway, type Gateway } from '../src/app.js';
import { openStore } from '../src/store/index.js';
import type { NodeStore, RegistryStore } from '../src/store/types.js';
import { adminCall } from './helpers/connect-tunnel.js';
import { curl } from './helpers/curl.js';
import { socksAttempt } from './helpers/socks-client.js';
import { createTempDir, createTestDatabase, type TestDatabase } from './helpers/db.js';
import { startHttpDevice, type Device } from './helpers/devices.js';
import { loopbackConfig } from './helpers/gateway-config.js';
import { startHttpTarget, type Listening } from './helpers/targets.js';

const TOKEN = 'test-admin-token-0123456789';
// The default limit, set explicitly: the shared test configuration turns the throttle off.
const LIMIT = 20;
const COOLDOWN_MS = 3_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const wrongKey = () => `wrong${randomBytes(12).toString('hex')}`;

/** The RFC 1929 status a SOCKS5 client from `from` gets for this key (0 = accepted), and whether it was closed then. */
async function socksAuth(port: number, key: string, from: string): Promise<{ status: number; closedAfter: boolean }> {
  const r = await socksAttempt(port, key, { from });
  return { status: r.auth, closedAfter: r.closed };
}

describe('brute-force throttle per client address', { timeout: 180_000 }, () => {
  let db: TestDatabase;
  let dataDir: { dir: string; remove(): Promise<void> };
  let gw: Gateway;
  let device: Device;
  let web: Listening;
  let key = '';
  let lookups = 0;
  const logLines: string[] = [];

  const viaConnect = (k: string, from: string) => curl(['-p', '--interface', from, '-x', `http://${k}:${k}@127.0.0.1:${gw.ports.http}`, `http://127.0.0.1:${web.port}/`]);
  const viaForward = (k: string, from: string) => curl(['--interface', from, '-x', `http://${k}:${k}@127.0.0.1:${gw.ports.http}`, `http://127.0.0.1:${web.port}/`]);
  const viaSocks = (k: string, from: string) => curl(['--interface', from, '--socks5-hostname', `${k}:${k}@127.0.0.1:${gw.ports.socks}`, `http://127.0.0.1:${web.port}/`]);
  const metric = async (name: string, listener: string) => {
    const text = await gw.metrics.registry.getSingleMetricAsString(name);
    const m = new RegExp(`listener="${listener}"} (\\d+)`).exec(text);
    return m === null ? 0 : Number(m[1]);
  };
  const throttleLogs = (address: string) => logLines.filter((l) => l.includes('client address throttled') && l.includes(`"address":"${address}"`)).length;

  /** The exact 429 a throttled address gets over CONNECT and the forwarder. */
  function assertThrottledHttp(r: Awaited<ReturnType<typeof curl>>, what: string): void {
    assert.equal(r.connectCode || r.httpCode, 429, `${what}: ${r.stderr} ${r.rawHeaders}`);
    assert.equal(r.headers['x-tailgate-error'], 'auth_rate_limited', what);
    assert.equal(r.headers['proxy-status'], 'tailgate; error=http_request_denied; details="auth_rate_limited"', what);
    const retry = Number(r.headers['retry-after']);
    assert.ok(retry >= 1 && retry <= COOLDOWN_MS / 1000, `${what}: Retry-After ${r.headers['retry-after']}`);
    assert.equal(r.headers['proxy-authenticate'], undefined, `${what}: no challenge, the credentials are not the problem`);
  }

  before(async () => {
    dataDir = await createTempDir('tailgate-throttle');
    db = await createTestDatabase('auth_throttle');
    [device, web] = await Promise.all([startHttpDevice(), startHttpTarget()]);
    const log = pino({ level: 'info' }, new Writable({ write: (chunk, _enc, cb) => (logLines.push(String(chunk)), cb()) }));
    const real = await openStore({ database: db.target, dataDir: dataDir.dir, log });
    // Every key lookup the resolver makes goes through resolveKey.
    const store = new Proxy(real, {
      get(target, prop) {
        if (prop === 'resolveKey') return (hash: string) => (lookups++, target.resolveKey(hash));
        const v = Reflect.get(target, prop, target) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    }) as NodeStore & RegistryStore;
    const config = loopbackConfig(TOKEN, { DATABASE_URL: db.url, TAILGATE_DATA_DIR: dataDir.dir, TAILGATE_AUTH_FAILURES_PER_MINUTE: String(LIMIT), TAILGATE_AUTH_COOLDOWN_MS: String(COOLDOWN_MS) });
    gw = await startGateway(config, log, { store });
    const reg = await adminCall(gw.ports.api, TOKEN, 'POST', '/register', { key: 'throttle-device-key', ip: device.host, port: device.port, name: 'throttle-device' });
    assert.equal(reg.status, 201, JSON.stringify(reg.json));
    const devices = await adminCall(gw.ports.api, TOKEN, 'GET', '/devices');
    const made = await adminCall(gw.ports.api, TOKEN, 'POST', '/keys', { device: devices.json[0].id });
    assert.equal(made.status, 201);
    key = made.json.key;
  });

  after(async () => {
    await gw?.close();
    await (gw?.store as { close?: () => Promise<void> } | undefined)?.close?.();
    await device?.close();
    await web?.close();
    await db?.drop();
    await dataDir?.remove();
  });

  test('HTTP: 20 failures, then the 21st attempt is refused with 429 without a lookup, a valid key too; others unaffected; served after the cool-down', async () => {
    const A = '127.0.0.1';
    const B = '127.0.0.2';
    // The valid key works, and is cached from here on (its later success costs no lookup either way).
    assert.equal((await viaConnect(key, A)).connectCode, 200);
    const throttledBefore = await metric('tailgate_auth_throttled_total', 'http');
    // Twenty distinct wrong keys, half over CONNECT and half over the forwarder: each a real lookup, each a 407.
    for (let i = 0; i < LIMIT; i++) {
      const before = lookups;
      const r = i % 2 === 0 ? await viaConnect(wrongKey(), A) : await viaForward(wrongKey(), A);
      assert.equal(r.connectCode || r.httpCode, 407, `failure ${i + 1}: ${r.rawHeaders}`);
      assert.equal(lookups, before + 1, `failure ${i + 1} looked its key up`);
    }
    assert.equal(throttleLogs(A), 1, 'one log line when the cool-down starts');
    const frozen = lookups;
    // The 21st: refused, whatever it carries, on every path, with no lookup.
    assertThrottledHttp(await viaConnect(wrongKey(), A), '21st over CONNECT');
    assertThrottledHttp(await viaForward(wrongKey(), A), 'forwarder');
    assertThrottledHttp(await viaConnect(key, A), 'a valid key from the throttled address');
    assertThrottledHttp(await viaForward(`${key}-session-x`, A), 'parameters from the throttled address');
    const s = await socksAuth(gw.ports.socks, wrongKey(), A);
    assert.deepEqual(s, { status: 1, closedAfter: true }, 'SOCKS5 from the throttled address: RFC 1929 failure, then closed');
    assert.equal((await socksAuth(gw.ports.socks, key, A)).status, 1, 'a valid key over SOCKS5 from the throttled address');
    assert.equal(lookups, frozen, 'no key was looked up while the address was throttled');
    assert.equal(await metric('tailgate_auth_throttled_total', 'http'), throttledBefore + 4);
    assert.equal(await metric('tailgate_auth_throttled_total', 'socks5'), 2);
    assert.equal(throttleLogs(A), 1, 'still one log line: not one per refused attempt');
    // Another address: the valid key works on both listeners.
    assert.equal((await viaConnect(key, B)).connectCode, 200);
    assert.equal((await viaSocks(key, B)).exitCode, 0);
    assert.equal((await viaForward(key, B)).httpCode, 200);
    // After the cool-down the valid key is served again from the same address.
    await sleep(COOLDOWN_MS + 200);
    assert.equal((await viaConnect(key, A)).connectCode, 200);
    assert.equal((await viaSocks(key, A)).exitCode, 0);
  });

  test('SOCKS5 with raw sockets: 20 failures get 0x01 each, then the address is refused without a lookup; after the cool-down it is served', async () => {
    const C = '127.0.0.3';
    const D = '127.0.0.4';
    for (let i = 0; i < LIMIT; i++) {
      const before = lookups;
      assert.deepEqual(await socksAuth(gw.ports.socks, wrongKey(), C), { status: 1, closedAfter: true }, `failure ${i + 1}`);
      assert.equal(lookups, before + 1);
    }
    const frozen = lookups;
    const throttledBefore = await metric('tailgate_auth_throttled_total', 'socks5');
    assert.deepEqual(await socksAuth(gw.ports.socks, key, C), { status: 1, closedAfter: true }, 'the valid key from the throttled address');
    assert.deepEqual(await socksAuth(gw.ports.socks, wrongKey(), C), { status: 1, closedAfter: true });
    assertThrottledHttp(await viaConnect(key, C), 'the HTTP listener shares the count');
    assert.equal(lookups, frozen);
    assert.equal(await metric('tailgate_auth_throttled_total', 'socks5'), throttledBefore + 2);
    assert.equal(throttleLogs(C), 1);
    assert.equal((await socksAuth(gw.ports.socks, key, D)).status, 0, 'another address is unaffected');
    await sleep(COOLDOWN_MS + 200);
    assert.equal((await socksAuth(gw.ports.socks, key, C)).status, 0);
    assert.equal((await viaSocks(key, C)).exitCode, 0);
  });

  test('requests without credentials (a browser before the challenge) are not counted', async () => {
    const E = '127.0.0.5';
    for (let i = 0; i < LIMIT + 5; i++) {
      const r = await curl(['-p', '--interface', E, '-x', `http://127.0.0.1:${gw.ports.http}`, `http://127.0.0.1:${web.port}/`]);
      assert.equal(r.connectCode, 407);
    }
    assert.equal((await viaConnect(key, E)).connectCode, 200);
    assert.equal(throttleLogs(E), 0);
  });

  test('TAILGATE_AUTH_FAILURES_PER_MINUTE=0 turns it off: 30 failures from one address, then the valid key still works', async () => {
    const dir = await createTempDir('tailgate-throttle-off');
    const off = await startGateway(loopbackConfig(TOKEN, { DATABASE_URL: db.url, TAILGATE_DATA_DIR: dir.dir, TAILGATE_AUTH_FAILURES_PER_MINUTE: '0' }), pino({ level: 'silent' }));
    try {
      for (let i = 0; i < 30; i++) assert.equal((await socksAuth(off.ports.socks, wrongKey(), '127.0.0.6')).status, 1);
      assert.equal((await socksAuth(off.ports.socks, key, '127.0.0.6')).status, 0);
      assert.equal(await off.metrics.registry.getSingleMetricAsString('tailgate_auth_throttled_total').then((t) => /listener="socks5"} [1-9]/.test(t)), false);
    } finally {
      await off.close();
      await dir.remove();
    }
  });
});
