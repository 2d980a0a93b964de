// TAILGATE_WORKERS=2 in a real child process (src/main.ts through tsx, as `npm run dev` runs it): one gateway on real
// PostgreSQL, one on the embedded store, both started at once. Real curl and raw CONNECT tunnels as clients, the
// third-party `proxy` package as the device. Each guarantee of README "Worker processes" across the two workers:
// a registration is usable on the next connection whichever worker takes it, a revocation cuts the key's tunnels in
// both, /metrics is the sum, maxTunnels is one count, a worker killed with SIGKILL is replaced while the other serves,
// and SIGTERM drains both with every byte in usage_hourly.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { glibcTunables, setsTrimThreshold } from '../src/core/malloc.js';
import { openStore, type NodeStore, type RegistryStore } from '../src/store/index.js';
import { waitFor } from '../testbed/wait.js';
import { adminCall, openTunnel } from './helpers/connect-tunnel.js';
import { curl } from './helpers/curl.js';
import type { TestDatabase } from './helpers/db.js';
import type { Device } from './helpers/devices.js';
import type { GatewayProcess } from './helpers/gateway-process.js';
import { GatewayScene } from './helpers/gateway-scene.js';
import { listen, type EchoTarget, type Listening } from './helpers/targets.js';
import { echoThrough, usageOf } from './helpers/usage.js';

let scene: GatewayScene;
let db: TestDatabase;
/** Each gateway's data directory is a folder in it. */
let dataDir = '';
let device: Device;
let web: Listening;
let echo: EchoTarget;
/** On PostgreSQL; usage is written only at shutdown (a flush interval of 10 minutes), so the last batch is all of it. */
let gw: GatewayProcess;
/** On the embedded store, the same way. */
let emb: GatewayProcess;
let deviceId = 0;

const WORKERS = { TAILGATE_WORKERS: '2', TAILGATE_USAGE_FLUSH_MS: '600000', TAILGATE_SHUTDOWN_GRACE_MS: '8000' };

before(async () => {
  scene = await GatewayScene.open({ label: 'workers' });
  ({ db, dataDir, device, web, echo } = scene);
  [gw, emb] = await Promise.all([
    scene.startGatewayProcess({ ...WORKERS, DATABASE_URL: db.url, TAILGATE_DATA_DIR: dataDir + '/pg-unused' }),
    scene.startGatewayProcess({ ...WORKERS, TAILGATE_DATA_DIR: dataDir + '/embedded' }),
  ]);
  deviceId = await scene.registerDevice(gw, 'workers-device-key-0123456789', 'workers-dev');
});

after(() => scene?.close());

/** Every sample of /metrics, by name with its labels as printed (`name{a="b"}`). */
async function samples(g: GatewayProcess): Promise<Map<string, number>> {
  const res = await fetch(`http://127.0.0.1:${g.ports.api}/metrics`, { headers: { authorization: `Bearer ${g.token}` }, signal: AbortSignal.timeout(10_000) });
  assert.equal(res.status, 200);
  const out = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

/** A gauge per worker, by worker id. */
async function perWorker(g: GatewayProcess, name: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const [k, v] of await samples(g)) {
    const m = new RegExp(`^${name}\\{worker="(\\d+)"\\}$`).exec(k);
    if (m) out.set(m[1]!, v);
  }
  return out;
}

/** Worker ids and pids, from their "worker listening" lines. */
function workerPids(g: GatewayProcess): Map<number, number> {
  const out = new Map<number, number>();
  for (const line of g.output().split('\n')) {
    if (!line.includes('"worker listening"')) continue;
    const j = JSON.parse(line) as { worker: number; pid: number };
    out.set(j.worker, j.pid);
  }
  return out;
}

const viaHttp = (g: GatewayProcess, key: string) => ['-p', '-x', `http://${key}:${key}@127.0.0.1:${g.ports.http}`];
const viaSocks = (g: GatewayProcess, key: string) => ['--socks5-hostname', `${key}:${key}@127.0.0.1:${g.ports.socks}`];
const url = () => `http://127.0.0.1:${web.port}/`;

async function newKey(g: GatewayProcess, name: string, extra: Record<string, unknown> = {}): Promise<{ id: number; key: string }> {
  const r = await adminCall(g.ports.api, g.token, 'POST', '/keys', { name, device: deviceId, ...extra });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  return { id: r.json.id, key: r.json.key };
}

/** A raw tunnel to the echo target (or `target`), and the worker it landed on (the one whose open count went up). */
async function tunnelOn(g: GatewayProcess, key: string, target = echo.port): Promise<{ s: net.Socket; worker: string }> {
  const before = await perWorker(g, 'tailgate_worker_tunnels_open');
  const s = await openTunnel(g.ports.http, key, target);
  const worker = await waitFor('the tunnel counted by its worker', 5_000, async () => {
    for (const [w, n] of await perWorker(g, 'tailgate_worker_tunnels_open')) if (n > (before.get(w) ?? 0)) return w;
    return undefined;
  }, 20);
  return { s, worker };
}

/** One tunnel open on each worker. */
async function tunnelOnEach(g: GatewayProcess, key: string, target = echo.port): Promise<net.Socket[]> {
  const held = new Map<string, net.Socket>();
  const spare: net.Socket[] = [];
  for (let i = 0; i < 12 && held.size < 2; i++) {
    const t = await tunnelOn(g, key, target);
    if (held.has(t.worker)) spare.push(t.s);
    else held.set(t.worker, t.s);
  }
  assert.equal(held.size, 2, 'twelve tunnels all landed on one worker');
  return [...held.values(), ...spare];
}

function closed(s: net.Socket): Promise<void> {
  return new Promise((resolve) => (s.destroyed ? resolve() : s.once('close', () => resolve())));
}

/** Writes `text` into a tunnel to the echo target and waits for it to come back. */
function echoes(s: net.Socket, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = '';
    const timer = setTimeout(() => reject(new Error(`no echo of ${text}`)), 5_000);
    const onData = (c: Buffer) => {
      got += c.toString();
      if (!got.includes(text)) return;
      clearTimeout(timer);
      s.off('data', onData);
      resolve();
    };
    s.on('data', onData);
    s.write(text);
  });
}

test('a registration is usable on the very next connection through either worker, also after the key was refused there', async () => {
  for (let i = 0; i < 4; i++) {
    const key = `workers-register-key-${i}-0123456789`;
    // Refused first on both listeners (so each worker that took one remembers the key as unknown) ...
    for (const via of [viaHttp, viaSocks]) {
      const r = await curl([...via(gw, key), url()]);
      assert.notEqual(r.exitCode, 0, 'an unregistered key is refused');
    }
    const reg = await adminCall(gw.ports.api, gw.token, 'POST', '/register', { key, ip: '127.0.0.1', port: device.port });
    assert.equal(reg.status, 201, JSON.stringify(reg.json));
    // ... and used at once on both after POST /register answered.
    for (const via of [viaHttp, viaSocks, viaHttp, viaSocks]) {
      const r = await curl([...via(gw, key), url()]);
      assert.equal(r.exitCode, 0, `connection right after registration: ${r.stderr}`);
      assert.equal(r.httpCode, 200);
    }
  }
  // POST /keys the same way: a key made on the API, used at once.
  for (let i = 0; i < 6; i++) {
    const k = await newKey(gw, `workers-new-${i}`);
    const r = await curl([...(i % 2 === 0 ? viaHttp : viaSocks)(gw, k.key), url()]);
    assert.equal(r.exitCode, 0, r.stderr);
  }
  const served = await perWorker(gw, 'tailgate_worker_tunnels_established');
  assert.equal(served.size, 2, `both workers export their count: ${JSON.stringify([...served])}`);
  for (const [w, n] of served) assert.ok(n > 0, `worker ${w} served ${n} tunnels`);
  // The sum /metrics answers is the workers' counts added up, and every tunnel the test opened (22).
  const all = await samples(gw);
  let total = 0;
  for (const [k, v] of all) if (k.startsWith('tailgate_tunnels_total{')) total += v;
  assert.equal(total, [...served.values()].reduce((a, b) => a + b, 0));
  assert.equal(total, 4 * 4 + 6);
});

test('a revocation cuts the key’s open tunnels on both workers at once, and the API counts them all', async () => {
  const k = await newKey(gw, 'workers-revoke');
  const tunnels = await tunnelOnEach(gw, k.key);
  const open = await perWorker(gw, 'tailgate_worker_tunnels_open');
  assert.equal([...open.values()].reduce((a, b) => a + b, 0), tunnels.length, '/metrics sums the open tunnels of both workers');
  assert.equal(await gw.metric('tailgate_tunnels_open'), tunnels.length);
  const stats = await adminCall(gw.ports.api, gw.token, 'GET', '/stats');
  assert.equal(stats.json.tunnelsOpen, tunnels.length, 'GET /stats counts the workers’ tunnels');
  for (const s of tunnels) await echoes(s, 'still here');
  const started = performance.now();
  const r = await adminCall(gw.ports.api, gw.token, 'DELETE', `/keys/${k.id}`);
  const answeredMs = performance.now() - started;
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.json.tunnelsClosed, tunnels.length, 'the answer counts the tunnels of both workers');
  await Promise.race([
    Promise.all(tunnels.map(closed)),
    new Promise((_, reject) => setTimeout(() => reject(new Error('tunnels still open 1 s after the revocation')), 1_000)),
  ]);
  const cutMs = performance.now() - started;
  // Cut before the API answered: the answer waits for each worker's count.
  assert.ok(cutMs < answeredMs + 1_000, `cut ${cutMs.toFixed(0)} ms after the call, answered after ${answeredMs.toFixed(0)} ms`);
  for (const via of [viaHttp, viaSocks, viaHttp, viaSocks]) assert.notEqual((await curl([...via(gw, k.key), url()])).exitCode, 0, 'the revoked key is refused');
  await waitFor('no tunnel left open', 5_000, async () => (await gw.metric('tailgate_tunnels_open')) === 0, 20);
  process.stdout.write(`# revocation: API answered in ${answeredMs.toFixed(0)} ms, ${tunnels.length} tunnels on 2 workers closed within ${cutMs.toFixed(0)} ms\n`);
});

test('maxTunnels is one count over both workers', async () => {
  const k = await newKey(gw, 'workers-max', { limits: { maxTunnels: 3 } });
  const attempts = await Promise.allSettled(Array.from({ length: 8 }, () => openTunnel(gw.ports.http, k.key, echo.port)));
  const admitted = attempts.filter((a): a is PromiseFulfilledResult<net.Socket> => a.status === 'fulfilled').map((a) => a.value);
  const refused = attempts.filter((a) => a.status === 'rejected').map((a) => String((a as PromiseRejectedResult).reason));
  assert.equal(admitted.length, 3, `admitted ${admitted.length}: ${refused.join('; ')}`);
  for (const why of refused) assert.match(why, /429/);
  // Refusals were counted by both workers: the 8 connections spread over both.
  assert.equal(await gw.metric('tailgate_limit_refusals_total'), 5);
  // One more on whichever worker: still refused; after one closes, exactly one more gets in.
  await assert.rejects(openTunnel(gw.ports.http, k.key, echo.port), /429/);
  admitted[0]!.destroy();
  await waitFor('the place given back', 5_000, async () => (await gw.metric('tailgate_tunnels_open')) === 2, 20);
  const again = await Promise.allSettled(Array.from({ length: 3 }, () => openTunnel(gw.ports.http, k.key, echo.port)));
  assert.equal(again.filter((a) => a.status === 'fulfilled').length, 1);
  for (const a of [...admitted, ...again.filter((x) => x.status === 'fulfilled').map((x) => (x as PromiseFulfilledResult<net.Socket>).value)]) a.destroy();
  await waitFor('no tunnel left open', 5_000, async () => (await gw.metric('tailgate_tunnels_open')) === 0, 20);
});

test('a bandwidth cap is one cap over both workers: each runs at its share of the key’s tunnels', async () => {
  const cap = 1024 * 1024;
  const k = await newKey(gw, 'workers-cap', { limits: { bytesPerSecondDown: cap } });
  // An echo target of its own: its connections are held up by backpressure when the tunnels are cut, and are
  // destroyed at the end instead of waiting for a peer that no longer reads.
  const held = new Set<net.Socket>();
  const mirror = net.createServer((s) => {
    held.add(s);
    s.on('error', () => {});
    s.on('close', () => held.delete(s));
    s.pipe(s);
  });
  const mirrorPort = await listen(mirror, '127.0.0.1');
  const tunnels = await tunnelOnEach(gw, k.key, mirrorPort);
  let received = 0;
  let pumping = true;
  const chunk = Buffer.alloc(64 * 1024, 7);
  for (const s of tunnels) {
    s.on('data', (c: Buffer) => (received += c.length));
    s.on('error', () => {});
    const pump = () => {
      while (pumping && s.write(chunk));
    };
    s.on('drain', pump);
    pump();
  }
  // The shares are told once each worker reported its tunnels; from then on the two add up to the cap.
  await new Promise((r) => setTimeout(r, 700));
  const from = received;
  const started = performance.now();
  await new Promise((r) => setTimeout(r, 3_000));
  const seconds = (performance.now() - started) / 1000;
  const rate = (received - from) / seconds;
  pumping = false;
  for (const s of tunnels) s.destroy();
  process.stdout.write(`# bandwidth cap ${cap} B/s over ${tunnels.length} tunnels on 2 workers: ${rate.toFixed(0)} B/s (${((rate / cap) * 100).toFixed(1)} %)\n`);
  // The bound over a window: the rate, plus each worker's bucket (100 ms of its share, at least 64 KiB) and one read per
  // tunnel; each worker at the full cap would move twice the cap.
  const bound = cap + (2 * 64 * 1024 + tunnels.length * 64 * 1024) / seconds;
  assert.ok(rate <= bound, `${rate.toFixed(0)} B/s is over the cap's bound ${bound.toFixed(0)}`);
  assert.ok(rate >= cap * 0.7, `${rate.toFixed(0)} B/s is well under the cap: the split starves a worker`);
  await waitFor('no tunnel left open', 5_000, async () => (await gw.metric('tailgate_tunnels_open')) === 0, 20);
  for (const s of held) s.destroy();
  mirror.close();
});

test('every worker runs with the malloc trim threshold, which the primary adds to its environment', async () => {
  const pids = workerPids(gw);
  assert.equal(pids.size, 2);
  for (const pid of pids.values()) {
    const environ = (await readFile(`/proc/${pid}/environ`, 'latin1')).split('\0');
    const tunables = environ.find((v) => v.startsWith('GLIBC_TUNABLES='));
    assert.equal(tunables, `GLIBC_TUNABLES=${glibcTunables(process.env.GLIBC_TUNABLES)}`, `worker ${pid}`);
    assert.ok(setsTrimThreshold(tunables!.slice('GLIBC_TUNABLES='.length)));
  }
});

test('a worker killed with SIGKILL is replaced; the other keeps serving and only the killed one’s connections fail', async () => {
  const k = await newKey(gw, 'workers-kill');
  // One tunnel on each worker (`a`, `b`), then any that landed on a worker already holding one.
  const opened = await tunnelOnEach(gw, k.key);
  const [a, b] = opened;
  const pids = workerPids(gw);
  const open = await perWorker(gw, 'tailgate_worker_tunnels_open');
  assert.equal(open.size, 2);
  const [victimId] = [...open.keys()];
  const victimPid = pids.get(Number(victimId))!;
  assert.ok(victimPid > 0, `pid of worker ${victimId}`);
  // Two clients one request after another throughout.
  let running = true;
  let ok = 0;
  const failures: string[] = [];
  const lane = async (via: typeof viaHttp) => {
    while (running) {
      const r = await curl([...via(gw, k.key), url()], 5_000);
      if (r.exitCode === 0) ok++;
      else failures.push(`${r.exitCode} ${r.stderr.trim()}`);
    }
  };
  const lanes = [lane(viaHttp), lane(viaSocks)];
  await waitFor('some requests served', 10_000, () => ok >= 4, 20);
  process.kill(victimPid, 'SIGKILL');
  const killedAt = ok;
  const tunnels = [a!, b!];
  // The killed worker's tunnel breaks; the other's goes on echoing.
  await Promise.race([Promise.any(tunnels.map(closed)), new Promise((_, reject) => setTimeout(() => reject(new Error('no tunnel broke')), 5_000))]);
  const survivor = tunnels.find((s) => !s.destroyed)!;
  assert.ok(survivor !== undefined, "the other worker's tunnel is still open");
  await echoes(survivor, 'after the kill');
  await waitFor('the replacement listening', 20_000, () => gw.output().includes('replacement worker listening'), 50);
  await waitFor('requests served after the replacement', 20_000, () => ok >= killedAt + 8, 20);
  running = false;
  await Promise.all(lanes);
  // At most the requests in flight when the worker died (one per lane).
  assert.ok(failures.length <= 2, `failed: ${failures.join(' | ')}`);
  assert.equal(await gw.metric('tailgate_worker_restarts_total'), 1);
  const served = await perWorker(gw, 'tailgate_worker_tunnels_established');
  assert.ok(!served.has(victimId!), 'the dead worker is gone from /metrics');
  assert.equal(served.size, 2, `the survivor and the replacement: ${JSON.stringify([...served])}`);
  const res = await fetch(`http://127.0.0.1:${gw.ports.api}/readyz`, { signal: AbortSignal.timeout(5_000) });
  assert.equal(res.status, 200);
  await echoes(survivor, 'still');
  // The spares too: one left open on the survivor would hold its drain in the next test for the whole grace period.
  for (const s of opened) s.destroy();
  process.stdout.write(`# kill -9: ${ok} requests served, ${failures.length} failed (${failures.join(' | ')})\n`);
});

test('SIGTERM drains both workers: open tunnels finish within the grace period, and usage_hourly has every byte', async () => {
  const k = await newKey(gw, 'workers-drain');
  // Known bytes through both workers first (written only by the shutdown flush: the interval is 10 minutes).
  let up = 0;
  let down = 0;
  let count = 0;
  for (let i = 0; i < 4; i++) {
    const m = await echoThrough(gw.ports.http, k.key, echo.port, 10_000 + i);
    up += m.up;
    down += m.down;
    count++;
  }
  const tunnels = await tunnelOnEach(gw, k.key);
  count += tunnels.length;
  const exited = new Promise<number | null>((resolve) => gw.child.once('exit', (code) => resolve(code)));
  const signalled = performance.now();
  gw.child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 300));
  // Both still carry bytes after the signal, then finish on their own.
  for (const s of tunnels) {
    await echoes(s, 'draining');
    up += 'draining'.length;
    down += 'draining'.length;
  }
  for (const s of tunnels) s.end();
  await Promise.all(tunnels.map(closed));
  const code = await Promise.race([exited, new Promise<'late'>((r) => setTimeout(() => r('late'), 15_000))]);
  assert.equal(code, 0, `the gateway exited ${String(code)}: ${gw.output().slice(-2000)}`);
  const tookMs = performance.now() - signalled;
  assert.ok(tookMs < 8_000, `drained in ${tookMs.toFixed(0)} ms, within the 8 s grace period (tunnels ended by their clients)`);
  const usage = await usageOf(db.sql, 'key_id', k.id);
  assert.deepEqual(usage, { up, down, tunnels: count, refused: 0, failures: 0 });
  assert.equal(gw.output().split('"msg":"worker draining"').length - 1, 2, 'both workers drained');
});

test('the embedded store: a registration through both workers, and SIGTERM writes every byte', async () => {
  const key = 'workers-embedded-key-0123456789';
  const reg = await adminCall(emb.ports.api, emb.token, 'POST', '/register', { key, ip: '127.0.0.1', port: device.port });
  assert.equal(reg.status, 201, JSON.stringify(reg.json));
  let up = 0;
  for (let i = 0; i < 6; i++) {
    const m = await echoThrough(emb.ports.http, key, echo.port, 5_000 + i);
    up += m.up;
  }
  const served = await perWorker(emb, 'tailgate_worker_tunnels_established');
  assert.equal(served.size, 2);
  for (const [w, n] of served) assert.ok(n > 0, `worker ${w} served ${n}`);
  assert.equal(await emb.stop(), 0);
  const store: NodeStore & RegistryStore = await openStore({ database: undefined, dataDir: dataDir + '/embedded', log: pino({ level: 'silent' }) });
  try {
    const totals = await store.usageTotals('key', new Date(Date.now() - 3_600_000), new Date(Date.now() + 3_600_000));
    const mine = totals.find((t) => t.id === reg.json.node.id);
    assert.ok(mine !== undefined, JSON.stringify(totals));
    assert.equal(mine.bytesUp, up);
    assert.equal(mine.bytesDown, up);
    assert.equal(mine.tunnels, 6);
  } finally {
    await store.close();
  }
});
