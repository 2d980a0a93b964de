// Per-key limits through the whole gateway (app.ts), keys made over the API, curl and raw sockets as clients, on real
// PostgreSQL and on the embedded store: every limit refused with the documented answer on both listeners and the
// forwarder, limits changed live, the bandwidth cap measured over time, and a tunnel cut when its key's quota runs out.
import assert from 'node:assert/strict';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { after, before, describe, test } from 'node:test';
import type { Gateway } from '../src/app.js';
import { periodBounds } from '../src/tunnel/quota.js';
import { waitFor } from '../testbed/wait.js';
import { adminCall, openTunnel } from './helpers/connect-tunnel.js';
import { curl } from './helpers/curl.js';
import { socksAttempt } from './helpers/socks-client.js';
import { loopbackConfig } from './helpers/gateway-config.js';
import type { TestDatabase } from './helpers/db.js';
import type { Device } from './helpers/devices.js';
import { GatewayScene } from './helpers/gateway-scene.js';
import { closeServer, listen, type EchoTarget, type Listening } from './helpers/targets.js';

const TOKEN = 'test-admin-token-0123456789';
const CHECK_MS = 250;
const MiB = 1024 * 1024;

/** Sends bytes as fast as the connection takes them, until it closes. */
async function startSource(): Promise<Listening> {
  const chunk = Buffer.alloc(64 * 1024, 7);
  const open = new Set<net.Socket>();
  const server = net.createServer((s) => {
    open.add(s);
    s.on('close', () => open.delete(s));
    s.on('error', () => s.destroy());
    const pump = () => {
      while (!s.destroyed && s.write(chunk));
    };
    s.on('drain', pump);
    pump();
  });
  const port = await listen(server, '127.0.0.1');
  return { port, host: '127.0.0.1', close: () => closeAll(server, open) };
}

function closeAll(server: net.Server, open: Set<net.Socket>): Promise<void> {
  for (const s of open) s.destroy();
  return closeServer(server);
}

/** Reads and counts whatever arrives. */
async function startSink(): Promise<Listening & { received(): number }> {
  let n = 0;
  const open = new Set<net.Socket>();
  const server = net.createServer((s) => {
    open.add(s);
    s.on('close', () => open.delete(s));
    s.on('error', () => s.destroy());
    s.on('data', (c: Buffer) => (n += c.length));
  });
  const port = await listen(server, '127.0.0.1');
  return { port, host: '127.0.0.1', received: () => n, close: () => closeAll(server, open) };
}

/** The SOCKS5 reply code a CONNECT to 127.0.0.1:port gets with this key. */
async function socksReply(socksPort: number, key: string, port: number): Promise<number> {
  const r = await socksAttempt(socksPort, key, { connectPort: port });
  if (r.auth !== 0) throw new Error(`SOCKS auth refused: ${r.auth}`);
  return r.reply;
}

/** Reads from a tunnel and counts, with the count at given times. */
function counter(s: net.Socket): { bytes(): number; closed: Promise<void> } {
  let n = 0;
  s.on('data', (c: Buffer) => (n += c.length));
  const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
  s.on('error', () => {});
  return { bytes: () => n, closed };
}

/** A gateway on loopback ports chosen by the system, devices allowed anywhere on 127.0.0.0/8. */
function gatewayConfig(env: Record<string, string>) {
  return loopbackConfig(TOKEN, env);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const backend of ['postgresql', 'embedded'] as const) {
  describe(`limits with the ${backend} store`, { timeout: 120_000 }, () => {
    let scene: GatewayScene<TestDatabase | undefined>;
    let gw: Gateway;
    let device: Device;
    let web: Listening;
    let echo: EchoTarget;
    let deviceId = 0;

    const api = (method: string, path: string, body?: unknown) => adminCall(gw.ports.api, TOKEN, method, path, body);
    const viaConnect = (key: string) => curl(['-p', '-x', `http://${key}:${key}@127.0.0.1:${gw.ports.http}`, `http://127.0.0.1:${web.port}/`]);
    const viaForward = (key: string) => curl(['-x', `http://${key}:${key}@127.0.0.1:${gw.ports.http}`, `http://127.0.0.1:${web.port}/`]);
    const viaSocks = (key: string) => curl(['--socks5-hostname', `${key}:${key}@127.0.0.1:${gw.ports.socks}`, `http://127.0.0.1:${web.port}/`]);
    async function makeKey(limits: unknown): Promise<{ id: number; key: string }> {
      const r = await api('POST', '/keys', { device: deviceId, limits });
      assert.equal(r.status, 201, JSON.stringify(r.json));
      return { id: r.json.id, key: r.json.key };
    }
    /** Every answer a refused key gets: 429 with the same headers over CONNECT and the forwarder, SOCKS5 0x02. */
    async function assertRefused(key: string, label: string, proxyStatus: string, retryAfter: (v: string | undefined) => void): Promise<void> {
      for (const r of [await viaConnect(key), await viaForward(key)]) {
        const code = r.connectCode || r.httpCode;
        assert.equal(code, 429, `${label}: ${r.stderr} ${r.rawHeaders}`);
        assert.equal(r.headers['x-tailgate-error'], label);
        assert.equal(r.headers['proxy-status'], proxyStatus);
        retryAfter(r.headers['retry-after']);
      }
      assert.equal(await socksReply(gw.ports.socks, key, web.port), 0x02, `${label} over SOCKS5`);
    }
    const refusals = async (reason: string) => {
      const text = await gw.metrics.registry.getSingleMetricAsString('tailgate_limit_refusals_total');
      const m = new RegExp(`reason="${reason}"} (\\d+)`).exec(text);
      return m === null ? 0 : Number(m[1]);
    };
    const openCount = (id: number) => gw.limits.get(id)?.open ?? 0;

    before(async () => {
      scene = await GatewayScene.open({ label: 'limits_e2e', store: backend });
      ({ device, web, echo } = scene);
      const { db, dataDir } = scene;
      const config = gatewayConfig({ ...(db ? { DATABASE_URL: db.url } : {}), TAILGATE_DATA_DIR: dataDir, TAILGATE_QUOTA_CHECK_MS: String(CHECK_MS) });
      gw = await scene.startGateway(config);
      deviceId = await scene.registerDevice(api, `limits-device-${backend}`, 'limits-device');
    });

    after(() => scene?.close());

    test('maxTunnels: the next tunnel is refused on every front end while the limit is held, and admitted once one closes; nothing leaks', async () => {
      const { id, key } = await makeKey({ maxTunnels: 2 });
      const before = await refusals('tunnel-limit');
      // Failed dials and forwarded requests release their place.
      const closedPort = await (async () => {
        const s = net.createServer();
        const port = await listen(s, '127.0.0.1');
        await closeServer(s);
        return port;
      })();
      for (let i = 0; i < 3; i++) assert.equal((await curl(['-p', '-x', `http://${key}:${key}@127.0.0.1:${gw.ports.http}`, `http://127.0.0.1:${closedPort}/`])).connectCode, 502);
      for (let i = 0; i < 3; i++) assert.equal((await viaForward(key)).httpCode, 200);
      assert.equal(openCount(id), 0);
      const held = [await openTunnel(gw.ports.http, key, echo.port), await openTunnel(gw.ports.http, key, echo.port)];
      try {
        assert.equal(openCount(id), 2);
        await assertRefused(key, 'tunnel-limit', 'tailgate; error=connection_limit_reached', (v) => assert.equal(v, undefined, 'no time is known'));
        assert.equal(await refusals('tunnel-limit'), before + 3);
        held.pop()!.destroy();
        await waitFor('the closed tunnel released its place', 3_000, () => openCount(id) === 1, 20);
        assert.equal((await viaConnect(key)).connectCode, 200);
      } finally {
        for (const s of held) s.destroy();
      }
      await waitFor('every place released', 3_000, () => openCount(id) === 0, 20);
    });

    test('tunnelsPerSecond with tunnelBurst: the burst passes, the next is refused with Retry-After, a token later it passes', async () => {
      const { key } = await makeKey({ tunnelsPerSecond: 1, tunnelBurst: 2 });
      assert.equal((await viaConnect(key)).connectCode, 200);
      assert.equal((await viaConnect(key)).connectCode, 200);
      const started = performance.now();
      // Each refused attempt takes no token: three refusals in a row, and the bucket still refills in about a second.
      await assertRefused(key, 'rate-limit', 'tailgate; error=connection_limit_reached', (v) => assert.equal(v, '1'));
      await sleep(Math.max(0, 1_100 - (performance.now() - started)));
      assert.equal((await viaSocks(key)).exitCode, 0);
    });

    test('limits changed live: a lower maxTunnels refuses the next connection, removing it admits again', async () => {
      const { id, key } = await makeKey({});
      const held = await openTunnel(gw.ports.http, key, echo.port);
      try {
        assert.equal(gw.limits.get(id), undefined, 'a key without limits has no gate');
        const r = await api('PATCH', `/keys/${id}`, { limits: { maxTunnels: 1 } });
        assert.equal(r.status, 200, JSON.stringify(r.json));
        assert.deepEqual(r.json.limits, { maxTunnels: 1 });
        // The open tunnel was admitted before the limit: it holds no place, so one more fits.
        const second = await openTunnel(gw.ports.http, key, echo.port);
        try {
          assert.equal((await viaConnect(key)).connectCode, 429);
        } finally {
          second.destroy();
        }
        await waitFor('released', 3_000, () => openCount(id) === 0, 20);
        assert.equal((await api('PATCH', `/keys/${id}`, { limits: { maxTunnels: null } })).status, 200);
        assert.equal((await viaConnect(key)).connectCode, 200);
      } finally {
        held.destroy();
      }
    });

    test('quota: exhausted mid-tunnel, the tunnel is cut within one check interval at its rate; then every front end answers quota_exceeded', async () => {
      const source = await startSource();
      try {
        const quota = 2 * MiB;
        const rate = MiB;
        const { id, key } = await makeKey({ bytesPerSecondDown: rate, quota: { bytes: quota, period: 'day' } });
        const t = counter(await openTunnel(gw.ports.http, key, source.port));
        const started = performance.now();
        await Promise.race([t.closed, sleep(10_000).then(() => assert.fail('the tunnel was not cut'))]);
        const seconds = (performance.now() - started) / 1000;
        const over = t.bytes() - quota;
        // The bound: what the tunnel can move in one check interval at its capped rate, plus one bucket.
        const bound = (rate * CHECK_MS) / 1000 + Math.max(64 * 1024, rate / 10);
        console.log(`# quota ${quota} B at ${rate} B/s, check every ${CHECK_MS} ms: cut after ${seconds.toFixed(2)} s, ${t.bytes()} B received, ${over} B past the quota (bound ${bound} B)`);
        assert.ok(over >= 0, `cut before the quota was used: ${t.bytes()}`);
        assert.ok(over <= bound, `${over} B past the quota, bound ${bound}`);
        const view = await api('GET', `/keys/${id}`);
        assert.equal(view.json.quota.exhausted, true);
        assert.ok(view.json.quota.used >= quota);
        const { resetsAt } = periodBounds('day', Date.now());
        await assertRefused(key, 'quota_exceeded', 'tailgate; error=http_request_denied; details="quota_exceeded"', (v) => {
          const s = Number(v);
          assert.ok(Math.abs(s - (resetsAt! - Date.now()) / 1000) < 5, `Retry-After ${v}: until the next UTC midnight`);
        });
        // A bigger quota admits again.
        assert.equal((await api('PATCH', `/keys/${id}`, { limits: { quota: { bytes: 100 * MiB, period: 'day' } } })).status, 200);
        assert.equal((await viaConnect(key)).connectCode, 200);
      } finally {
        await source.close();
      }
    });
  });
}

describe('bandwidth caps, measured (PostgreSQL)', { timeout: 120_000 }, () => {
  let scene: GatewayScene;
  let gw: Gateway;
  let device: Device;
  let source: Listening;
  let sink: Listening & { received(): number };
  let deviceId = 0;
  const api = (method: string, path: string, body?: unknown) => adminCall(gw.ports.api, TOKEN, method, path, body);

  before(async () => {
    scene = await GatewayScene.open({ label: 'limits_caps' });
    device = scene.device;
    source = scene.own('the source', await startSource(), (s) => s.close());
    sink = scene.own('the sink', await startSink(), (s) => s.close());
    gw = await scene.startGateway(gatewayConfig({ DATABASE_URL: scene.db.url }));
    deviceId = await scene.registerDevice(api, 'caps-device-key-1');
  });

  after(() => scene?.close());

  async function capped(limits: unknown): Promise<{ id: number; key: string }> {
    const r = await api('POST', '/keys', { device: deviceId, limits });
    assert.equal(r.status, 201, JSON.stringify(r.json));
    return { id: r.json.id, key: r.json.key };
  }

  test('one tunnel and 16 tunnels sharing a cap: within 5 % over 10 s (both keys at once)', async () => {
    const one = await capped({ bytesPerSecondDown: 4 * MiB });
    const many = await capped({ bytesPerSecondDown: 8 * MiB });
    const a = [counter(await openTunnel(gw.ports.http, one.key, source.port))];
    const b: ReturnType<typeof counter>[] = [];
    for (let i = 0; i < 16; i++) b.push(counter(await openTunnel(gw.ports.http, many.key, source.port)));
    const sum = (cs: ReturnType<typeof counter>[]) => cs.reduce((n, c) => n + c.bytes(), 0);
    try {
      await sleep(1_000);
      const t0 = performance.now();
      const [a0, b0] = [sum(a), sum(b)];
      await sleep(10_000);
      const s = (performance.now() - t0) / 1000;
      const rateA = (sum(a) - a0) / s;
      const rateB = (sum(b) - b0) / s;
      const perTunnel = b.map((c) => c.bytes());
      console.log(`# 1 tunnel at 4 MiB/s: ${(rateA / MiB).toFixed(3)} MiB/s; 16 tunnels at 8 MiB/s: ${(rateB / MiB).toFixed(3)} MiB/s (per tunnel ${Math.min(...perTunnel)}..${Math.max(...perTunnel)} B), over ${s.toFixed(2)} s`);
      assert.ok(Math.abs(rateA / (4 * MiB) - 1) <= 0.05, `one tunnel: ${rateA} B/s`);
      assert.ok(Math.abs(rateB / (8 * MiB) - 1) <= 0.05, `16 tunnels: ${rateB} B/s`);
    } finally {
      gw.tunnels.closeAll();
    }
  });

  test('a new cap applies to open tunnels, and the upload cap holds too', async () => {
    const { id, key } = await capped({ bytesPerSecondDown: 512 * 1024 });
    const t = counter(await openTunnel(gw.ports.http, key, source.port));
    const rateOver = async (ms: number) => {
      const [n0, t0] = [t.bytes(), performance.now()];
      await sleep(ms);
      return (t.bytes() - n0) / ((performance.now() - t0) / 1000);
    };
    await sleep(300);
    const slow = await rateOver(2_000);
    assert.equal((await api('PATCH', `/keys/${id}`, { limits: { bytesPerSecondDown: 2 * MiB } })).status, 200);
    await sleep(300);
    const fast = await rateOver(2_000);
    console.log(`# cap changed on an open tunnel: ${(slow / 1024).toFixed(0)} KiB/s at 512 KiB/s, then ${(fast / 1024).toFixed(0)} KiB/s at 2048 KiB/s`);
    assert.ok(Math.abs(slow / (512 * 1024) - 1) <= 0.1, `before: ${slow}`);
    assert.ok(Math.abs(fast / (2 * MiB) - 1) <= 0.1, `after: ${fast}`);
    gw.tunnels.closeAll();

    // Upload: the client writes as fast as the tunnel takes it, the sink counts.
    const up = await capped({ bytesPerSecondUp: MiB });
    const s = await openTunnel(gw.ports.http, up.key, sink.port);
    s.on('error', () => {});
    const chunk = Buffer.alloc(64 * 1024, 1);
    const pump = () => {
      while (!s.destroyed && s.write(chunk));
    };
    s.on('drain', pump);
    pump();
    await sleep(500);
    const [n0, t0] = [sink.received(), performance.now()];
    await sleep(3_000);
    const rate = (sink.received() - n0) / ((performance.now() - t0) / 1000);
    console.log(`# upload at 1 MiB/s: ${(rate / MiB).toFixed(3)} MiB/s`);
    assert.ok(Math.abs(rate / MiB - 1) <= 0.1, `upload: ${rate}`);
    s.destroy();
  });
});

describe('one quota shared by two gateways on one PostgreSQL', { timeout: 120_000 }, () => {
  const FLUSH_MS = 500;
  let scene: GatewayScene;
  let db: TestDatabase;
  let gws: Gateway[] = [];
  let device: Device;
  let source: Listening;

  before(async () => {
    scene = await GatewayScene.open({ label: 'limits_shared_quota' });
    ({ db, device } = scene);
    source = scene.own('the source', await startSource(), (s) => s.close());
    const env = { DATABASE_URL: db.url, TAILGATE_QUOTA_CHECK_MS: String(CHECK_MS), TAILGATE_USAGE_FLUSH_MS: String(FLUSH_MS) };
    gws = [await scene.startGateway(gatewayConfig(env)), await scene.startGateway(gatewayConfig(env))];
  });

  after(() => scene?.close());

  test('both gateways cut their tunnel and refuse new ones; the overshoot stays within its bound', async () => {
    const [a, b] = gws as [Gateway, Gateway];
    const r = await adminCall(a.ports.api, TOKEN, 'POST', '/register', { key: 'shared-quota-device', ip: device.host, port: device.port });
    assert.equal(r.status, 201);
    const deviceId = (await adminCall(a.ports.api, TOKEN, 'GET', '/devices')).json[0].id;
    const quota = 4 * MiB;
    const rate = MiB;
    // The cap is per gateway: each tunnel moves about `rate`, the key 2 × rate together.
    const made = await adminCall(a.ports.api, TOKEN, 'POST', '/keys', { device: deviceId, limits: { bytesPerSecondDown: rate, quota: { bytes: quota, period: 'month' } } });
    assert.equal(made.status, 201, JSON.stringify(made.json));
    const { id, key } = made.json as { id: number; key: string };
    const tunnels = [counter(await openTunnel(a.ports.http, key, source.port)), counter(await openTunnel(b.ports.http, key, source.port))];
    const started = performance.now();
    const cutAt: number[] = [];
    await Promise.race([
      Promise.all(tunnels.map((t) => t.closed.then(() => cutAt.push((performance.now() - started) / 1000)))),
      sleep(20_000).then(() => assert.fail('the tunnels were not cut')),
    ]);
    const received = tunnels[0]!.bytes() + tunnels[1]!.bytes();
    const over = received - quota;
    // Each gateway sees its own bytes at every check and the other's within two flush intervals (the other's flush,
    // then its own refresh): past the quota by at most the other gateway's rate over 2 flushes, the key's whole
    // rate over one check, and one bucket per gateway.
    const bound = (rate * 2 * FLUSH_MS) / 1000 + (2 * rate * CHECK_MS) / 1000 + 2 * Math.max(64 * 1024, rate / 10);
    console.log(
      `# 2 gateways sharing a ${quota} B quota at ${rate} B/s each, flush ${FLUSH_MS} ms, check ${CHECK_MS} ms: cut after ${cutAt.map((s) => s.toFixed(2)).join(' and ')} s, ` +
        `${tunnels[0]!.bytes()} + ${tunnels[1]!.bytes()} B received, ${over} B past the quota (${((over / quota) * 100).toFixed(1)} %; bound ${bound} B)`,
    );
    assert.ok(over >= 0, `cut before the quota was used: ${received}`);
    assert.ok(over <= bound, `${over} B past the quota, bound ${bound}`);
    for (const g of gws) {
      const answer = await curl(['-p', '-x', `http://${key}:${key}@127.0.0.1:${g.ports.http}`, `http://127.0.0.1:${source.port}/`]);
      assert.equal(answer.connectCode, 429, answer.stderr);
      assert.equal(answer.headers['x-tailgate-error'], 'quota_exceeded');
    }
    // Cut tunnels are billed what reached the clients, exactly (not what was still buffered when they were cut).
    await Promise.all(gws.map((g) => g.usage.flush()));
    const [row] = await db.sql<{ down: string }[]>`SELECT sum(bytes_down)::text AS down FROM usage_hourly WHERE key_id = ${id}`;
    assert.equal(Number(row!.down), received);
    const view = await adminCall(b.ports.api, TOKEN, 'GET', `/keys/${id}`);
    assert.equal(view.json.quota.exhausted, true);
  });
});
