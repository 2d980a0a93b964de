// The tunnel pipeline's admission stage, through all three front ends: a refused key gets the front end's refusal
// (HTTP 429 with Proxy-Status, SOCKS5 0x02) before any device is dialled, and a key the policy admits is untouched.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { isPoolRoute, type KeyRoute } from '../src/tunnel/routes.js';
import type { AdmissionPolicy, Refusal } from '../src/tunnel/pipeline.js';
import { curl } from './helpers/curl.js';
import { startHttpDevice, type Device } from './helpers/devices.js';
import { rawExchange, startHarness, type Harness } from './helpers/proxy-harness.js';
import { startEchoTarget, startHttpTarget, type EchoTarget, type Listening } from './helpers/targets.js';

const REFUSED_KEY = 'key-over-its-limit-01';
const ADMITTED_KEY = 'key-within-limits-001';

/** Refuses one key, as a tunnel limit would; counts what it was asked. */
class RefuseOneKey implements AdmissionPolicy {
  asked: string[] = [];
  constructor(private readonly refusedNodeId: () => number) {}
  admit(route: KeyRoute, listener: string): Refusal | null {
    this.asked.push(listener);
    if (isPoolRoute(route) || route.nodeId !== this.refusedNodeId()) return null;
    return { reason: 'tunnel-limit', proxyStatus: 'connection_limit_reached', details: 'max_tunnels', retryAfterS: 1.2, text: 'too many open tunnels for this key' };
  }
}

let h: Harness;
let device: Device;
let web: Listening;
let echo: EchoTarget;
let refusedNode = 0;
const policy = new RefuseOneKey(() => refusedNode);

before(async () => {
  device = await startHttpDevice();
  web = await startHttpTarget();
  echo = await startEchoTarget();
  h = await startHarness({ admission: [policy] });
  refusedNode = h.resolver.bind(REFUSED_KEY, { ip: '127.0.0.1', port: device.port }).nodeId;
  h.resolver.bind(ADMITTED_KEY, { ip: '127.0.0.1', port: device.port });
});

after(async () => {
  await h.close();
  await device.close();
  await web.close();
  await echo.close();
});

const viaHttp = (key: string, args: string[]) => curl(['-x', `http://${key}:${key}@127.0.0.1:${h.httpPort}`, ...args]);

test('a refused key gets 429 with Proxy-Status, its reason and Retry-After on CONNECT and on forwarded requests; the device is never asked', async () => {
  const connect = await viaHttp(REFUSED_KEY, ['-p', `http://127.0.0.1:${echo.port}/`]);
  assert.equal(connect.connectCode, 429);
  assert.equal(connect.headers['proxy-status'], 'tailgate; error=connection_limit_reached; details="max_tunnels"');
  assert.equal(connect.headers['x-tailgate-error'], 'tunnel-limit');
  assert.equal(connect.headers['retry-after'], '2');
  const forwarded = await viaHttp(REFUSED_KEY, [`http://127.0.0.1:${web.port}/`]);
  assert.equal(forwarded.httpCode, 429);
  assert.equal(forwarded.headers['proxy-status'], 'tailgate; error=connection_limit_reached; details="max_tunnels"');
  assert.equal(forwarded.stdout, 'too many open tunnels for this key\n');
  assert.deepEqual(device.seen, [], 'no device was dialled for a refused key');
  await h.settle();
});

test('a refused key gets SOCKS5 reply 0x02 (not allowed by ruleset) before any dial', async () => {
  const auth = Buffer.concat([Buffer.from([1, REFUSED_KEY.length]), Buffer.from(REFUSED_KEY), Buffer.from([REFUSED_KEY.length]), Buffer.from(REFUSED_KEY)]);
  const request = Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, echo.port >> 8, echo.port & 0xff]);
  const r = await rawExchange(h.socksPort, [Buffer.concat([Buffer.from([5, 1, 2]), auth, request])]);
  assert.ok(r.closed);
  assert.equal(r.data[2 + 2 + 1], 0x02, `reply ${r.data.toString('hex')}`);
  assert.deepEqual(device.seen, []);
  await h.settle();
});

test('an admitted key is asked about once per tunnel or request on every front end and goes through', async () => {
  policy.asked = [];
  const forwarded = await viaHttp(ADMITTED_KEY, [`http://127.0.0.1:${web.port}/`]);
  assert.equal(forwarded.httpCode, 200);
  const tunnel = await viaHttp(ADMITTED_KEY, ['-p', `http://127.0.0.1:${web.port}/`]);
  assert.equal(tunnel.connectCode, 200);
  assert.equal(tunnel.httpCode, 200);
  const socks = await curl(['-x', `socks5h://${ADMITTED_KEY}:${ADMITTED_KEY}@127.0.0.1:${h.socksPort}`, `http://127.0.0.1:${web.port}/`]);
  assert.equal(socks.httpCode, 200);
  assert.deepEqual(policy.asked, ['http', 'http', 'socks5']);
  await h.settle();
});
