// PostgreSQL stopped for 30 s under traffic, then started again, under two gateways sharing it (issue 13, Faults).
// The server is the test's own (stopping the shared one would disturb every other test). While it is down: keys the
// gateways know keep routing on both listeners, also on gateway B whose cache entries expire during the outage; a key
// they do not know is refused at once with 503 `key-store` / SOCKS5 0x01; the API answers 503 `database_unavailable`;
// /readyz says not ready; each gateway logs the outage once, not once per refused client. Once it is back, without
// restarting anything: /readyz is ready, the API works, a key created after the outage routes through the other
// gateway, both gateways listen for change notifications again and a revocation made on each cuts the key's open
// tunnel on the other, and the usage rows equal the bytes the clients moved, with no binding lost.
// The figures it measures are printed as one JSON line (`database-outage figures`) for the README.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import postgres from 'postgres';
import { pino } from 'pino';
import { startGateway, type Gateway } from '../../src/app.js';
import { waitFor } from '../../testbed/wait.js';
import { adminCall, openTunnel } from '../helpers/connect-tunnel.js';
import { startHttpDevice, type Device } from '../helpers/devices.js';
import { loopbackConfig } from '../helpers/gateway-config.js';
import { startPgServer, type PgServer } from '../helpers/pg-server.js';
import { payload, startEchoTarget, startHttpTarget, type EchoTarget, type Listening } from '../helpers/targets.js';
import { curlMoved, usageOf, type Moved } from '../helpers/usage.js';

const TOKEN = 'test-admin-token-dbfault-0123456789';
const OUTAGE_MS = 30_000;
/** The bound for refusing a key the gateway cannot look up. */
const FAST_MS = 1_000;

let server: PgServer;
let sql: postgres.Sql;
let a: Gateway;
let b: Gateway;
/** Each gateway's own log lines (JSON), to see when it says it listens again and how much it said meanwhile. */
const logs = { a: [] as { level: number; msg: string }[], b: [] as { level: number; msg: string }[] };
const capture = (into: { level: number; msg: string }[]) => pino({ level: 'info' }, { write: (line: string) => void into.push(JSON.parse(line)) });
let device: Device;
let web: Listening;
let echo: EchoTarget;

before(async () => {
  server = await startPgServer('dbfault');
  sql = postgres(server.url, { max: 1, connect_timeout: 5, onnotice: () => {} });
  device = await startHttpDevice('127.0.0.2');
  web = await startHttpTarget();
  echo = await startEchoTarget();
  const env = { DATABASE_URL: server.url, TAILGATE_USAGE_FLUSH_MS: '200', TAILGATE_CONNECT_TIMEOUT_MS: '5000' };
  a = await startGateway(loopbackConfig(TOKEN, env), capture(logs.a));
  // B's cache entries expire during the outage: its known keys must keep routing from memory all the same.
  b = await startGateway(loopbackConfig(TOKEN, { ...env, TAILGATE_KEY_CACHE_TTL_MS: '10000' }), capture(logs.b));
});

after(async () => {
  await a?.close();
  await b?.close();
  await sql?.end({ timeout: 1 });
  await device?.close();
  await web?.close();
  await echo?.close();
  await server?.remove();
});

type Listener = 'http' | 'socks';

function proxyArgs(g: Gateway, via: Listener, key: string): string[] {
  return via === 'http' ? ['-x', `http://${key}:${key}@127.0.0.1:${g.ports.http}`] : ['--socks5-hostname', `${key}:${key}@127.0.0.1:${g.ports.socks}`];
}

/** One client opening tunnels (forwarded requests, SOCKS5 tunnels) one after the other until stopped. */
class Client {
  moved: Moved = { up: 0, down: 0 };
  ok = 0;
  readonly failures: string[] = [];
  private running = true;
  private readonly done: Promise<void>;

  constructor(
    readonly name: string,
    g: Gateway,
    via: Listener,
    key: string,
  ) {
    this.done = (async () => {
      let i = 0;
      while (this.running) {
        const size = 10_000 + (i++ % 7) * 1_000;
        try {
          const m = await curlMoved(proxyArgs(g, via, key), `http://127.0.0.1:${web.port}/big?n=${size}`);
          if (m.code !== 200) throw new Error(`HTTP ${m.code}`);
          this.moved = { up: this.moved.up + m.up, down: this.moved.down + m.down };
          this.ok++;
        } catch (err) {
          this.failures.push(`${new Date().toISOString()} ${(err as Error).message}`);
        }
        await sleep(50);
      }
    })();
  }

  stop(): Promise<void> {
    this.running = false;
    return this.done;
  }
}

/** Reads from `s` until `done` says the answer is complete (or the socket closes), with a deadline. */
function readAnswer(s: net.Socket, done: (b: Buffer) => boolean, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let got = Buffer.alloc(0);
    const timer = setTimeout(() => finish(new Error(`no complete answer within ${timeoutMs} ms (got ${JSON.stringify(got.toString('latin1'))})`)), timeoutMs);
    const finish = (err?: Error) => {
      clearTimeout(timer);
      s.off('data', onData);
      s.off('close', onClose);
      if (err) reject(err);
      else resolve(got);
    };
    const onData = (c: Buffer) => {
      got = Buffer.concat([got, c]);
      if (done(got)) finish();
    };
    const onClose = () => finish();
    s.on('data', onData);
    s.once('close', onClose);
    s.once('error', () => {});
  });
}

function connected(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

/** A key nobody has used, through the HTTP listener: how long until the answer, and the answer's head. */
async function unknownKeyHttp(g: Gateway): Promise<{ ms: number; head: string }> {
  const key = `never-seen-${randomBytes(8).toString('hex')}`;
  const s = await connected(g.ports.http);
  const t = performance.now();
  const auth = Buffer.from(`${key}:${key}`).toString('base64');
  s.write(`CONNECT 127.0.0.1:${web.port} HTTP/1.1\r\nHost: 127.0.0.1:${web.port}\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`);
  const answer = await readAnswer(s, (x) => x.includes('\r\n\r\n'), 15_000);
  const ms = performance.now() - t;
  s.destroy();
  return { ms, head: answer.toString('latin1').split('\r\n\r\n')[0]! };
}

/** The same through the SOCKS5 listener: greeting, RFC 1929 auth and CONNECT sent at once; the replies. */
async function unknownKeySocks(g: Gateway): Promise<{ ms: number; reply: number[] }> {
  const key = Buffer.from(`never-seen-${randomBytes(8).toString('hex')}`);
  const s = await connected(g.ports.socks);
  const t = performance.now();
  const port = Buffer.alloc(2);
  port.writeUInt16BE(web.port);
  s.write(
    Buffer.concat([
      Buffer.from([5, 1, 2]),
      Buffer.from([1, key.length]),
      key,
      Buffer.from([key.length]),
      key,
      Buffer.from([5, 1, 0, 1, 127, 0, 0, 1]),
      port,
    ]),
  );
  // Method choice (2 bytes), auth status (2), then a reply of 10 bytes for an IPv4 bound address.
  const answer = await readAnswer(s, (x) => x.length >= 4 + 10 || (x.length >= 4 && x[3] !== 0), 15_000);
  const ms = performance.now() - t;
  s.destroy();
  return { ms, reply: [...answer] };
}

async function readyz(g: Gateway): Promise<{ status: number; json: any }> {
  const res = await fetch(`http://127.0.0.1:${g.ports.api}/readyz`, { signal: AbortSignal.timeout(5_000) });
  return { status: res.status, json: await res.json() };
}

/** A CONNECT tunnel to the echo target that the test pumps: bytes sent and echoed back. */
class EchoTunnel {
  sent = 0;
  received = 0;
  closed = false;
  private pumping: NodeJS.Timeout | undefined;

  constructor(readonly socket: net.Socket) {
    socket.on('data', (c: Buffer) => (this.received += c.length));
    socket.once('close', () => (this.closed = true));
    socket.on('error', () => {});
  }

  pump(): void {
    const chunk = payload(2_000);
    this.pumping = setInterval(() => {
      if (this.closed) return;
      this.socket.write(chunk);
      this.sent += chunk.length;
    }, 100);
  }

  async quiet(): Promise<void> {
    clearInterval(this.pumping);
    await waitFor('every byte echoed', 10_000, () => this.received === this.sent, 10);
  }
}

test('a 30 s database outage under traffic: known keys keep routing, unknown ones fail fast, everything recovers and nothing is lost', { timeout: 120_000 }, async () => {
  const reg = await adminCall(a.ports.api, TOKEN, 'POST', '/register', { key: 'dbfault-device-key-0001', ip: device.host, port: device.port, name: 'dbfault-dev' });
  assert.equal(reg.status, 201, JSON.stringify(reg.json));
  const deviceId: number = (await adminCall(a.ports.api, TOKEN, 'GET', '/devices')).json[0].id;
  const newKey = async (name: string) => {
    const r = await adminCall(a.ports.api, TOKEN, 'POST', '/keys', { device: deviceId, name });
    assert.equal(r.status, 201, JSON.stringify(r.json));
    return { id: r.json.id as number, key: r.json.key as string };
  };
  const plan: { name: string; g: Gateway; via: Listener }[] = [
    { name: 'a-http', g: a, via: 'http' },
    { name: 'a-socks', g: a, via: 'socks' },
    { name: 'b-http', g: b, via: 'http' },
    { name: 'b-socks', g: b, via: 'socks' },
  ];
  const keys = new Map<string, { id: number; key: string }>();
  for (const p of plan) keys.set(p.name, await newKey(p.name));
  const revoked = await newKey('revoked-on-a');
  const revokedOnB = await newKey('revoked-on-b');
  const keysBefore = (await adminCall(a.ports.api, TOKEN, 'GET', '/keys')).json.map((k: { id: number }) => k.id).sort();

  // Each client's key is known to its gateway before the outage: the first request reads it from the database.
  const clients = plan.map((p) => new Client(p.name, p.g, p.via, keys.get(p.name)!.key));
  await waitFor('every client served', 20_000, () => clients.every((c) => c.ok >= 2), 50);
  // Tunnels that outlive the outage, each to be cut by a revocation made on the other gateway after it.
  const tunnel = new EchoTunnel(await openTunnel(b.ports.http, revoked.key, echo.port));
  const tunnelOnA = new EchoTunnel(await openTunnel(a.ports.http, revokedOnB.key, echo.port));
  tunnel.pump();
  tunnelOnA.pump();
  await waitFor('usage written while the database is up', 10_000, async () => (await usageOf(sql, 'key_id', keys.get('b-socks')!.id)).up > 0);

  // ---- The outage ----
  const okAtStop = clients.map((c) => c.ok);
  const linesAtStop = { a: logs.a.length, b: logs.b.length };
  await server.stop();
  const stoppedAt = performance.now();
  const unknownMs: number[] = [];
  const apiStatuses: number[] = [];
  const checkDown = async () => {
    for (const g of [a, b]) {
      const h = await unknownKeyHttp(g);
      assert.match(h.head, /^HTTP\/1\.1 503 /, h.head);
      assert.match(h.head, /\r\nX-Tailgate-Error: key-store\r\n/i, h.head);
      const s = await unknownKeySocks(g);
      assert.deepEqual(s.reply.slice(0, 6), [5, 2, 1, 0, 5, 1], `SOCKS5: method 2, auth ok, then general failure: ${s.reply.join(' ')}`);
      unknownMs.push(h.ms, s.ms);
      const keysCall = await adminCall(g.ports.api, TOKEN, 'GET', '/keys');
      assert.equal(keysCall.status, 503, JSON.stringify(keysCall.json));
      assert.equal(keysCall.json.success, false);
      assert.equal(keysCall.json.error, 'database_unavailable');
      assert.match(keysCall.json.message, /^database unavailable/);
      const create = await adminCall(g.ports.api, TOKEN, 'POST', '/keys', { device: deviceId, name: 'during-outage' });
      assert.equal(create.status, 503, JSON.stringify(create.json));
      assert.equal(create.json.error, 'database_unavailable');
      apiStatuses.push(keysCall.status, create.status);
      const ready = await readyz(g);
      assert.equal(ready.status, 503, JSON.stringify(ready.json));
      assert.equal(ready.json.ready, false);
      assert.notEqual(ready.json.database, 'ok');
    }
  };
  await checkDown();
  for (const at of [5_000, 15_000, 27_000]) {
    await sleep(Math.max(0, at - (performance.now() - stoppedAt)));
    await checkDown();
  }
  const echoedDuringOutage = tunnel.received;
  await sleep(Math.max(0, OUTAGE_MS - (performance.now() - stoppedAt)));
  const servedDuringOutage = clients.map((c, i) => c.ok - okAtStop[i]!);
  const failuresDuringOutage = clients.flatMap((c) => c.failures.map((f) => `${c.name}: ${f}`));
  await server.start();
  const startedAt = performance.now();
  const outageMs = startedAt - stoppedAt;

  // ---- Recovery, nothing restarted ----
  const since = () => Math.round(performance.now() - startedAt);
  const readyMs: Record<string, number> = {};
  await Promise.all(
    [a, b].map((g, i) =>
      waitFor('/readyz ready again', 30_000, async () => (await readyz(g)).status === 200 && (readyMs[i === 0 ? 'a' : 'b'] = since()), 100),
    ),
  );
  const fresh = await waitFor('the API creating keys again', 30_000, async () => {
    const r = await adminCall(a.ports.api, TOKEN, 'POST', '/keys', { device: deviceId, name: 'after-outage' });
    return r.status === 201 ? { id: r.json.id as number, key: r.json.key as string } : undefined;
  }, 100);
  const apiMs = since();
  // A key created on A after the outage routes through B: B reads the database again.
  const freshMoved = await waitFor('a new key routing through the other gateway', 30_000, async () => {
    const m = await curlMoved(proxyArgs(b, 'socks', fresh.key), `http://127.0.0.1:${web.port}/big?n=5000`);
    return m.code === 200 ? m : undefined;
  }, 100);
  const newKeyMs = since();

  // Change notifications resume on both: each gateway says it listens again (after which no resync reads the keys of
  // open tunnels again, so only a notification can cut them), then a revocation made on each cuts the key's open
  // tunnel on the other.
  const listeningMs: Record<string, number> = {};
  await Promise.all(
    (['a', 'b'] as const).map((name) =>
      waitFor(`${name} listening for change notifications again`, 30_000, () => logs[name].slice(linesAtStop[name]).some((l) => l.msg === 'listening for database change notifications again') && (listeningMs[name] = since()), 20),
    ),
  );
  const cutMs: Record<string, number> = {};
  for (const [t, revoker, k, name] of [
    [tunnel, a, revoked, 'a→b'],
    [tunnelOnA, b, revokedOnB, 'b→a'],
  ] as const) {
    await t.quiet();
    assert.ok(t.closed === false, 'the tunnel outlived the outage');
    const revokedAt = performance.now();
    const del = await adminCall(revoker.ports.api, TOKEN, 'DELETE', `/keys/${k.id}`);
    assert.equal(del.status, 200, JSON.stringify(del.json));
    assert.equal(del.json.tunnelsClosed, 0, 'the tunnel is on the other gateway');
    await waitFor(`the revoked key's tunnel cut on the other gateway (${name})`, 10_000, () => t.closed, 10);
    cutMs[name] = Math.round(performance.now() - revokedAt);
  }

  for (const c of clients) await c.stop();
  const allFailures = clients.flatMap((c) => c.failures.map((f) => `${c.name}: ${f}`));

  // ---- Nothing lost ----
  for (const g of [a, b]) {
    await waitFor('every tunnel closed', 10_000, () => g.usage.openMeters === 0, 10);
    await waitFor('usage written', 20_000, async () => {
      await g.usage.flush();
      return g.usage.held === 0;
    });
  }
  for (const c of clients) {
    const key = keys.get(c.name)!;
    assert.deepEqual(await usageOf(sql, 'key_id', key.id), { ...c.moved, tunnels: c.ok, refused: 0, failures: 0 }, `usage of ${c.name}`);
  }
  assert.deepEqual(await usageOf(sql, 'key_id', revoked.id), { up: tunnel.sent, down: tunnel.received, tunnels: 1, refused: 0, failures: 0 });
  assert.deepEqual(await usageOf(sql, 'key_id', revokedOnB.id), { up: tunnelOnA.sent, down: tunnelOnA.received, tunnels: 1, refused: 0, failures: 0 });
  assert.deepEqual(await usageOf(sql, 'key_id', fresh.id), { up: freshMoved.up, down: freshMoved.down, tunnels: 1, refused: 0, failures: 0 });
  for (const g of [a, b]) {
    const ids = (await adminCall(g.ports.api, TOKEN, 'GET', '/keys')).json.map((k: { id: number }) => k.id).sort();
    assert.deepEqual(ids, [...keysBefore.filter((id: number) => id !== revoked.id && id !== revokedOnB.id), fresh.id].sort(), 'every binding kept');
  }

  const figures = {
    outageMs: Math.round(outageMs),
    servedDuringOutage: Object.fromEntries(clients.map((c, i) => [c.name, servedDuringOutage[i]])),
    echoedDuringOutage,
    unknownKeyMs: { max: Math.round(Math.max(...unknownMs)), median: Math.round(unknownMs.sort((x, y) => x - y)[unknownMs.length >> 1]!), n: unknownMs.length },
    apiStatuses: [...new Set(apiStatuses)],
    readyAfterRestartMs: readyMs,
    apiAfterRestartMs: apiMs,
    newKeyThroughOtherGatewayMs: newKeyMs,
    listeningAgainMs: listeningMs,
    revocationCutOnOtherGatewayMs: cutMs,
    warningsDuringOutage: Object.fromEntries((['a', 'b'] as const).map((n) => [n, logs[n].slice(linesAtStop[n]).filter((l) => l.level >= 40).map((l) => l.msg)])),
  };
  console.log(`database-outage figures ${JSON.stringify(figures)}`);
  assert.deepEqual(failuresDuringOutage, [], 'known keys kept routing during the outage');
  assert.deepEqual(allFailures, [], 'no client request failed');
  assert.ok(clients.every((c, i) => servedDuringOutage[i]! >= 5), `every client served during the outage: ${servedDuringOutage.join(', ')}`);
  assert.ok(echoedDuringOutage > 0, 'bytes flowed on the open tunnel');
  for (const n of ['a', 'b'] as const) {
    const said = logs[n].slice(linesAtStop[n]).filter((l) => l.level >= 40).map((l) => l.msg);
    assert.equal(said.filter((m) => m.startsWith('database unreachable')).length, 1, `${n} says the database is unreachable once: ${said.join(' | ')}`);
    assert.ok(said.length <= 5, `${n} does not flood its log while the database is down: ${said.length} warnings`);
  }
  assert.ok(Math.max(...unknownMs) < FAST_MS, `an unknown key refused within ${FAST_MS} ms: ${unknownMs.map(Math.round).join(', ')}`);
});
