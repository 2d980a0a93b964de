// The whole gateway as main.ts assembles it, against real PostgreSQL (a throw-away database) and the embedded
// store, with real curl as the client and the third-party `proxy` package as the device: registration is usable
// at once, revocation refuses at once and cuts open tunnels, bindings survive a restart, and the process stops
// cleanly on SIGTERM.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { pino } from 'pino';
import { loadConfig, type Config } from '../src/config.js';
import { startGateway, type Gateway } from '../src/app.js';
import { curl } from './helpers/curl.js';
import { adminCall, openTunnel } from './helpers/connect-tunnel.js';
import { createTempDir, createTestDatabase, type TestDatabase } from './helpers/db.js';
import { startHttpDevice, startSilentDevice, type Device } from './helpers/devices.js';
import { startEchoTarget, startHttpTarget, type EchoTarget, type Listening } from './helpers/targets.js';
import { waitFor } from '../testbed/wait.js';

const TOKEN = 'test-admin-token-0123456789';
const silent = pino({ level: 'silent' });

function configFor(env: Record<string, string>): Config {
  return loadConfig({
    TAILGATE_LISTEN_HOST: '127.0.0.1',
    TAILGATE_HTTP_PORT: '0',
    TAILGATE_SOCKS_PORT: '0',
    TAILGATE_API_PORT: '0',
    TAILGATE_ADMIN_TOKEN: TOKEN,
    TAILGATE_ALLOW_CIDRS: '127.0.0.0/8,::1/128',
    TAILGATE_CONNECT_TIMEOUT_MS: '2000',
    TAILGATE_HANDSHAKE_TIMEOUT_MS: '2000',
    ...env,
  });
}

const api = (gw: Gateway, method: string, path: string, body?: unknown) => adminCall(gw.ports.api, TOKEN, method, path, body);

const viaHttp = (gw: Gateway, key: string, url: string, extra: string[] = []) => curl(['-x', `http://${key}:${key}@127.0.0.1:${gw.ports.http}`, ...extra, url]);
const viaSocks = (gw: Gateway, key: string, url: string) => curl(['--socks5-hostname', `${key}:${key}@127.0.0.1:${gw.ports.socks}`, url]);

function echoOnce(s: net.Socket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no echo within 3 s')), 3_000);
    s.once('data', (c: Buffer) => {
      clearTimeout(timer);
      resolve(c.toString());
    });
    s.write(text);
  });
}

function closed(s: net.Socket, timeoutMs = 3_000): Promise<void> {
  if (s.destroyed) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('tunnel still open')), timeoutMs);
    s.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

for (const backend of ['postgresql', 'embedded'] as const) {
  describe(`gateway with the ${backend} store`, { timeout: 120_000 }, () => {
    let db: TestDatabase | undefined;
    let dataDir: { dir: string; remove(): Promise<void> };
    let config: Config;
    let gw: Gateway;
    let deviceA: Device;
    let deviceB: Device;
    let target: Listening;
    let echo: EchoTarget;

    before(async () => {
      dataDir = await createTempDir('tailgate-e2e');
      if (backend === 'postgresql') db = await createTestDatabase('gateway_e2e');
      config = configFor({ TAILGATE_DATA_DIR: dataDir.dir, ...(db ? { DATABASE_URL: db.url } : {}) });
      [deviceA, deviceB, target, echo] = await Promise.all([startHttpDevice(), startHttpDevice(), startHttpTarget(), startEchoTarget()]);
      gw = await startGateway(config, silent);
    });

    after(async () => {
      await gw?.close();
      await Promise.all([deviceA?.close(), deviceB?.close(), target?.close(), echo?.close()]);
      await db?.drop();
      await dataDir?.remove();
    });

    test('a registered key works at once through both listeners and egresses through its device', async () => {
      const key = 'KeyAlpha0123456789abcdef';
      const reg = await api(gw, 'POST', '/register', { key, ip: '127.0.0.1', port: deviceA.port, name: 'device-a' });
      assert.equal(reg.status, 201, JSON.stringify(reg.json));
      assert.equal(reg.json.success, true);
      assert.equal(reg.json.node.ip, '127.0.0.1');
      assert.ok(!JSON.stringify(reg.json).includes(key), 'the key is echoed back');

      const plain = await viaHttp(gw, key, `http://127.0.0.1:${target.port}/hello`);
      assert.equal(plain.exitCode, 0, plain.stderr);
      assert.equal(plain.httpCode, 200);
      const socks = await viaSocks(gw, key, `http://localhost:${target.port}/hello`);
      assert.equal(socks.exitCode, 0, socks.stderr);
      assert.equal(socks.httpCode, 200);
      assert.ok(deviceA.seen.some((s) => s.includes(`:${target.port}`)), `device A saw ${JSON.stringify(deviceA.seen)}`);
      assert.ok(deviceA.seen.some((s) => s.startsWith('CONNECT localhost:')), 'the domain reached the device unresolved');
      assert.deepEqual(deviceB.seen, []);
    });

    test('re-binding a key moves new connections to the other device without cutting the open tunnel', async () => {
      const key = 'KeyRebind0123456789abcdef';
      assert.equal((await api(gw, 'POST', '/register', { key, ip: '127.0.0.1', port: deviceA.port })).status, 201);
      const tunnel = await openTunnel(gw.ports.http, key, echo.port);
      assert.equal(await echoOnce(tunnel, 'before'), 'before');

      const again = await api(gw, 'POST', '/register', { key, ip: '127.0.0.1', port: deviceB.port });
      assert.equal(again.status, 200, JSON.stringify(again.json));
      const seenByB = deviceB.seen.length;
      const res = await viaHttp(gw, key, `http://127.0.0.1:${target.port}/after-rebind`);
      assert.equal(res.httpCode, 200, res.stderr);
      assert.ok(deviceB.seen.length > seenByB, 'the next connection went through device B');
      assert.equal(await echoOnce(tunnel, 'still-open'), 'still-open');
      tunnel.destroy();
    });

    test('revocation refuses the key at once and closes its open tunnels', async () => {
      const key = 'KeyRevoke0123456789abcdef';
      const reg = await api(gw, 'POST', '/register', { key, ip: '127.0.0.1', port: deviceA.port });
      const tunnel = await openTunnel(gw.ports.http, key, echo.port);
      assert.equal(await echoOnce(tunnel, 'ping'), 'ping');
      const wasClosed = closed(tunnel);

      const del = await api(gw, 'DELETE', `/nodes/${reg.json.node.id}`);
      assert.equal(del.status, 200, JSON.stringify(del.json));
      await wasClosed;
      const refused = await viaHttp(gw, key, `http://127.0.0.1:${target.port}/`);
      assert.equal(refused.httpCode, 407);
      assert.match(refused.headers['proxy-authenticate'] ?? '', /^Basic realm="tailgate"/);
      const socks = await viaSocks(gw, key, `http://127.0.0.1:${target.port}/`);
      assert.notEqual(socks.exitCode, 0);
      await waitFor('no tunnels left', 3_000, () => gw.tunnels.size === 0, 20);
    });

    test('revoking a key while its tunnel is still being dialled stops that tunnel', async () => {
      const key = 'KeyMidDial0123456789abcdef';
      const silentDevice = await startSilentDevice();
      try {
        const reg = await api(gw, 'POST', '/register', { key, ip: '127.0.0.1', port: silentDevice.port });
        const pending = openTunnel(gw.ports.http, key, echo.port).then(
          () => 'established',
          (err: Error) => err.message,
        );
        await waitFor('the dial to reach the device', 3_000, async () => (await silentDevice.connections()) > 0, 20);
        const startedAt = Date.now();
        assert.equal((await api(gw, 'DELETE', `/nodes/${reg.json.node.id}`)).status, 200);
        const outcome = await pending;
        assert.notEqual(outcome, 'established');
        // Cut by the revocation, not by the 2 s connect timeout.
        assert.ok(Date.now() - startedAt < 1_500, `took ${Date.now() - startedAt} ms: ${outcome}`);
        await waitFor('no tunnels left', 3_000, () => gw.tunnels.size === 0, 20);
      } finally {
        await silentDevice.close();
      }
    });

    test('metrics count tunnels, bytes and auth failures without naming keys', async () => {
      await viaHttp(gw, 'NoSuchKey0123456789', `http://127.0.0.1:${target.port}/`);
      const res = await fetch(`http://127.0.0.1:${gw.ports.api}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
      const text = await res.text();
      assert.equal(res.status, 200);
      assert.match(text, /tailgate_tunnels_total\{listener="http"\} [1-9]/);
      assert.match(text, /tailgate_tunnels_total\{listener="socks5"\} [1-9]/);
      assert.match(text, /tailgate_auth_failures_total\{listener="http"\} [1-9]/);
      assert.match(text, /tailgate_bytes_total\{listener="http",direction="downstream"\} [1-9]/);
      assert.ok(!text.includes('KeyAlpha'), 'a key appears in metrics');
    });

    test('bindings survive a restart', async () => {
      const key = 'KeySurvivor0123456789abc';
      assert.equal((await api(gw, 'POST', '/register', { key, ip: '127.0.0.1', port: deviceA.port })).status, 201);
      await gw.close();
      gw = await startGateway(config, silent);
      const res = await viaHttp(gw, key, `http://127.0.0.1:${target.port}/after-restart`);
      assert.equal(res.exitCode, 0, res.stderr);
      assert.equal(res.httpCode, 200);
      const nodes = await api(gw, 'GET', '/nodes');
      assert.ok(nodes.json.some((n: { ip: string; port: number }) => n.port === deviceA.port));
    });
  });
}

test('the start command brings the gateway up with embedded defaults and SIGTERM stops it cleanly', async () => {
  const dataDir = await createTempDir('tailgate-main');
  const [device, target] = await Promise.all([startHttpDevice(), startHttpTarget()]);
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: new URL('../', import.meta.url),
    env: {
      PATH: process.env.PATH ?? '',
      TAILGATE_DATA_DIR: dataDir.dir,
      TAILGATE_LISTEN_HOST: '127.0.0.1',
      TAILGATE_HTTP_PORT: '0',
      TAILGATE_SOCKS_PORT: '0',
      TAILGATE_API_PORT: '0',
      TAILGATE_ALLOW_CIDRS: '127.0.0.0/8',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  try {
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    await waitFor('tailgate listening', 60_000, () => out.includes('tailgate listening'), 20);
    const line = JSON.parse(out.split('\n').find((l) => l.includes('tailgate listening'))!);
    const apiPort = Number(String(line.api).split(':').pop());
    const httpPort = Number(String(line.http).split(':').pop());
    const key = 'StartKey0123456789abcdef';
    // The issue's own registration command, verbatim but for the token (none configured: loopback only).
    const reg = await curl(['-d', JSON.stringify({ key, ip: '127.0.0.1', port: device.port }), '-H', 'content-type: application/json', `127.0.0.1:${apiPort}/register`]);
    assert.equal(reg.httpCode, 201, reg.stdout);
    const res = await curl(['-x', `http://${key}:${key}@127.0.0.1:${httpPort}`, `http://127.0.0.1:${target.port}/`]);
    assert.equal(res.httpCode, 200, res.stderr);
    assert.ok(!out.includes(key), 'the key reached a log line');

    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 15_000))]);
    assert.equal(code, 0, `exit: ${String(code)}\n${out}`);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    await Promise.all([device.close(), target.close()]);
    await dataDir.remove();
  }
});
