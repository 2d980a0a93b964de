// The management API over real HTTP (Fastify listening on an ephemeral loopback port, Node's fetch as the
// client) in front of a real PostgreSQL store, the real key resolver and real sockets in the tunnel registry.
// The Headscale side is a scripted DeviceRegistrar: these tests check how the API maps approvals and
// failures; the real Headscale path is exercised end to end by the tailnet test.
// Every answer to a documented route is checked against the schema GET /openapi.json declares for its status.
import { deviceOf } from './helpers/routes.js';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, connect, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import postgres from 'postgres';
import { type DeviceRegistrar, RegistrarError } from '../src/headscale/types.js';
import { hashKey, keyTag } from '../src/core/key.js';
import { loadConfig } from '../src/config.js';
import { openStore } from '../src/store/index.js';
import { SqlNodeStore } from '../src/store/postgres-store.js';
import type { NodeStore, RegistryStore } from '../src/store/types.js';
import type { TailnetView } from '../src/tailnet/types.js';
import { assertError, callApi, DocumentChecker, FixedTailnet, startApi as startApiWith, type Answer, type Api, type CallOptions } from './helpers/api.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { ScriptedRegistrar } from './helpers/registrar.js';
import { startTunnelSockets, type TunnelSockets } from './helpers/tunnel-sockets.js';

const ADMIN = 'admin-token-0123456789abcdef';
const ENROLL = 'enroll-token-0123456789abcdef';

/** Every log line the API writes, to check that no key or token ever reaches one. */
const logLines: string[] = [];
const logSink = new Writable({
  write(chunk: Buffer, _enc, done) {
    logLines.push(chunk.toString());
    done();
  },
});
const log = pino({ level: 'debug' }, logSink);

const checker = new DocumentChecker();

function call(api: Api, method: string, path: string, opts: CallOptions = {}): Promise<Answer> {
  return callApi(api, checker, ADMIN, method, path, opts);
}

function startApi(env: Record<string, string>, store: NodeStore & RegistryStore, extra: { registrar?: DeviceRegistrar; tailnet?: TailnetView } = {}): Promise<Api> {
  return startApiWith(env, store, log, extra);
}

let keyCounter = 0;
/** A fresh 24-character key in the shape of Headscale's registration ids. */
function newKey(): string {
  return `K${process.pid.toString(36)}x${(++keyCounter).toString(36)}`.padEnd(24, 'Q');
}
const usedKeys: string[] = [];
function key(): string {
  const k = newKey();
  usedKeys.push(k);
  return k;
}

/** GET /openapi.json as the API serves it; read once the API is up. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
let openapi: any;

let db: TestDatabase;
let store: NodeStore & RegistryStore;
let api: Api;
const registrar = new ScriptedRegistrar();
const tailnet = new FixedTailnet();

before(async () => {
  db = await createTestDatabase('api');
  store = await openStore({ database: db.target, dataDir: '/unused', log });
  api = await startApi({ TAILGATE_ADMIN_TOKEN: ADMIN, TAILGATE_ENROLL_TOKEN: ENROLL }, store, { registrar, tailnet });
  const document = await call(api, 'GET', '/openapi.json');
  assert.equal(document.status, 200, document.text);
  openapi = document.json;
  checker.load(openapi);
  checker.check('GET', '/openapi.json', document);
});

after(async () => {
  await api?.app.close();
  await store?.close();
  await db?.drop();
  // Checked last, over everything every test logged.
  const all = logLines.join('');
  if (process.env.SHOW_API_LOG) process.stderr.write(all);
  assert.ok(logLines.length > 0, 'the API logged nothing at all');
  for (const secret of [ADMIN, ENROLL, ...usedKeys]) assert.ok(!all.includes(secret), `a secret reached the log: ${secret.slice(0, 4)}...`);
});

describe('health, readiness and metrics', () => {
  test('GET /healthz answers without a token', async () => {
    const a = await call(api, 'GET', '/healthz', { token: null });
    assert.equal(a.status, 200);
    assert.deepEqual(a.json, { status: 'ok' });
  });

  test('GET /readyz is open and reports database, listeners and tailnet', async () => {
    const a = await call(api, 'GET', '/readyz', { token: null });
    assert.equal(a.status, 200, a.text);
    assert.deepEqual(a.json, { ready: true, database: 'ok', listeners: 'ok', tailnet: 'ok' });
  });

  test('GET /readyz is 503 while the proxy listeners are down', async () => {
    api.setListening(false);
    try {
      const a = await call(api, 'GET', '/readyz', { token: null });
      assert.equal(a.status, 503);
      assert.equal(a.json.ready, false);
      assert.equal(a.json.listeners, 'not listening');
    } finally {
      api.setListening(true);
    }
  });

  test('GET /readyz is 503 while tailscaled is not Running', async () => {
    tailnet.current = { running: false, backendState: 'NeedsLogin', selfIps: [], ready: false };
    try {
      const a = await call(api, 'GET', '/readyz', { token: null });
      assert.equal(a.status, 503);
      assert.equal(a.json.tailnet, 'not running (NeedsLogin)');
      assert.equal(a.json.database, 'ok');
    } finally {
      tailnet.current = { running: true, backendState: 'Running', selfIps: ['100.64.0.1'], ready: true };
    }
  });

  test('GET /readyz is 503 while tailscaled runs but has no netmap from control yet, and says what it waits for', async () => {
    tailnet.current = { running: true, backendState: 'Running', selfIps: ['100.64.0.1'], ready: false, waitingFor: 'a netmap from control' };
    try {
      const a = await call(api, 'GET', '/readyz', { token: null });
      assert.equal(a.status, 503);
      assert.equal(a.json.ready, false);
      assert.equal(a.json.tailnet, 'starting (waiting for a netmap from control)');
    } finally {
      tailnet.current = { running: true, backendState: 'Running', selfIps: ['100.64.0.1'], ready: true };
    }
  });

  test('GET /readyz is 503 when the database is gone, and says so', async () => {
    const other = await createTestDatabase('api_gone');
    const goneStore = await openStore({ database: other.target, dataDir: '/unused', log });
    const gone = await startApi({ TAILGATE_ADMIN_TOKEN: ADMIN }, goneStore);
    try {
      await goneStore.close();
      const a = await call(gone, 'GET', '/readyz', { token: null });
      assert.equal(a.status, 503);
      assert.equal(a.json.database, 'unreachable', 'without the admin token, no error detail');
      assert.equal(a.json.tailnet, 'not supervised');
      const detailed = await call(gone, 'GET', '/readyz');
      assert.equal(detailed.status, 503);
      assert.match(detailed.json.database, /^unreachable: .*CONNECTION_ENDED/);
      // And a call that needs the database says why it failed.
      assertError(await call(gone, 'GET', '/nodes'), 503, 'database_unavailable', /database unavailable/);
    } finally {
      await gone.app.close();
      await other.drop();
    }
  });

  test('GET /readyz answers 503 within its timeout when the database never answers', async () => {
    // A server that accepts connections and then says nothing: the client's ping hangs.
    const silent = createServer(() => {});
    const held: Socket[] = [];
    silent.on('connection', (s) => held.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const sql = postgres({ host: '127.0.0.1', port: (silent.address() as { port: number }).port, max: 1, connect_timeout: 30 });
    const hung = await startApi({ TAILGATE_ADMIN_TOKEN: ADMIN }, new SqlNodeStore(sql));
    try {
      const started = Date.now();
      const [a, b] = await Promise.all([call(hung, 'GET', '/readyz'), call(hung, 'GET', '/readyz', { token: null })]);
      const took = Date.now() - started;
      assert.equal(a.status, 503);
      assert.match(a.json.database, /^timeout: no answer within 2000 ms$/);
      assert.equal(b.json.database, 'timeout');
      assert.ok(took >= 1_900 && took < 5_000, `took ${took} ms`);
    } finally {
      await hung.app.close();
      held.forEach((s) => s.destroy());
      await sql.end({ timeout: 0 });
      await new Promise((r) => silent.close(r));
    }
  });

  test('GET /metrics needs the admin token and serves Prometheus text', async () => {
    assertError(await call(api, 'GET', '/metrics', { token: null }), 401, 'unauthorized', /Authorization: missing/);
    assertError(await call(api, 'GET', '/metrics', { token: ENROLL }), 403, 'forbidden', /enrollment token may only call/);
    const a = await call(api, 'GET', '/metrics');
    assert.equal(a.status, 200);
    assert.match(a.headers.get('content-type') ?? '', /^text\/plain/);
    assert.match(a.text, /^# HELP tailgate_tunnels_open /m);
    assert.match(a.text, /^tailgate_process_cpu_user_seconds_total /m);
  });
});

describe('authorization', () => {
  test('no token, a wrong token, and a non-Bearer scheme are 401', async () => {
    const missing = await call(api, 'GET', '/nodes', { token: null });
    assertError(missing, 401, 'unauthorized', /^Authorization: missing; send Authorization: Bearer <token>$/);
    assertError(await call(api, 'GET', '/nodes', { token: 'wrong-token-0123456789' }), 401, 'unauthorized', /^Authorization: invalid token$/);
    assertError(await call(api, 'GET', '/nodes', { token: ADMIN.slice(0, -1) }), 401, 'unauthorized', /invalid token/);
    assertError(await call(api, 'GET', '/nodes', { authorization: `Basic ${Buffer.from(`${ADMIN}:`).toString('base64')}` }), 401, 'unauthorized', /invalid/);
    assertError(await call(api, 'POST', '/register', { token: null, body: { key: key(), ip: '100.64.0.2' } }), 401, 'unauthorized', /missing/);
  });

  test('the scheme is case-insensitive', async () => {
    const a = await call(api, 'GET', '/nodes', { authorization: `bearer ${ADMIN}` });
    assert.equal(a.status, 200);
  });

  test('the enrollment token may register and nothing else', async () => {
    const k = key();
    registrar.devices.set(k, { headscaleNodeId: '901', name: 'enrolled', ipv4: '100.64.9.1', ipv6: null });
    const reg = await call(api, 'POST', '/register', { token: ENROLL, body: { key: k } });
    assert.equal(reg.status, 201, reg.text);
    const again = await call(api, 'GET', `/registerV2/${k}`, { token: ENROLL });
    assert.equal(again.status, 200, again.text);
    const id = reg.json.node.id;
    assertError(await call(api, 'GET', '/nodes', { token: ENROLL }), 403, 'forbidden', /enrollment token may only call POST \/register/);
    assertError(await call(api, 'GET', `/nodes/${id}`, { token: ENROLL }), 403, 'forbidden', /enrollment token/);
    assertError(await call(api, 'DELETE', `/nodes/${id}`, { token: ENROLL }), 403, 'forbidden', /enrollment token/);
    assert.ok(await store.get(id), 'a forbidden DELETE must not delete');
  });

  test('the enrollment token cannot bind a key to an explicit address', async () => {
    const k = key();
    assertError(
      await call(api, 'POST', '/register', { token: ENROLL, body: { key: k, ip: '100.64.9.2' } }),
      403,
      'forbidden',
      /^ip: the enrollment token registers through Headscale approval only/,
    );
    assert.equal(await store.findByKeyHash(hashKey(k)), null);
  });

  test('malformed HTTP gets a JSON 400 and the raw request never reaches the log', async () => {
    const { port } = new URL(api.base);
    const secret = `Bearer ${ADMIN}`;
    const answer = await new Promise<string>((resolve, reject) => {
      const s = connect(Number(port), '127.0.0.1');
      let data = '';
      const timer = setTimeout(() => reject(new Error('no answer to a malformed request within 5 s')), 5_000);
      s.on('data', (d: Buffer) => (data += d.toString()));
      s.on('error', () => {});
      s.on('close', () => {
        clearTimeout(timer);
        resolve(data);
      });
      s.write(`GET /nodes HTTP/1.1\r\nHost: x\r\nAuthorization: ${secret}\r\nBad Header Line\r\n\r\n`);
    });
    assert.match(answer, /^HTTP\/1\.1 400 Bad Request\r\n/);
    assert.match(answer, /"error":"bad_http"/);
  });

  test('unknown paths are 401 without a token and 404 with one', async () => {
    assertError(await call(api, 'GET', '/nope', { token: null }), 401, 'unauthorized', /missing/);
    assertError(await call(api, 'GET', '/nope'), 404, 'not_found', /no such endpoint: GET \/nope/);
  });

  test('without an admin token configured, calls need no token (the API is then on loopback only)', async () => {
    const open = await startApi({}, store);
    try {
      assert.equal(loadConfig({}).apiHost, '127.0.0.1');
      const nodes = await call(open, 'GET', '/nodes', { token: null });
      assert.equal(nodes.status, 200);
      const reg = await call(open, 'POST', '/register', { token: null, body: { key: key(), ip: '100.64.0.3' } });
      assert.equal(reg.status, 201, reg.text);
      const metrics = await call(open, 'GET', '/metrics', { token: null });
      assert.equal(metrics.status, 200);
    } finally {
      await open.app.close();
    }
  });
});

describe('POST /register with an address', () => {
  test('binds a key with the configured defaults and answers in the original shape', async () => {
    const k = key();
    const a = await call(api, 'POST', '/register', { body: { key: k, ip: '100.64.0.7' } });
    assert.equal(a.status, 201, a.text);
    assert.equal(a.json.success, true);
    assert.equal(a.json.ip, '100.64.0.7');
    assert.match(a.json.message, new RegExp(`^registered: key ${keyTag(hashKey(k))} -> 100\\.64\\.0\\.7:8939 \\(http\\)`));
    const node = a.json.node;
    assert.equal(typeof node.id, 'number');
    assert.equal(node.name, null);
    assert.equal(node.ip, '100.64.0.7');
    assert.equal(node.port, 8939);
    assert.equal(node.protocol, 'http');
    assert.equal(node.keyPrefix, keyTag(hashKey(k)));
    assert.ok(!Number.isNaN(Date.parse(node.createdAt)));
    assert.ok(!a.text.includes(k), 'the response must not echo the key');
  });

  test('registration is visible to the very next proxy lookup', async () => {
    const k = key();
    assert.equal(await api.resolver.resolve(k), null); // now cached as unknown
    const a = await call(api, 'POST', '/register', { body: { key: k, ip: '100.64.0.8', port: 3128, protocol: 'socks5' } });
    assert.equal(a.status, 201, a.text);
    assert.deepEqual(await api.resolver.resolve(k), { nodeId: a.json.node.id, keyId: a.json.node.id, gate: null, id: a.json.node.id, name: String(a.json.node.id), labels: {}, keyHash: hashKey(k), ip: '100.64.0.8', port: 3128, protocol: 'socks5' });
  });

  test('the same key again updates its binding; unspecified fields keep their value', async () => {
    const k = key();
    const first = await call(api, 'POST', '/register', { body: { key: k, ip: '100.64.0.9', port: 9000, protocol: 'socks5', name: 'phone' } });
    assert.equal(first.status, 201);
    await api.resolver.resolve(k); // cached
    const same = await call(api, 'POST', '/register', { body: { key: k, ip: '100.64.0.9', port: 9000, protocol: 'socks5', name: 'phone' } });
    assert.equal(same.status, 200, same.text);
    assert.match(same.json.message, /^updated: /);
    assert.equal(same.json.node.id, first.json.node.id);
    const moved = await call(api, 'POST', '/register', { body: { key: k, ip: '100.64.0.10' } });
    assert.equal(moved.status, 200);
    assert.deepEqual(
      { ip: moved.json.node.ip, port: moved.json.node.port, protocol: moved.json.node.protocol, name: moved.json.node.name },
      { ip: '100.64.0.10', port: 9000, protocol: 'socks5', name: 'phone' },
    );
    assert.equal((await deviceOf(api.resolver.resolve(k)))?.ip, '100.64.0.10', 'the cached route was not invalidated');
    assert.equal((await store.list()).filter((n) => n.keyHash === hashKey(k)).length, 1);
  });

  test('IPv6 tailnet addresses are accepted and stored in canonical form', async () => {
    const a = await call(api, 'POST', '/register', { body: { key: key(), ip: 'FD7A:115C:A1E0:0000::0005' } });
    assert.equal(a.status, 201, a.text);
    assert.equal(a.json.ip, 'fd7a:115c:a1e0::5');
    assert.match(a.json.message, /-> \[fd7a:115c:a1e0::5\]:8939/);
  });

  test('addresses outside TAILGATE_ALLOW_CIDRS are refused, naming the field and the ranges', async () => {
    for (const ip of ['10.0.0.1', '127.0.0.1', '192.168.1.1', '169.254.169.254', '::1', 'fd7a:115c:a1e1::1', '100.128.0.1']) {
      const a = await call(api, 'POST', '/register', { body: { key: key(), ip } });
      assertError(a, 400, 'ip_not_allowed', /^ip: .* is outside the allowed device ranges \(100\.64\.0\.0\/10,fd7a:115c:a1e0::\/48, TAILGATE_ALLOW_CIDRS\)$/);
    }
  });

  test('something that is not an IP address is refused, naming the field', async () => {
    for (const ip of ['abc', '100.64.0', '100.64.0.256', 'example.com', 'fe80::1%eth0', '100.64.0.1/32']) {
      assertError(await call(api, 'POST', '/register', { body: { key: key(), ip } }), 400, 'invalid_ip', /^ip: ".*" is not an IP address$/);
    }
  });

  test('every malformed field is a 400 naming it', async () => {
    const ok = { key: key(), ip: '100.64.0.20' };
    const cases: [unknown, RegExp][] = [
      [{ ip: '100.64.0.20' }, /^body\.key is required$/],
      [{ ...ok, key: 'short' }, /^body\.key must be at least 8 characters$/],
      [{ ...ok, key: 'x'.repeat(257) }, /^body\.key must be at most 256 characters$/],
      [{ ...ok, key: 'has:colon-inside' }, /^body\.key must be printable ASCII without spaces or ':'/],
      [{ ...ok, key: 'has space inside' }, /^body\.key must be printable ASCII/],
      [{ ...ok, key: 'non-ascii-kéy-value' }, /^body\.key must be printable ASCII/],
      [{ ...ok, key: 12345678 }, /^body\.key must be a string$/],
      [{ ...ok, ip: '' }, /^body\.ip must be at least 1 characters$/],
      [{ ...ok, ip: 100 }, /^body\.ip must be a string$/],
      [{ ...ok, port: 0 }, /^body\.port must be >= 1$/],
      [{ ...ok, port: 65536 }, /^body\.port must be <= 65535$/],
      [{ ...ok, port: '8939' }, /^body\.port must be an integer$/],
      [{ ...ok, port: 80.5 }, /^body\.port must be an integer$/],
      [{ ...ok, protocol: 'ftp' }, /^body\.protocol must be one of: http, socks5$/],
      [{ ...ok, name: '' }, /^body\.name must be at least 1 characters$/],
      [{ ...ok, name: 'bad\nname' }, /^body\.name must not contain control characters$/],
      [{ ...ok, name: 'n'.repeat(129) }, /^body\.name must be at most 128 characters$/],
      [{ ...ok, prot: 'http' }, /^body\.prot is not a known field$/],
      [[ok], /^body must be a JSON object$/],
      ['just a string', /^body must be a JSON object$/],
    ];
    for (const [body, message] of cases) {
      assertError(await call(api, 'POST', '/register', { body }), 400, 'invalid_request', message);
    }
    assert.equal(await store.findByKeyHash(hashKey(ok.key)), null);
  });

  test('bodies that are not JSON are refused with a clear reason', async () => {
    assertError(await call(api, 'POST', '/register', { raw: '{"key": ' }), 400, 'invalid_request', /^body: not valid JSON$/);
    assertError(await call(api, 'POST', '/register', { raw: '' }), 400, 'invalid_request', /^body: empty, expected a JSON object$/);
    assertError(
      await call(api, 'POST', '/register', { raw: 'key=abcdefgh&ip=100.64.0.1', contentType: 'application/x-www-form-urlencoded' }),
      400,
      'invalid_request',
      /^body: not valid JSON$/,
    );
    assertError(
      await call(api, 'POST', '/register', { raw: '<key>abcdefgh</key>', contentType: 'application/xml' }),
      415,
      'invalid_request',
      /^body: send JSON with content-type: application\/json$/,
    );
    assertError(await call(api, 'POST', '/register', { raw: JSON.stringify({ key: key(), name: 'x'.repeat(20_000) }) }), 413, 'invalid_request', /^body: too large$/);
    assertError(await call(api, 'POST', '/register', { raw: '{"__proto__": {"x": 1}, "key": "abcdefgh"}' }), 400, 'invalid_request', /^body: not valid JSON$/);
  });

  test('JSON sent as a form or plain text (curl -d without a content type) is accepted, as the original did', async () => {
    for (const contentType of ['application/x-www-form-urlencoded', 'text/plain']) {
      const a = await call(api, 'POST', '/register', { raw: JSON.stringify({ key: key(), ip: '100.64.0.30' }), contentType });
      assert.equal(a.status, 201, a.text);
    }
  });

  test('without ip and without Headscale, ip is required', async () => {
    const plain = await startApi({ TAILGATE_ADMIN_TOKEN: ADMIN }, store);
    try {
      assertError(await call(plain, 'POST', '/register', { body: { key: key() } }), 400, 'ip_required', /^ip: required \(Headscale approval is not configured\)$/);
      assertError(await call(plain, 'GET', `/registerV2/${key()}`), 400, 'ip_required', /^ip: required/);
    } finally {
      await plain.app.close();
    }
  });
});

describe('POST /register and GET /registerV2/:key through Headscale approval', () => {
  test('approves the device holding the key and binds the key to its tailnet address', async () => {
    const k = key();
    registrar.devices.set(k, { headscaleNodeId: '42', name: 'device-a', ipv4: '100.64.0.42', ipv6: 'fd7a:115c:a1e0::2a' });
    const before = registrar.approveCalls;
    const a = await call(api, 'POST', '/register', { body: { key: k } });
    assert.equal(a.status, 201, a.text);
    assert.equal(registrar.approveCalls, before + 1);
    assert.equal(a.json.ip, '100.64.0.42');
    assert.match(a.json.message, /via Headscale approval$/);
    const n = a.json.node;
    assert.deepEqual(
      { ip: n.ip, ipv6: n.ipv6, name: n.name, headscaleNodeId: n.headscaleNodeId, port: n.port, protocol: n.protocol },
      { ip: '100.64.0.42', ipv6: 'fd7a:115c:a1e0::2a', name: 'device-a', headscaleNodeId: '42', port: 8939, protocol: 'http' },
    );
    assert.equal((await deviceOf(api.resolver.resolve(k)))?.ip, '100.64.0.42');
  });

  test('registering an approved key again is idempotent and does not ask Headscale again', async () => {
    const k = key();
    registrar.devices.set(k, { headscaleNodeId: '43', name: 'device-b', ipv4: '100.64.0.43', ipv6: null });
    const first = await call(api, 'GET', `/registerV2/${k}`);
    assert.equal(first.status, 201, first.text);
    // Headscale has consumed the registration key by now; asking again would fail.
    registrar.devices.delete(k);
    const calls = registrar.approveCalls;
    for (const again of [await call(api, 'GET', `/registerV2/${k}`), await call(api, 'POST', '/register', { body: { key: k, port: 8080 } })]) {
      assert.equal(again.status, 200, again.text);
      assert.equal(again.json.node.id, first.json.node.id);
      assert.equal(again.json.ip, '100.64.0.43');
      assert.equal(again.json.node.headscaleNodeId, '43');
    }
    assert.equal(registrar.approveCalls, calls);
    assert.equal((await store.get(first.json.node.id))?.port, 8080);
  });

  test("Headscale's failures map to 400, 404 and 502 with its reason", async () => {
    const cases: [RegistrarError, number, string][] = [
      [new RegistrarError('bad-key', 'key: not a Headscale registration key (expected hskey-authreq- ...)'), 400, 'bad_registration_key'],
      [new RegistrarError('not-found', 'Headscale has no pending registration for this key (expired)'), 404, 'headscale_not_found'],
      [new RegistrarError('unreachable', 'Headscale at http://127.0.0.1:1 is unreachable: ECONNREFUSED'), 502, 'headscale_unreachable'],
      [new RegistrarError('upstream', 'Headscale answered HTTP 500 while approving: boom'), 502, 'headscale_error'],
    ];
    for (const [err, status, code] of cases) {
      const k = key();
      registrar.devices.set(k, err);
      const reason = err.message.replace(/^key: /, '').replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      assertError(await call(api, 'POST', '/register', { body: { key: k } }), status, code, new RegExp(`^key: ${reason}$`));
      assertError(await call(api, 'GET', `/registerV2/${k}`), status, code, new RegExp(`^key: ${reason}$`));
      assert.equal(await store.findByKeyHash(hashKey(k)), null);
    }
    // An unknown key: the scripted registrar answers not-found, like Headscale.
    assertError(await call(api, 'GET', `/registerV2/${key()}`), 404, 'headscale_not_found', /^key: Headscale has no pending registration/);
  });

  test('an address Headscale hands out outside the allowed ranges is refused', async () => {
    const k = key();
    registrar.devices.set(k, { headscaleNodeId: '44', name: 'odd', ipv4: '10.1.2.3', ipv6: null });
    assertError(await call(api, 'POST', '/register', { body: { key: k } }), 400, 'ip_not_allowed', /^ip: 10\.1\.2\.3 \(the device's address in Headscale\) is outside the allowed device ranges/);
    assert.equal(await store.findByKeyHash(hashKey(k)), null);
  });

  test('long keys work in the path, and HEAD does not register', async () => {
    const k = `hskey-authreq-${'L'.repeat(200)}`;
    usedKeys.push(k);
    registrar.devices.set(k, { headscaleNodeId: '45', name: 'long', ipv4: '100.64.0.45', ipv6: null });
    const head = await fetch(`${api.base}/registerV2/${k}`, { method: 'HEAD', headers: { authorization: `Bearer ${ADMIN}` } });
    assert.equal(head.status, 404);
    assert.equal(await store.findByKeyHash(hashKey(k)), null);
    const a = await call(api, 'GET', `/registerV2/${k}`);
    assert.equal(a.status, 201, a.text);
    assert.equal(a.headers.get('cache-control'), 'no-store');
  });

  test('the key in the path is validated like the body field', async () => {
    assertError(await call(api, 'GET', '/registerV2/short'), 400, 'invalid_request', /^params\.key must be at least 8 characters$/);
    assertError(await call(api, 'GET', `/registerV2/${encodeURIComponent('has:colon-in-it')}`), 400, 'invalid_request', /^params\.key must be printable ASCII/);
  });
});

describe('GET /nodes and GET /nodes/:id', () => {
  test('lists every binding without any key, with online state from the tailnet', async () => {
    const k = key();
    const reg = await call(api, 'POST', '/register', { body: { key: k, ip: '100.64.1.50', name: 'listed' } });
    tailnet.online.set('100.64.1.50', true);
    const a = await call(api, 'GET', '/nodes');
    assert.equal(a.status, 200);
    assert.ok(Array.isArray(a.json));
    const mine = a.json.find((n: { id: number }) => n.id === reg.json.node.id);
    assert.deepEqual(Object.keys(mine).sort(), ['createdAt', 'headscaleNodeId', 'id', 'ip', 'ipv6', 'keyPrefix', 'name', 'online', 'port', 'protocol', 'updatedAt']);
    assert.equal(mine.online, true);
    assert.equal(mine.keyPrefix, keyTag(hashKey(k)));
    tailnet.online.set('100.64.1.50', false);
    assert.equal((await call(api, 'GET', `/nodes/${reg.json.node.id}`)).json.online, false);
    tailnet.online.delete('100.64.1.50');
    assert.equal((await call(api, 'GET', `/nodes/${reg.json.node.id}`)).json.online, null);
    for (const used of usedKeys) assert.ok(!a.text.includes(used), 'a key appeared in GET /nodes');
    for (const node of a.json) assert.ok(!a.text.includes(hashKey(String(node.id))));
    assert.ok(!/[0-9a-f]{64}/.test(a.text), 'a whole key hash appeared in GET /nodes');
  });

  test('GET /nodes/:id returns one node, 404 for unknown ids, 400 for malformed ones', async () => {
    const reg = await call(api, 'POST', '/register', { body: { key: key(), ip: '100.64.1.51' } });
    const one = await call(api, 'GET', `/nodes/${reg.json.node.id}`);
    assert.equal(one.status, 200);
    assert.deepEqual(one.json, (await call(api, 'GET', '/nodes')).json.find((n: { id: number }) => n.id === reg.json.node.id));
    assertError(await call(api, 'GET', '/nodes/999999'), 404, 'not_found', /^id: no node 999999$/);
    for (const bad of ['abc', '0', '-1', '1.5', '01']) {
      assertError(await call(api, 'GET', `/nodes/${bad}`), 400, 'invalid_request', /^params\.id must be a positive integer$/);
    }
    assertError(await call(api, 'GET', '/nodes/99999999999'), 400, 'invalid_request', /^params\.id must be a positive integer$/);
    assertError(await call(api, 'GET', '/nodes/9999999999'), 400, 'invalid_request', /^params\.id must be at most 2147483647$/);
  });
});

describe('DELETE /nodes/:id', () => {
  /** Real client connections whose server sides are registered as tunnels of a key, like the proxies do. */
  let sockets: TunnelSockets;
  before(async () => {
    sockets = await startTunnelSockets(api.tunnels);
  });
  after(async () => {
    await sockets.close();
  });

  test('revokes: the key stops resolving at once and its open tunnels are closed', async () => {
    const k = key();
    const reg = await call(api, 'POST', '/register', { body: { key: k, ip: '100.64.2.1' } });
    assert.ok(await api.resolver.resolve(k), 'cached before the revocation');
    const t1 = await sockets.open(hashKey(k));
    const t2 = await sockets.open(hashKey(k));
    const bystanderKey = key();
    await call(api, 'POST', '/register', { body: { key: bystanderKey, ip: '100.64.2.2' } });
    await sockets.open(hashKey(bystanderKey));

    const a = await call(api, 'DELETE', `/nodes/${reg.json.node.id}`);
    assert.equal(a.status, 200, a.text);
    assert.equal(a.json.success, true);
    assert.equal(a.json.tunnelsClosed, 2);
    assert.equal(a.json.headscaleDeleted, false);
    assert.match(a.json.message, new RegExp(`^revoked: key ${keyTag(hashKey(k))}, 2 open tunnel\\(s\\) closed$`));
    assert.equal(a.json.node.id, reg.json.node.id);
    await Promise.all([t1.closed(), t2.closed()]);
    assert.equal(await api.resolver.resolve(k), null);
    assert.equal(api.tunnels.size, 1, "another key's tunnel must stay open");
    assertError(await call(api, 'GET', `/nodes/${reg.json.node.id}`), 404, 'not_found', /no node/);
    assertError(await call(api, 'DELETE', `/nodes/${reg.json.node.id}`), 404, 'not_found', /^id: no node \d+$/);
  });

  test('an empty body sent with a content type (as many HTTP client libraries do) is ignored', async () => {
    for (const contentType of ['application/json', 'application/json; charset=utf-8', 'text/plain', 'application/octet-stream']) {
      const reg = await call(api, 'POST', '/register', { body: { key: key(), ip: '100.64.2.4' } });
      assert.equal(reg.status, 201, reg.text);
      const a = await call(api, 'DELETE', `/nodes/${reg.json.node.id}`, { raw: '', contentType });
      assert.equal(a.status, 200, `${contentType}: ${a.text}`);
      assert.equal(a.json.node.id, reg.json.node.id);
      assert.equal(await store.get(reg.json.node.id), null);
    }
  });

  test('?purge=true also deletes the node in Headscale', async () => {
    const k = key();
    registrar.devices.set(k, { headscaleNodeId: '77', name: 'to-purge', ipv4: '100.64.2.77', ipv6: null });
    const reg = await call(api, 'POST', '/register', { body: { key: k } });
    assert.equal(reg.status, 201, reg.text);
    const a = await call(api, 'DELETE', `/nodes/${reg.json.node.id}?purge=true`);
    assert.equal(a.status, 200, a.text);
    assert.equal(a.json.headscaleDeleted, true);
    assert.deepEqual(registrar.deleted.slice(-1), ['77']);
    assert.equal(await store.get(reg.json.node.id), null);
  });

  test('a purge Headscale fails leaves the binding in place so it can be retried', async () => {
    const k = key();
    registrar.devices.set(k, { headscaleNodeId: '78', name: 'retry', ipv4: '100.64.2.78', ipv6: null });
    const reg = await call(api, 'POST', '/register', { body: { key: k } });
    registrar.deleteFailure = new RegistrarError('unreachable', 'Headscale at http://127.0.0.1:1 is unreachable: ECONNREFUSED');
    try {
      assertError(await call(api, 'DELETE', `/nodes/${reg.json.node.id}?purge=true`), 502, 'headscale_unreachable', /^purge: Headscale at .* is unreachable/);
      assert.ok(await store.get(reg.json.node.id));
      assert.ok(await api.resolver.resolve(k));
      // Already gone in Headscale counts as done.
      registrar.deleteFailure = new RegistrarError('not-found', 'no such node');
      const a = await call(api, 'DELETE', `/nodes/${reg.json.node.id}?purge=1`);
      assert.equal(a.status, 200, a.text);
      assert.equal(a.json.headscaleDeleted, false);
      assert.equal(await api.resolver.resolve(k), null);
    } finally {
      registrar.deleteFailure = undefined;
    }
  });

  test('purge without Headscale configured, and malformed parameters, are 400 naming them', async () => {
    const reg = await call(api, 'POST', '/register', { body: { key: key(), ip: '100.64.2.3' } });
    const id = reg.json.node.id;
    assertError(await call(api, 'DELETE', `/nodes/${id}?purge=maybe`), 400, 'invalid_request', /^querystring\.purge must be one of: true, false, 1, 0$/);
    assertError(await call(api, 'DELETE', `/nodes/${id}?force=true`), 400, 'invalid_request', /^querystring\.force is not a known field$/);
    assertError(await call(api, 'DELETE', '/nodes/abc'), 400, 'invalid_request', /^params\.id must be a positive integer$/);
    const plain = await startApi({ TAILGATE_ADMIN_TOKEN: ADMIN }, store);
    try {
      assertError(await call(plain, 'DELETE', `/nodes/${id}?purge=true`), 400, 'purge_unavailable', /^purge: Headscale is not configured/);
      assert.ok(await store.get(id));
      // Without purge, a node with no Headscale id is simply revoked.
      assert.equal((await call(plain, 'DELETE', `/nodes/${id}?purge=false`)).status, 200);
    } finally {
      await plain.app.close();
    }
  });
});

describe('GET /stats and the dashboard files', () => {
  test('GET /stats counts devices by health and relay, and needs the admin token', async () => {
    const up = await call(api, 'POST', '/register', { body: { key: key(), ip: '100.64.9.1', name: 'stats-up' } });
    const down = await call(api, 'POST', '/register', { body: { key: key(), ip: '100.64.9.2', name: 'stats-down' } });
    assert.equal(up.status, 201, up.text);
    assert.equal(down.status, 201, down.text);
    tailnet.online.set('100.64.9.1', true);
    tailnet.links.set('100.64.9.1', { lastHandshake: new Date().toISOString(), relayed: true });
    tailnet.online.set('100.64.9.2', false);
    try {
      const devices = (await call(api, 'GET', '/devices')).json as { health: { state: 'up' | 'down' | 'unknown' }; relayed: boolean | null }[];
      const expected = { total: devices.length, up: 0, down: 0, unknown: 0, relayed: 0 };
      for (const d of devices) {
        expected[d.health.state]++;
        if (d.relayed === true) expected.relayed++;
      }
      assert.ok(expected.up >= 1 && expected.down >= 1 && expected.relayed >= 1, JSON.stringify(expected));
      const a = await call(api, 'GET', '/stats');
      assert.equal(a.status, 200, a.text);
      assert.deepEqual(a.json.devices, expected);
      assert.equal(a.json.tunnelsOpen, 0);
      assert.equal(a.json.intervalSeconds, 2);
      assert.equal(a.json.listeners, null);
      // This API's sampler is never started (no tunnels run here): no history yet.
      assert.deepEqual(a.json.series, []);
      assertError(await call(api, 'GET', '/stats', { token: null }), 401, 'unauthorized', /^Authorization: missing/);
      assertError(await call(api, 'GET', '/stats', { token: ENROLL }), 403, 'forbidden', /enrollment token may only call/);
    } finally {
      tailnet.online.clear();
      tailnet.links.clear();
      await call(api, 'DELETE', `/nodes/${up.json.node.id}`);
      await call(api, 'DELETE', `/nodes/${down.json.node.id}`);
    }
  });

  test('/ui/ serves the page without a token, under a strict Content-Security-Policy that pins the import map', async () => {
    const res = await fetch(`${api.base}/ui/`, { signal: AbortSignal.timeout(5_000) });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
    const page = await res.text();
    const csp = res.headers.get('content-security-policy') ?? '';
    const importMap = /<script type="importmap">([^<]*)<\/script>/.exec(page)?.[1];
    assert.ok(importMap !== undefined, 'the page has an import map');
    const hash = createHash('sha256').update(importMap).digest('base64');
    assert.match(csp, new RegExp(`script-src 'self' 'sha256-${hash.replace(/[+/]/g, '\\$&')}'(;|$)`));
    for (const directive of ["default-src 'none'", "connect-src 'self'", "style-src 'self'", "frame-ancestors 'none'"]) assert.ok(csp.includes(directive), `${directive} in ${csp}`);
    assert.ok(!/unsafe-inline|unsafe-eval/.test(csp), csp);
    // Only the import map is inline; every script the page runs is a file of this origin.
    assert.deepEqual([...page.matchAll(/<script([^>]*)>/g)].map((m) => m[1]!.trim()).sort(), ['type="importmap"', 'type="module" src="./app.js"']);
    assert.equal(res.headers.get('cache-control'), 'no-cache');
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');

    // Every module the import map names is served, as JavaScript, cacheable for good (its URL carries the version).
    for (const url of Object.values(JSON.parse(importMap).imports as Record<string, string>)) {
      const m = await fetch(new URL(url, `${api.base}/ui/`), { headers: { 'accept-encoding': 'gzip' }, signal: AbortSignal.timeout(5_000) });
      assert.equal(m.status, 200, url);
      assert.match(m.headers.get('content-type') ?? '', /^text\/javascript/, url);
      assert.equal(m.headers.get('cache-control'), 'public, max-age=31536000, immutable', url);
      assert.match(await m.text(), /export/, url);
    }
    // Revalidation: the same ETag answers 304 with no body.
    const again = await fetch(`${api.base}/ui/app.js`, { headers: { 'if-none-match': (await fetch(`${api.base}/ui/app.js`)).headers.get('etag') ?? '' }, signal: AbortSignal.timeout(5_000) });
    assert.equal(again.status, 304);
    assert.equal(await again.text(), '');
  });

  test('/ui/ serves only the files it loaded at start: no path reaches the disk', async () => {
    const raw = (path: string) =>
      new Promise<string>((resolve, reject) => {
        const s = connect(Number(new URL(api.base).port), '127.0.0.1');
        let out = '';
        s.setTimeout(5_000, () => s.destroy(new Error('no answer')));
        s.on('data', (d: Buffer) => (out += d.toString('latin1')));
        s.on('end', () => resolve(out));
        s.on('error', reject);
        s.end(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      });
    for (const path of ['/ui/../package.json', '/ui/%2e%2e/package.json', '/ui/..%2fpackage.json', '/ui/vendor/../../package.json', '/ui/nothing.js', '/ui/%2fetc%2fpasswd']) {
      const answer = await raw(path);
      assert.match(answer, /^HTTP\/1\.1 404 /, `${path}: ${answer.split('\r\n')[0]}`);
      assert.ok(!answer.includes('"name": "tailgate"') && !answer.includes('root:'), path);
    }
    const home = await fetch(`${api.base}/`, { redirect: 'manual', signal: AbortSignal.timeout(5_000) });
    assert.equal(home.status, 302);
    assert.equal(home.headers.get('location'), '/ui/');
    // The dashboard's routes are not part of the API's document.
    assert.ok(!Object.keys(openapi.paths).some((p) => p === '/' || p.startsWith('/ui')));
  });
});

describe('GET /openapi.json', () => {
  const NODE_FIELDS = ['createdAt', 'headscaleNodeId', 'id', 'ip', 'ipv6', 'keyPrefix', 'name', 'online', 'port', 'protocol', 'updatedAt'];
  const keys = (o: object) => Object.keys(o).sort();

  test('needs the admin token', async () => {
    assertError(await call(api, 'GET', '/openapi.json', { token: null }), 401, 'unauthorized', /^Authorization: missing/);
    assertError(await call(api, 'GET', '/openapi.json', { token: ENROLL }), 403, 'forbidden', /enrollment token may only call/);
    const a = await call(api, 'GET', '/openapi.json');
    assert.equal(a.status, 200);
    assert.match(a.headers.get('content-type') ?? '', /^application\/json/);
    assert.equal(a.json.openapi, '3.1.0');
  });

  test('lists every route with its methods, with what each answers and who may call it', async () => {
    const methods = Object.fromEntries(Object.entries(openapi.paths).map(([path, item]) => [path, keys(item as object)]));
    assert.deepEqual(methods, {
      '/healthz': ['get'],
      '/readyz': ['get'],
      '/metrics': ['get'],
      '/nodes': ['get'],
      '/nodes/{id}': ['delete', 'get'],
      '/register': ['post'],
      '/registerV2/{key}': ['get'],
      '/openapi.json': ['get'],
      '/devices': ['get'],
      '/devices/{id}': ['delete', 'get', 'patch'],
      '/pools': ['get', 'post'],
      '/pools/{id}': ['delete', 'get', 'patch'],
      '/keys': ['get', 'post'],
      '/keys/{id}': ['delete', 'get', 'patch'],
      '/keys/{id}/rotate': ['post'],
      '/keys/{id}/usage': ['get'],
      '/devices/{id}/usage': ['get'],
      '/usage': ['get'],
      '/usage/series': ['get'],
      '/stats': ['get'],
    });
    for (const [path, item] of Object.entries(openapi.paths)) {
      for (const [method, op] of Object.entries(item as Record<string, { responses: object; security?: unknown }>)) {
        assert.ok(api.app.hasRoute({ method: method.toUpperCase() as 'GET', url: path.replace(/\{(\w+)\}/g, ':$1') }), `${method} ${path} is not a route`);
        assert.ok('500' in op.responses, `${method} ${path} declares no 500`);
        const open = path === '/healthz' || path === '/readyz';
        assert.deepEqual(op.security, open ? undefined : [{ bearer: [] }], `${method} ${path}: security`);
        if (!open) assert.ok('401' in op.responses && '403' in op.responses, `${method} ${path} declares no 401/403`);
      }
    }
    assert.deepEqual(openapi.paths['/register'].post.requestBody.content['application/json'].schema, { $ref: '#/components/schemas/RegisterRequest' });
    assert.deepEqual(keys(openapi.components.schemas.Node.properties), NODE_FIELDS);
  });

  test('answers keep every field they had before responses were serialized from schemas', async () => {
    const k = key();
    const reg = await call(api, 'POST', '/register', { body: { key: k, ip: '100.64.3.1', name: 'fields' } });
    assert.deepEqual(keys(reg.json), ['ip', 'message', 'node', 'success']);
    assert.deepEqual(keys(reg.json.node), NODE_FIELDS);
    const again = await call(api, 'POST', '/register', { body: { key: k, ip: '100.64.3.1' } });
    assert.equal(again.status, 200, again.text);
    assert.deepEqual(keys(again.json), ['ip', 'message', 'node', 'success']);
    assert.deepEqual(keys((await call(api, 'GET', `/nodes/${reg.json.node.id}`)).json), NODE_FIELDS);
    const del = await call(api, 'DELETE', `/nodes/${reg.json.node.id}`);
    assert.deepEqual(keys(del.json), ['headscaleDeleted', 'message', 'node', 'success', 'tunnelsClosed']);
    assert.deepEqual(keys(del.json.node), NODE_FIELDS);
    assert.deepEqual(keys((await call(api, 'GET', `/nodes/${reg.json.node.id}`)).json), ['error', 'message', 'success']);
    assert.deepEqual(keys((await call(api, 'GET', '/readyz', { token: null })).json), ['database', 'listeners', 'ready', 'tailnet']);
    assert.deepEqual((await call(api, 'GET', '/healthz', { token: null })).json, { status: 'ok' });
  });

  test("every route's real answers were checked against the document, successes and errors", () => {
    // Devices, pools and keys have their own file (api-registry.test.ts), usage its own (usage.e2e.test.ts), which check
    // them the same way.
    checker.assertCovered((path) => !/^\/(devices|pools|keys)(\/|$)/.test(path) && !/\/usage(\/series)?$/.test(path), new Set(['/healthz']));
  });
});
