// The tailnet path end to end with real processes and no network: headscale, tailgate (as `node src/main.ts`,
// supervising its own tailscaled joined with TS_AUTHKEY), two devices that join interactively and are approved
// through tailgate's POST /register, each with a third-party HTTP proxy, and curl as the client.
//
// Run as root: the file re-runs itself inside a private network namespace (unshare -n), where it builds the scene
// (see testbed/tailnet-scene.ts). Needs the pinned Go tools (scripts/go-tools.sh builds them; no Go = failure).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe } from 'node:test';
import { fileURLToPath } from 'node:url';
import { OFFLINE_PROBE_MS } from '../src/tunnel/connector.js';
import { findPeer, LocalApiClient } from '../src/tailnet/localapi.js';
import { curl, type CurlResult } from './helpers/curl.js';
import { LineTunnel, startWhoami, type startEcho } from './helpers/tailnet-clients.js';
import { defineNetnsRun, sceneSteps } from './helpers/netns-run.js';
import { closeScene, openScene, outerDatabase, SCENE_CONNECT_TIMEOUT_MS, SCENE_PORTS, sceneGateway } from './helpers/scene-setup.js';
import type { SceneGateway } from '../testbed/tailnet-gateway.js';
import { CONTROL_IP, type TailnetScene, type SceneDevice } from '../testbed/tailnet-scene.js';
import { waitFor } from '../testbed/wait.js';

const thisFile = fileURLToPath(import.meta.url);
const SCENE_TIMEOUT_MS = 12 * 60_000;
const CONNECT_TIMEOUT_MS = SCENE_CONNECT_TIMEOUT_MS;

const inside = defineNetnsRun(thisFile, 'tailnet path end to end', SCENE_TIMEOUT_MS, outerDatabase('tailnet'));

if (inside) {
  describe('tailnet path (inside the namespace)', { timeout: SCENE_TIMEOUT_MS }, () => {
    const adminToken = randomBytes(24).toString('hex');
    const enrollToken = randomBytes(24).toString('hex');
    const auth = { authorization: `Bearer ${adminToken}` };
    const api = `http://127.0.0.1:${SCENE_PORTS.api}`;
    const httpProxy = SCENE_PORTS.http;
    const socksProxy = SCENE_PORTS.socks;
    let tmp: { dir: string; remove(): Promise<void> };
    let scene: TailnetScene;
    let tailgate: SceneGateway;
    let a: SceneDevice;
    let b: SceneDevice;
    /** Approved late and killed to reproduce a device dying under a kept-alive forwarding connection. */
    let c: SceneDevice;
    let aIps: string[];
    let bIps: string[];
    let whoami: Awaited<ReturnType<typeof startWhoami>>;
    let echo: Awaited<ReturnType<typeof startEcho>>;
    let longTunnel: LineTunnel | undefined;
    let nodeIdA = 0;
    /** The pool of A and B, its key (a secret: never logged) and the key's id. */
    let poolId = 0;
    let poolKeyId = 0;
    let poolKey = '';

    const apiCall = (method: string, url: string, body?: unknown, headers: Record<string, string> = auth) => tailgate.api(method, url, body, headers);
    const viaHttp = (key: string, url: string, extra: string[] = []) => curl(['-x', `http://${key}:${key}@127.0.0.1:${httpProxy}`, ...extra, url], 30_000);
    const viaSocks = (key: string, url: string) => curl(['-x', `socks5h://${key}:${key}@127.0.0.1:${socksProxy}`, url], 30_000);
    /** A pool key with user name parameters (`user` is `KEY-session-…`); the password is the key alone. */
    const viaPoolHttp = (user: string, url: string, extra: string[] = []) => curl(['-x', `http://${user}:${poolKey}@127.0.0.1:${httpProxy}`, ...extra, url], 30_000);
    const viaPoolSocks = (user: string, url: string) => curl(['-x', `socks5h://${user}:${poolKey}@127.0.0.1:${socksProxy}`, url], 30_000);
    const metricsText = async () => {
      const res = await fetch(`${api}/metrics`, { headers: auth });
      assert.equal(res.status, 200);
      return res.text();
    };
    const failovers = async () => Number(/^tailgate_failovers_total (\d+)/m.exec(await metricsText())?.[1] ?? NaN);
    const remoteOf = (r: CurlResult) => {
      assert.equal(r.exitCode, 0, `curl failed: ${r.stderr}`);
      assert.match(r.stdout, /^\{/, `not the destination's answer: ${r.stdout}`);
      return (JSON.parse(r.stdout) as { remote: string }).remote;
    };
    /** pid of the tailscaled tailgate runs, found by its --socket argument. */
    const gatewayTailscaledPid = (): number | undefined => tailgate.tailscaledPid();
    const tailgateLog = () => tailgate.log();
    /** On the file's first failure: what each party believed and the end of every log. */
    const { step, diagnose } = sceneSteps(() => scene?.diagnostics(tailgate ? { [tailgate.name]: tailgate.socket } : {}));
    /** True once a request with this key comes back from the destination (the netmap may lag an approval a little). */
    const reaches = async (key: string) => (await viaHttp(key, `${whoami.url}/probe`)).stdout.startsWith('{') || undefined;

    before(async () => {
      // Assigned first thing, so that after() and the diagnostics find them even when the start fails.
      await openScene('tailgate-e2e', async (opened) => {
        ({ tmp, scene, whoami, echo } = opened);
        [a, b, c] = await Promise.all([scene.addDevice('device-a', 1), scene.addDevice('device-b', 2), scene.addDevice('device-c', 3)]);
        // The same state directory at every start (the restart step starts it again).
        tailgate = sceneGateway(opened, {
          name: 'tailgate',
          adminToken,
          enrollToken,
          env: process.env.TAILGATE_E2E_DIAL_MODE ? { TS_DIAL_MODE: process.env.TAILGATE_E2E_DIAL_MODE } : {},
        });
        await tailgate.start();
      }, diagnose);
    });

    after(async () => {
      longTunnel?.close();
      await closeScene({ tmp, scene, whoami, echo }, [tailgate]);
    });

    step('tailgate joined the tailnet with TS_AUTHKEY and /readyz reports it', async () => {
      const ready = await apiCall('GET', '/readyz', undefined, {});
      assert.equal(ready.status, 200);
      assert.equal(ready.json.tailnet, 'ok');
      const nodes = await scene.nodes();
      assert.ok(nodes.some((n) => n.name === 'tailgate'), `headscale lists the gateway: ${JSON.stringify(nodes.map((n) => n.name))}`);
      assert.ok(gatewayTailscaledPid(), 'tailscaled runs as tailgate child with the configured socket');
    });

    step('devices join without an auth key; the registration key is the one in the printed URL', () => {
      for (const d of [a, b]) {
        assert.match(d.registrationKey, /^hskey-authreq-[A-Za-z0-9_-]{24}$/);
        assert.ok(scene.logOf(`${d.name}-up`).includes(`/register/${d.registrationKey}`), 'tailscale up printed the URL');
      }
      assert.notEqual(a.registrationKey, b.registrationKey);
    });

    step('/register without a token is refused', async () => {
      const res = await apiCall('POST', '/register', { key: a.registrationKey }, {});
      assert.equal(res.status, 401);
    });

    step('POST /register {key} approves device A in Headscale and binds the key to its tailnet address', async () => {
      const res = await apiCall('POST', '/register', { key: a.registrationKey });
      assert.equal(res.status, 201, JSON.stringify(res.json));
      assert.equal(res.json.success, true);
      aIps = await scene.deviceIps(a);
      const node = res.json.node as { id: number; ip: string; ipv6: string | null; headscaleNodeId: string; name: string };
      assert.equal(node.ip, aIps.find((ip) => ip.includes('.')));
      assert.equal(node.ipv6, aIps.find((ip) => ip.includes(':')) ?? null);
      assert.equal(node.name, 'device-a');
      const inHeadscale = (await scene.nodes()).find((n) => n.name === 'device-a');
      assert.equal(inHeadscale?.id, node.headscaleNodeId);
      nodeIdA = node.id;
    });

    step("K_A through both listeners egresses at device A (the destination sees A's address)", async () => {
      // /register warmed the path up (netmap + WireGuard handshake), so the very first request goes through at once.
      const started = Date.now();
      assert.equal(remoteOf(await viaHttp(a.registrationKey, `${whoami.url}/http`)), a.addr);
      assert.ok(Date.now() - started < 3_000, `first request after approval took ${Date.now() - started} ms`);
      assert.equal(remoteOf(await viaHttp(a.registrationKey, `${whoami.url}/connect`, ['--proxytunnel'])), a.addr);
      assert.equal(remoteOf(await viaSocks(a.registrationKey, `${whoami.url}/socks`)), a.addr);
      assert.notEqual(a.addr, b.addr);
    });

    step('B is approved (GET /registerV2/:key, enrollment token) and used with no restart, while a tunnel through A stays up', async () => {
      longTunnel = await LineTunnel.open(httpProxy, a.registrationKey, `${CONTROL_IP}:${echo.port}`);
      assert.equal(await longTunnel.ask('one'), `${a.addr} one`);

      const res = await apiCall('GET', `/registerV2/${b.registrationKey}`, undefined, { authorization: `Bearer ${enrollToken}` });
      assert.equal(res.status, 201, JSON.stringify(res.json));
      bIps = await scene.deviceIps(b);
      assert.equal((res.json.node as { ip: string }).ip, bIps.find((ip) => ip.includes('.')));
      assert.equal(remoteOf(await viaHttp(b.registrationKey, `${whoami.url}/b`)), b.addr);
      assert.equal(remoteOf(await viaSocks(b.registrationKey, `${whoami.url}/b`)), b.addr);
      assert.equal(remoteOf(await viaHttp(a.registrationKey, `${whoami.url}/a-again`)), a.addr);

      assert.equal(await longTunnel.ask('two'), `${a.addr} two`);
    });

    step('re-registering is idempotent; unknown and malformed keys are refused clearly', async () => {
      const again = await apiCall('POST', '/register', { key: a.registrationKey });
      assert.equal(again.status, 200, JSON.stringify(again.json));
      assert.equal((again.json.node as { ip: string }).ip, aIps.find((ip) => ip.includes('.')));

      const unknown = await apiCall('POST', '/register', { key: `hskey-authreq-${'x'.repeat(24)}` });
      assert.equal(unknown.status, 404, JSON.stringify(unknown.json));
      assert.match(JSON.stringify(unknown.json), /registration cache/);

      const malformed = await apiCall('POST', '/register', { key: 'not-a-registration-key' });
      assert.equal(malformed.status, 400, JSON.stringify(malformed.json));
    });

    step('GET /nodes shows both devices online', async () => {
      await waitFor('both online', 20_000, async () => {
        const res = await apiCall('GET', '/nodes');
        const list = res.json as unknown as { ip: string; online: boolean | null }[];
        return list.length === 2 && list.every((n) => n.online === true) ? true : undefined;
      });
    });

    // Sticky sessions over a pool of the two real devices. Both sessions are put on A, the device the next step
    // revokes anyway, so killing A's tailscaled here takes nothing from the steps after it.
    let s1 = '';
    let s2 = '';
    const soft = () => `${poolKey}-session-${s1}`;
    const strict = () => `${poolKey}-session-${s2}-strict-1`;

    step('a pool key over A and B: a soft and a strict session each keep their device on both listeners', async () => {
      const devices = (await apiCall('GET', '/devices')).json as unknown as { id: number; name: string }[];
      const idOf = (name: string) => devices.find((d) => d.name === name)?.id;
      assert.equal(idOf('device-a'), nodeIdA, 'a registered device has the id of its node');
      const pool = await apiCall('POST', '/pools', { name: 'real-devices', devices: [idOf('device-a'), idOf('device-b')] });
      assert.equal(pool.status, 201, JSON.stringify(pool.json));
      poolId = pool.json.id as number;
      const key = await apiCall('POST', '/keys', { name: 'real-pool', pool: poolId });
      assert.equal(key.status, 201, JSON.stringify(key.json));
      poolKeyId = key.json.id as number;
      poolKey = key.json.key as string;

      // A session's device is a rendezvous choice over the pool: try names until one lands on A.
      const sessionOnA = async (prefix: string, strictOne: boolean) => {
        for (let i = 0; i < 40; i++) {
          const name = `${prefix}_${i}`;
          const r = await viaPoolHttp(`${poolKey}-session-${name}${strictOne ? '-strict-1' : ''}`, `${whoami.url}/pick`, ['-p']);
          if (remoteOf(r) === a.addr) return name;
        }
        assert.fail(`no ${prefix} session name out of 40 landed on A`);
      };
      s1 = await sessionOnA('soft', false);
      s2 = await sessionOnA('strict', true);

      for (let i = 0; i < 3; i++) {
        assert.equal(remoteOf(await viaPoolHttp(soft(), `${whoami.url}/s1-http-${i}`)), a.addr, `s1 forwarded request ${i}`);
        assert.equal(remoteOf(await viaPoolHttp(soft(), `${whoami.url}/s1-connect-${i}`, ['-p'])), a.addr, `s1 CONNECT ${i}`);
        assert.equal(remoteOf(await viaPoolSocks(soft(), `${whoami.url}/s1-socks-${i}`)), a.addr, `s1 SOCKS5 ${i}`);
      }
      assert.equal(remoteOf(await viaPoolHttp(strict(), `${whoami.url}/s2-http`)), a.addr);
      assert.equal(remoteOf(await viaPoolSocks(strict(), `${whoami.url}/s2-socks`)), a.addr);
    });

    step("with A's tailscaled killed, the soft session's next connection leaves through B within the connect timeout and stays there; the strict session is refused with session_device_down", async () => {
      const failoversBefore = await failovers();
      a.tailscaled.kill('SIGKILL');
      await waitFor("A's tailscaled to exit", 5_000, () => (a.tailscaled.exitCode !== null || a.tailscaled.signalCode !== null ? true : undefined), 20);

      // The tailnet still calls A online (control's grace), so this connection dials A first and must move.
      let started = Date.now();
      const moved = await viaPoolHttp(soft(), `${whoami.url}/s1-moved`, ['-p']);
      const movedMs = Date.now() - started;
      assert.equal(moved.connectCode, 200, `the moved connection: ${moved.headers['x-tailgate-error'] ?? ''} ${moved.stderr}`);
      assert.equal(remoteOf(moved), b.addr, 'the soft session left through the other device');
      assert.ok(movedMs < CONNECT_TIMEOUT_MS + 1_500, `moved within the connect timeout: ${movedMs} ms`);
      const moves = (await failovers()) - failoversBefore;
      assert.ok(moves >= 1, `tailgate_failovers_total counted the move (+${moves})`);

      for (let i = 0; i < 2; i++) {
        assert.equal(remoteOf(await viaPoolHttp(soft(), `${whoami.url}/s1-after-connect-${i}`, ['-p'])), b.addr, `s1 CONNECT ${i} after the move`);
        assert.equal(remoteOf(await viaPoolSocks(soft(), `${whoami.url}/s1-after-socks-${i}`)), b.addr, `s1 SOCKS5 ${i} after the move`);
        assert.equal(remoteOf(await viaPoolHttp(soft(), `${whoami.url}/s1-after-http-${i}`)), b.addr, `s1 forwarded request ${i} after the move`);
      }

      // Whether the tailnet already calls A offline or A is dialled and stays silent, the strict session is refused.
      started = Date.now();
      const refused = await viaPoolHttp(strict(), `${whoami.url}/s2-connect`, ['-p']);
      const strictMs = Date.now() - started;
      assert.equal(refused.connectCode, 502, refused.stderr);
      assert.equal(refused.headers['x-tailgate-error'], 'session_device_down');
      assert.ok(strictMs < CONNECT_TIMEOUT_MS + 1_500, `refused within the connect timeout: ${strictMs} ms`);

      const deviceA = async () => (await apiCall('GET', `/devices/${nodeIdA}`)).json as { health: { state: string; reason: string | null } };
      started = Date.now();
      await waitFor('A down (offline) in GET /devices/:id', 60_000, async () => {
        const { health } = await deviceA();
        return health.state === 'down' && health.reason === 'offline' ? true : undefined;
      }, 250);
      const offlineAfterMs = Date.now() - started;
      assert.match(await metricsText(), /^tailgate_device_up\{device="device-a"\} 0$/m);
      assert.match(await metricsText(), /^tailgate_device_up\{device="device-b"\} 1$/m);

      // Once the board has A down, the strict session is refused at once on every path.
      started = Date.now();
      const viaConnect = await viaPoolHttp(strict(), `${whoami.url}/s2-connect-offline`, ['-p']);
      const viaForward = await viaPoolHttp(strict(), `${whoami.url}/s2-http-offline`);
      const viaSocks5 = await viaPoolSocks(strict(), `${whoami.url}/s2-socks-offline`);
      const knownDownMs = Date.now() - started;
      assert.equal(viaConnect.connectCode, 502, viaConnect.stderr);
      assert.equal(viaConnect.headers['x-tailgate-error'], 'session_device_down');
      assert.equal(viaForward.httpCode, 502, viaForward.stderr);
      assert.equal(viaForward.headers['x-tailgate-error'], 'session_device_down');
      assert.equal(viaSocks5.exitCode, 97, viaSocks5.stderr);
      assert.match(viaSocks5.stderr, /\(4\)|unreachable/i, viaSocks5.stderr);
      assert.ok(knownDownMs < 2_000, `refused at once: ${knownDownMs} ms for all three`);
      assert.equal(remoteOf(await viaPoolHttp(soft(), `${whoami.url}/s1-still-b`, ['-p'])), b.addr);
      process.stderr.write(
        `pool session: moved connection ${movedMs} ms (failovers +${moves}), strict refusal ${strictMs} ms before the board knew, ` +
          `A down on the board ${offlineAfterMs} ms later, strict refusals ${knownDownMs} ms for three once known\n`,
      );

      // The pool goes, so revoking A's key (the next step) deletes device A as before instead of keeping it as a member.
      assert.equal((await apiCall('DELETE', `/keys/${poolKeyId}`)).status, 200);
      assert.equal((await apiCall('DELETE', `/pools/${poolId}`)).status, 200);
    });

    step('revoking K_A (with purge) closes its open tunnel at once, refuses the key, and deletes A in Headscale', async () => {
      const res = await apiCall('DELETE', `/nodes/${nodeIdA}?purge=true`);
      assert.equal(res.status, 200, JSON.stringify(res.json));
      assert.equal(await longTunnel!.waitClosed(2_000), true, 'the open tunnel was cut');
      const refused = await viaHttp(a.registrationKey, `${whoami.url}/`);
      assert.equal(refused.httpCode, 407);
      assert.ok(!(await scene.nodes()).some((n) => n.name === 'device-a'), 'device-a is gone from headscale');
      assert.equal(remoteOf(await viaHttp(b.registrationKey, `${whoami.url}/b-still`)), b.addr);
    });

    step("killing tailgate's tailscaled fails connections fast (503 / SOCKS 0x03), then the supervisor brings it back", async () => {
      // Leaves a kept-alive device connection in tailgate's forwarding pool: it must not swallow the next request.
      assert.equal(remoteOf(await viaHttp(b.registrationKey, `${whoami.url}/before-kill`)), b.addr);
      const pid = gatewayTailscaledPid();
      assert.ok(pid);
      process.kill(pid, 'SIGKILL');
      await waitFor('/readyz to report the tailnet down', 5_000, async () => ((await fetch(`${api}/readyz`)).status === 503 ? true : undefined), 50);

      const started = Date.now();
      const http = await viaHttp(b.registrationKey, `${whoami.url}/`);
      const socks = await viaSocks(b.registrationKey, `${whoami.url}/`);
      const elapsed = Date.now() - started;
      assert.equal(http.httpCode, 503, 'HTTP proxy answers 503 while the tailnet is down');
      assert.equal(socks.exitCode, 97, `curl: SOCKS5 connection refused by the proxy: ${socks.stderr}`);
      assert.match(socks.stderr, /\(3\)|network unreachable/i, socks.stderr);
      assert.ok(elapsed < 2_000, `failed fast (${elapsed} ms for both)`);

      await waitFor('tailnet back', 90_000, async () => ((await fetch(`${api}/readyz`)).status === 200 ? true : undefined), 250);
      const newPid = gatewayTailscaledPid();
      assert.ok(newPid && newPid !== pid, 'a new tailscaled runs');
      await waitFor('B reachable again', 30_000, () => reaches(b.registrationKey), 500);
      assert.equal(remoteOf(await viaHttp(b.registrationKey, `${whoami.url}/after-restart`)), b.addr);
      assert.equal(remoteOf(await viaSocks(b.registrationKey, `${whoami.url}/after-restart`)), b.addr);
    });

    step('after a restart, /readyz says ready only once control\'s netmap is in and the path to each registered device is up, and the first request then goes through at once', async () => {
      assert.equal(await tailgate.stop(), 0);
      const restartedAt = Date.now();
      await tailgate.start();
      const readyAfter = Date.now() - restartedAt;
      // What tailgate's tailscaled holds at the moment /readyz first said ready (polled every 20 ms).
      const gw = new LocalApiClient(tailgate.socket);
      try {
        const status = await gw.status(2_000);
        assert.equal(status.BackendState, 'Running');
        assert.equal(status.Self?.Online, true, 'ready before tailscaled was in the map poll with control');
        const peerB = findPeer(status, bIps.find((ip) => ip.includes('.'))!);
        assert.ok(peerB, 'ready while the registered device B was missing from the netmap');
        // Ready means usable: the WireGuard handshake with B happened during start-up, not on the first request.
        const handshake = Date.parse(peerB.LastHandshake ?? '');
        assert.ok(Number.isFinite(handshake) && handshake >= restartedAt - 1_000, `ready with no WireGuard session to B since the restart (last handshake ${peerB.LastHandshake})`);
      } finally {
        await gw.close();
      }
      let started = Date.now();
      assert.equal(remoteOf(await viaHttp(b.registrationKey, `${whoami.url}/first-after-restart`)), b.addr);
      const httpMs = Date.now() - started;
      started = Date.now();
      assert.equal(remoteOf(await viaSocks(b.registrationKey, `${whoami.url}/first-after-restart`)), b.addr);
      const socksMs = Date.now() - started;
      assert.ok(httpMs < 2_000 && socksMs < 2_000, `first requests after ready took ${httpMs} ms (HTTP) and ${socksMs} ms (SOCKS5)`);
      assert.match(tailgateLog(), /tailnet ready: netmap from control, registered devices warmed up/);
      process.stderr.write(`restart: ready after ${readyAfter} ms, first request ${httpMs} ms (HTTP), ${socksMs} ms (SOCKS5)\n`);
    });

    step('a forwarded request on a kept-alive connection to a device that just died fails within the connect timeout, and an offline device is not reused', async () => {
      const res = await apiCall('POST', '/register', { key: c.registrationKey });
      assert.equal(res.status, 201, JSON.stringify(res.json));
      const cIp = (res.json.node as { ip: string }).ip;
      // A plain request leaves a kept-alive connection to C in tailgate's forwarding pool (kept 4 s).
      assert.equal(remoteOf(await viaHttp(c.registrationKey, `${whoami.url}/c`)), c.addr);
      c.tailscaled.kill('SIGKILL');
      await waitFor("C's tailscaled to exit", 5_000, () => (c.tailscaled.exitCode !== null || c.tailscaled.signalCode !== null ? true : undefined), 20);
      let started = Date.now();
      const dead = await viaHttp(c.registrationKey, `${whoami.url}/c-dead`, ['-v']);
      const deadMs = Date.now() - started;
      assert.match(dead.stderr, /^< HTTP\/1\.1 (504|502) /m, dead.stderr);
      assert.match(dead.stderr, /^< x-tailgate-error: (timeout|offline)\r?$/im, dead.stderr);
      // The connect timeout is 8 s here; the idle timeout (300 s) must play no part.
      assert.ok(deadMs < CONNECT_TIMEOUT_MS + 2_000, `answered after ${deadMs} ms`);

      const nodeOnline = async () => ((await apiCall('GET', '/nodes')).json as unknown as { ip: string; online: boolean | null }[]).find((n) => n.ip === cIp)?.online;
      await waitFor('tailgate to report C offline', 60_000, async () => ((await nodeOnline()) === false ? true : undefined), 250);
      started = Date.now();
      const offline = await viaHttp(c.registrationKey, `${whoami.url}/c-offline`, ['-v']);
      const offlineMs = Date.now() - started;
      assert.match(offline.stderr, /^< HTTP\/1\.1 502 /m, offline.stderr);
      assert.match(offline.stderr, /^< x-tailgate-error: offline\r?$/im, offline.stderr);
      assert.ok(offlineMs < OFFLINE_PROBE_MS + 1_500, `failed within ${offlineMs} ms`);
      assert.match(tailgateLog(), /connection through the device failed/, 'each failure is logged with its cause');
      process.stderr.write(`dead device: pooled request answered after ${deadMs} ms, offline device after ${offlineMs} ms\n`);
    });

    step('a device cut off from Headscale is reported offline yet still dialled over its live session; once it is gone, connections fail fast', async () => {
      const bIp = bIps.find((ip) => ip.includes('.'))!;
      const nodeOnline = async () => ((await apiCall('GET', '/nodes')).json as unknown as { ip: string; online: boolean | null }[]).find((n) => n.ip === bIp)?.online;
      // Control's online flag only says whether B keeps its control connection; its direct path to us stays up.
      // The cut takes CONTROL_IP (where whoami listens) away from B, so B's traffic goes to its veth neighbour here.
      const nearB = await startWhoami(b.addr.replace(/\.\d+$/, '.1'));
      after(() => nearB.server.close());
      await scene.cutControl(b);
      await waitFor('Headscale and tailgate to report B offline', 30_000, async () => ((await nodeOnline()) === false ? true : undefined), 250);
      assert.ok(!(await scene.nodes()).find((n) => n.name === 'device-b')?.online, 'headscale reports B offline');
      // CONNECT opens a new device connection every time (a forwarded request could reuse a pooled one).
      assert.equal(remoteOf(await viaHttp(b.registrationKey, `${nearB.url}/control-offline`, ['--proxytunnel'])), b.addr, 'B is still reachable, so it is still dialled');

      // Now B is really gone: a connection fails with the offline reason well inside the 8 s connect timeout.
      b.tailscaled.kill('SIGKILL');
      await waitFor("B's tailscaled to exit", 5_000, () => (b.tailscaled.exitCode !== null || b.tailscaled.signalCode !== null ? true : undefined), 20);
      const started = Date.now();
      const gone = await viaHttp(b.registrationKey, `${nearB.url}/gone`, ['--proxytunnel', '-v']);
      const elapsed = Date.now() - started;
      assert.match(gone.stderr, /^< HTTP\/1\.1 502 /m, gone.stderr);
      assert.match(gone.stderr, /^< x-tailgate-error: offline\r?$/im, gone.stderr);
      assert.ok(elapsed < OFFLINE_PROBE_MS + 1_500, `failed within ${elapsed} ms`);
    });

    step("no secret reached tailgate's log or its tailscaled's command line", () => {
      const log = tailgateLog();
      assert.ok(log.includes('tailgate listening'), 'the log was captured');
      for (const [name, secret] of [
        ['TS_AUTHKEY', scene.preAuthKey],
        ['HEADSCALE_API_KEY', scene.apiKey],
        ['admin token', adminToken],
        ['enrollment token', enrollToken],
        ['key A', a.registrationKey],
        ['key B', b.registrationKey],
        ['key C', c.registrationKey],
        ['pool key', poolKey],
      ] as const) {
        assert.ok(!log.includes(secret), `${name} appears in the log`);
      }
      const pid = gatewayTailscaledPid();
      assert.ok(pid);
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      const environ = readFileSync(`/proc/${pid}/environ`, 'utf8');
      assert.ok(!argv.includes(scene.preAuthKey) && !environ.includes(scene.preAuthKey), "the auth key is not in tailscaled's argv or environment");
    });

    step('SIGTERM stops tailgate cleanly, tailscaled included', async () => {
      assert.equal(await tailgate.stop(), 0);
      assert.equal(gatewayTailscaledPid(), undefined, 'no tailscaled left behind');
    });
  });
}
