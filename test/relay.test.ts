// The relay under the conditions the listener tests do not create: readers slower than writers in both
// directions at once (the gateway must hold back, not buffer), and a FIN from either side with the other
// direction still carrying data. Real sockets end to end: raw client, both listeners, the test SOCKS5
// device and the `proxy` package as HTTP device, a raw TCP target on 127.0.0.1.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { after, afterEach, before, test } from 'node:test';
import type { Dialer } from '../src/core/dialer.js';
import { DirectDialer } from '../src/tailnet/direct-dialer.js';
import { startHttpDevice, startSocksDevice, type Device } from './helpers/devices.js';
import { rawExchange, startHarness, type Harness } from './helpers/proxy-harness.js';
import { closeServer, listen, sha256, startEchoTarget } from './helpers/targets.js';
import { waitFor } from '../testbed/wait.js';

/** The real DirectDialer, remembering the device sockets it opened so the test can look at the gateway's side. */
class RecordingDialer implements Dialer {
  readonly inner = new DirectDialer();
  readonly sockets: net.Socket[] = [];
  async dial(host: string, port: number, timeoutMs: number): Promise<net.Socket> {
    const s = await this.inner.dial(host, port, timeoutMs);
    this.sockets.push(s);
    return s;
  }
}

let h: Harness;
let dialer: RecordingDialer;
let httpDevice: Device;
let socksDevice: Device;
/** Client sockets as the gateway accepted them, in order. */
const accepted: net.Socket[] = [];
/** Client sockets the tests opened, destroyed after each test whatever its outcome. */
const clients: net.Socket[] = [];
afterEach(() => {
  for (const s of clients.splice(0)) s.destroy();
});
const KEY_HTTP_DEVICE = 'sk-relay-http-device-0001';
const KEY_SOCKS_DEVICE = 'sk-relay-socks-device-0002';

before(async () => {
  dialer = new RecordingDialer();
  [h, httpDevice, socksDevice] = await Promise.all([startHarness({ dialer }), startHttpDevice(), startSocksDevice()]);
  h.resolver.bind(KEY_HTTP_DEVICE, { ip: '127.0.0.1', port: httpDevice.port });
  h.resolver.bind(KEY_SOCKS_DEVICE, { ip: '127.0.0.1', port: socksDevice.port, protocol: 'socks5' });
  h.httpServer.on('connection', (s: net.Socket) => accepted.push(s));
  h.socksServer.on('connection', (s: net.Socket) => accepted.push(s));
});

after(async () => {
  await h.close();
  await Promise.all([httpDevice.close(), socksDevice.close()]);
});

type Listener = 'http' | 'socks5';

/** A raw target that hands each accepted connection to the test. */
async function startTarget(): Promise<{ port: number; next(): Promise<net.Socket>; close(): Promise<void> }> {
  const waiting: ((s: net.Socket) => void)[] = [];
  const ready: net.Socket[] = [];
  const all: net.Socket[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    all.push(s);
    s.on('error', () => s.destroy());
    const w = waiting.shift();
    if (w) w(s);
    else ready.push(s);
  });
  const port = await listen(server, '127.0.0.1');
  return {
    port,
    next: () => {
      const s = ready.shift();
      if (s) return Promise.resolve(s);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no connection reached the target within 5 s')), 5_000);
        waiting.push((sock) => {
          clearTimeout(timer);
          resolve(sock);
        });
      });
    },
    // Whatever a failed test left open goes too, so closing never waits on it.
    close: () => {
      for (const s of all) s.destroy();
      return closeServer(server);
    },
  };
}

/** Reads exactly n bytes (or fails after 5 s), leaving the socket paused with anything beyond them unshifted. */
function readExactly(s: net.Socket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let got = Buffer.alloc(0);
    const timer = setTimeout(() => done(new Error(`expected ${n} bytes, got ${got.length} within 5 s`)), 5_000);
    const onData = (c: Buffer) => {
      got = Buffer.concat([got, c]);
      if (got.length >= n) done(null);
    };
    const onEnd = () => done(new Error(`closed after ${got.length} of ${n} bytes`));
    function done(err: Error | null) {
      clearTimeout(timer);
      s.off('data', onData);
      s.off('end', onEnd);
      s.off('error', onEnd);
      s.pause();
      if (err) return reject(err);
      if (got.length > n) s.unshift(got.subarray(n));
      resolve(got.subarray(0, n));
    }
    s.on('data', onData);
    s.on('end', onEnd);
    s.on('error', onEnd);
  });
}

/** A client with an established tunnel to 127.0.0.1:port, paused, plus the gateway's two sockets for it. */
async function openTunnel(listener: Listener, key: string, port: number): Promise<{ client: net.Socket; gatewayClient: net.Socket; gatewayDevice: net.Socket }> {
  const acceptedBefore = accepted.length;
  const dialedBefore = dialer.sockets.length;
  const client = net.connect({ host: '127.0.0.1', port: listener === 'http' ? h.httpPort : h.socksPort, allowHalfOpen: true });
  clients.push(client);
  client.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
  });
  if (listener === 'http') {
    const auth = Buffer.from(`${key}:${key}`).toString('base64');
    client.write(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`);
    const established = 'HTTP/1.1 200 Connection established\r\n\r\n';
    assert.equal((await readExactly(client, established.length)).toString('latin1'), established);
  } else {
    const k = Buffer.from(key);
    client.write(Buffer.concat([Buffer.from([5, 1, 2, 1, k.length]), k, Buffer.from([k.length]), k, Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, port >> 8, port & 0xff])]));
    const reply = await readExactly(client, 2 + 2 + 10);
    assert.deepEqual([...reply.subarray(0, 6)], [5, 2, 1, 0, 5, 0], reply.toString('hex'));
  }
  assert.equal(accepted.length, acceptedBefore + 1);
  assert.equal(dialer.sockets.length, dialedBefore + 1);
  return { client, gatewayClient: accepted[acceptedBefore]!, gatewayDevice: dialer.sockets[dialedBefore]! };
}

/**
 * Writes distinct 256 KiB chunks to `s` whenever less than 1 MiB is queued in it, until stop() is called
 * or `cap` bytes are out (far more than the kernel buffers on the path hold), hashing what it wrote.
 */
function firehose(s: net.Socket, cap = 256 << 20) {
  const hash = createHash('sha256');
  const base = randomBytes(256 * 1024);
  let written = 0;
  let stopped = false;
  let n = 0;
  const pump = () => {
    while (!stopped && written < cap && s.writableLength < 1 << 20 && !s.destroyed) {
      const chunk = Buffer.from(base);
      chunk.writeUInt32BE(n++, 0);
      hash.update(chunk);
      written += chunk.length;
      s.write(chunk);
    }
  };
  s.on('drain', pump);
  pump();
  return {
    get written() {
      return written;
    },
    /** Unsent bytes queued in the writer's own socket: the gateway is not reading them. */
    get queued() {
      return s.writableLength;
    },
    stop(): string {
      stopped = true;
      s.off('drain', pump);
      return hash.digest('hex');
    },
  };
}

/** Reads `s` to its end, hashing; resolves with the byte count and digest. */
function drain(s: net.Socket, timeoutMs: number): Promise<{ bytes: number; sha: string }> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let bytes = 0;
    const timer = setTimeout(() => reject(new Error(`no end after ${bytes} bytes within ${timeoutMs} ms`)), timeoutMs);
    s.on('data', (c: Buffer) => {
      bytes += c.length;
      hash.update(c);
    });
    s.once('end', () => {
      clearTimeout(timer);
      resolve({ bytes, sha: hash.digest('hex') });
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    s.resume();
  });
}

/** Resolves once `sample()` has returned the same value for `stableMs`; fails after `timeoutMs`. */
async function settled(what: string, sample: () => number, stableMs = 300, timeoutMs = 10_000): Promise<number> {
  let last = sample();
  let since = Date.now();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await new Promise((r) => setTimeout(r, 25));
    const v = sample();
    if (v !== last) {
      last = v;
      since = Date.now();
    } else if (Date.now() - since >= stableMs) {
      return v;
    }
    if (Date.now() > deadline) throw new Error(`${what} still moving after ${timeoutMs} ms`);
  }
}

// What the gateway may hold for one direction of one tunnel while its reader is stalled: the destination's
// write buffer up to its high-water mark plus the chunk that crossed it, and about one read in the source.
const GATEWAY_BOUND = 256 * 1024;

for (const [listener, key] of [
  ['http', KEY_HTTP_DEVICE],
  ['socks5', KEY_SOCKS_DEVICE],
] as const) {
  test(`${listener}: readers slower than writers in both directions: the gateway holds back, loses nothing`, async () => {
    const target = await startTarget();
    try {
      const { client, gatewayClient, gatewayDevice } = await openTunnel(listener, key, target.port);
      const t = await target.next();
      t.pause();
      // Neither end reads; both write as fast as they are let.
      const up = firehose(client);
      const down = firehose(t);
      await settled('bytes the gateway read from the client', () => gatewayClient.bytesRead);
      await settled('bytes the gateway read from the device', () => gatewayDevice.bytesRead);
      assert.ok(up.queued > 0, 'the client still has bytes the gateway is not reading');
      assert.ok(down.queued > 0, 'the target still has bytes the gateway is not reading');
      assert.ok(gatewayDevice.writableLength <= GATEWAY_BOUND, `gateway buffers ${gatewayDevice.writableLength} bytes for the device`);
      assert.ok(gatewayClient.writableLength <= GATEWAY_BOUND, `gateway buffers ${gatewayClient.writableLength} bytes for the client`);
      assert.ok(gatewayClient.readableLength <= GATEWAY_BOUND, `gateway holds ${gatewayClient.readableLength} unread client bytes`);
      assert.ok(gatewayDevice.readableLength <= GATEWAY_BOUND, `gateway holds ${gatewayDevice.readableLength} unread device bytes`);

      // Release both readers: everything written arrives, in order, and the tunnel closes cleanly.
      const upSha = up.stop();
      const downSha = down.stop();
      const upBytes = up.written;
      const downBytes = down.written;
      // The target finishes last: the `proxy` package closes its target connection outright on the target's
      // FIN, which would cut the upload still in flight (device-first half-close is tested below).
      const reading = Promise.all([drain(t, 20_000), drain(client, 20_000)]);
      client.end();
      await waitFor('the upload to reach the target', 20_000, () => t.readableEnded, 20);
      t.end();
      const [atTarget, atClient] = await reading;
      assert.equal(atTarget.bytes, upBytes, `gateway read ${gatewayClient.bytesRead} from the client, wrote ${gatewayDevice.bytesWritten} to the device`);
      assert.equal(atTarget.sha, upSha);
      assert.equal(atClient.bytes, downBytes, `gateway read ${gatewayDevice.bytesRead} from the device, wrote ${gatewayClient.bytesWritten} to the client`);
      assert.equal(atClient.sha, downSha);
      await h.settle(5_000);
    } finally {
      await target.close();
    }
  });

}

test('a client whose FIN arrives with its CONNECT (before the relay exists) still gets its answer, both listeners', async () => {
  const echo = await startEchoTarget('127.0.0.1');
  try {
    const k = Buffer.from(KEY_SOCKS_DEVICE);
    const data = Buffer.from('one small request, then FIN in the same segment');
    const heads: [number, Buffer, number][] = [
      [h.httpPort, Buffer.from(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nProxy-Authorization: Basic ${Buffer.from(`${KEY_SOCKS_DEVICE}:${KEY_SOCKS_DEVICE}`).toString('base64')}\r\n\r\n`), 39],
      [h.socksPort, Buffer.concat([Buffer.from([5, 1, 2, 1, k.length]), k, Buffer.from([k.length]), k, Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, echo.port >> 8, echo.port & 0xff])]), 14],
    ];
    for (const [port, head, replyLength] of heads) {
      const r = await rawExchange(port, [Buffer.concat([head, data])], { end: true, timeoutMs: 5_000 });
      assert.ok(r.closed, 'the echo target saw our FIN and closed');
      assert.equal(r.data.subarray(replyLength).toString(), data.toString());
    }
    await h.settle(5_000);
  } finally {
    await echo.close();
  }
});

/**
 * `first` sends its bytes and FIN; the other side reads them to their end, then (well after that FIN went
 * through the gateway) sends its own answer and FIN the other way, which must arrive whole.
 */
async function halfCloseRound(listener: Listener, key: string, first: 'client' | 'device'): Promise<void> {
  const target = await startTarget();
  try {
    const { client, gatewayClient } = await openTunnel(listener, key, target.port);
    const t = await target.next();
    const [early, late] = first === 'client' ? [client, t] : [t, client];
    const firstBytes = randomBytes(300_000);
    early.end(firstBytes);
    assert.equal((await drain(late, 5_000)).sha, sha256(firstBytes));
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(!gatewayClient.destroyed, `the tunnel is still open after the ${first} finished`);
    const answer = randomBytes(500_000);
    late.end(answer);
    assert.equal((await drain(early, 5_000)).sha, sha256(answer));
    await h.settle(5_000);
  } finally {
    await target.close();
  }
}

// The `proxy` package turns a target's FIN into a full close (its target socket is not half-open), so the
// device-first rounds go through the SOCKS5 device, which passes half-close on.
for (const [listener, key, first] of [
  ['http', KEY_HTTP_DEVICE, 'client'],
  ['socks5', KEY_HTTP_DEVICE, 'client'],
  ['http', KEY_SOCKS_DEVICE, 'device'],
  ['socks5', KEY_SOCKS_DEVICE, 'device'],
] as const) {
  test(`${listener}: a ${first} FIN ends only that direction; the answer after it still arrives`, () => halfCloseRound(listener, key, first));
}

test('authentication: username must equal password byte for byte, and only a valid UTF-8 key is looked up', async () => {
  const key = 'sk-relay-auth-check-0003';
  h.resolver.bind(key, { ip: '127.0.0.1', port: httpDevice.port });
  const target = await startTarget();
  try {
    const attempt = async (user: Buffer, pass: Buffer): Promise<number> => {
      const lookups = h.resolver.lookups;
      const s = net.connect({ host: '127.0.0.1', port: h.socksPort });
      clients.push(s);
      s.on('error', () => {});
      s.write(Buffer.concat([Buffer.from([5, 1, 2, 1, user.length]), user, Buffer.from([pass.length]), pass]));
      const got = await readExactly(s, 4).catch(() => Buffer.alloc(0));
      s.destroy();
      assert.deepEqual([...got.subarray(0, 3)], [5, 2, 1]);
      return got[3]! | ((h.resolver.lookups - lookups) << 8);
    };
    const k = Buffer.from(key);
    const sameLengthWrong = Buffer.from(key.slice(0, -1) + 'X');
    // status | lookups << 8: a refused password never reaches the key store.
    assert.equal(await attempt(k, k), 0 | (1 << 8));
    assert.equal(await attempt(k, sameLengthWrong), 1);
    assert.equal(await attempt(sameLengthWrong, k), 1);
    assert.equal(await attempt(k, Buffer.from(key + 'X')), 1);
    const notUtf8 = Buffer.from([0x73, 0x6b, 0xff, 0xfe]);
    assert.equal(await attempt(notUtf8, notUtf8), 1);
    // Multi-byte UTF-8 keys hash to what hashKey(key) gives.
    const unicodeKey = 'sk-relay-ключ-0004';
    h.resolver.bind(unicodeKey, { ip: '127.0.0.1', port: httpDevice.port });
    const u = Buffer.from(unicodeKey);
    assert.equal(await attempt(u, u), 0 | (1 << 8));
    await h.settle(5_000);
  } finally {
    await target.close();
  }
});
