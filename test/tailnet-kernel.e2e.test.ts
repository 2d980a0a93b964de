// Kernel mode end to end (TS_USERSPACE=false): tailgate as `node src/main.ts` supervising a tailscaled with a TUN device,
// a device approved through POST /register, curl through both listeners. The device is reached by its 100.x address
// with the kernel's TCP stack through the TUN device (no LocalAPI hop): the proof is the kernel socket from our own
// 100.x address to the device's, and the bytes the TUN device counted.
//
// Run as root: the file re-runs itself inside a private network namespace (unshare -n), where it builds the offline
// scene (testbed/tailnet-scene.ts); /dev/net/tun is the host's, the TUN device it creates lives in that namespace.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe } from 'node:test';
import { fileURLToPath } from 'node:url';
import { curl, type CurlResult } from './helpers/curl.js';
import { defineNetnsRun, sceneSteps } from './helpers/netns-run.js';
import { closeScene, openScene, outerDatabase, sceneGateway } from './helpers/scene-setup.js';
import { LineTunnel, type startEcho, type startWhoami } from './helpers/tailnet-clients.js';
import type { SceneGateway } from '../testbed/tailnet-gateway.js';
import { CONTROL_IP, DEVICE_PROXY_PORT, run, type TailnetScene, type SceneDevice } from '../testbed/tailnet-scene.js';
import { waitFor } from '../testbed/wait.js';

const thisFile = fileURLToPath(import.meta.url);
const SCENE_TIMEOUT_MS = 6 * 60_000;
/** tailscaled's default TUN device name. */
const TUN = 'tailscale0';

const inside = defineNetnsRun(thisFile, 'tailnet kernel mode end to end', SCENE_TIMEOUT_MS, outerDatabase('tnkernel'));

if (inside) {
  describe('tailnet kernel mode (inside the namespace)', { timeout: SCENE_TIMEOUT_MS }, () => {
    let tmp: { dir: string; remove(): Promise<void> };
    let scene: TailnetScene;
    let gw: SceneGateway;
    let device: SceneDevice;
    let deviceIp = '';
    let whoami: Awaited<ReturnType<typeof startWhoami>>;
    let echo: Awaited<ReturnType<typeof startEcho>>;
    let tunnel: LineTunnel | undefined;

    const viaHttp = (key: string, url: string, extra: string[] = []) => curl(['-x', `http://${key}:${key}@127.0.0.1:${gw.opts.ports.http}`, ...extra, url], 30_000);
    const viaSocks = (key: string, url: string) => curl(['-x', `socks5h://${key}:${key}@127.0.0.1:${gw.opts.ports.socks}`, url], 30_000);
    const remoteOf = (r: CurlResult) => {
      assert.equal(r.exitCode, 0, `curl failed: ${r.stderr} ${r.headers['x-tailgate-error'] ?? ''}`);
      assert.match(r.stdout, /^\{/, `not the destination's answer: ${r.stdout}`);
      return (JSON.parse(r.stdout) as { remote: string }).remote;
    };
    // /proc/net is this namespace's view (/sys/class/net is the one of the namespace that mounted /sys).
    const tunStats = () => readFileSync('/proc/net/dev', 'utf8').split('\n').find((l) => l.trim().startsWith(`${TUN}:`));
    const tunBytes = (dir: 'rx' | 'tx') => {
      const fields = tunStats()?.split(':')[1]?.trim().split(/\s+/);
      assert.ok(fields, `${TUN} is in /proc/net/dev`);
      return Number(fields[dir === 'rx' ? 0 : 8]);
    };
    /** Established kernel TCP sockets to the device's proxy, as `local peer` pairs. */
    const kernelSockets = async () =>
      (await run('ss', ['-Htn', 'state', 'established', 'dst', `${deviceIp}:${DEVICE_PROXY_PORT}`]))
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => l.trim().split(/\s+/).slice(-2).join(' '));

    const { step, diagnose } = sceneSteps(() => scene?.diagnostics(gw ? { [gw.name]: gw.socket } : {}));

    before(async () => {
      // Assigned first thing, so that after() and the diagnostics find them even when the start fails.
      await openScene('tailgate-kernel', async (opened) => {
        ({ tmp, scene, whoami, echo } = opened);
        device = await scene.addDevice('device-k', 1);
        gw = sceneGateway(opened, { name: 'tailgate-kernel', env: { TS_USERSPACE: 'false' } });
        await gw.start();
      }, diagnose);
    });

    after(async () => {
      tunnel?.close();
      await closeScene({ tmp, scene, whoami, echo }, [gw]);
    });

    step('tailscaled runs without userspace networking and has made a TUN device in the namespace', async () => {
      const pid = gw.tailscaledPid();
      assert.ok(pid, 'tailgate started its tailscaled');
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      assert.ok(!argv.some((a) => a.startsWith('--tun=userspace')), `tailscaled's arguments: ${argv.join(' ')}`);
      assert.ok(!argv.some((a) => a.startsWith('--socks5-server')), 'no SOCKS5 server: kernel mode dials with the kernel');
      assert.ok(tunStats(), `${TUN} exists`);
      assert.match(await run('ip', ['-o', 'addr', 'show', 'dev', TUN]), /inet 100\.\d+\.\d+\.\d+\/32/);
      assert.match(gw.log(), /"mode":"kernel \(TUN\)"/);
      assert.equal((await gw.api('GET', '/readyz', undefined, {})).json.tailnet, 'ok');
    });

    step('POST /register approves the device; the kernel routes its 100.x address into the TUN device', async () => {
      const res = await gw.api('POST', '/register', { key: device.registrationKey });
      assert.equal(res.status, 201, JSON.stringify(res.json));
      deviceIp = (res.json.node as { ip: string }).ip;
      assert.match(deviceIp, /^100\./);
      assert.match(await run('ip', ['route', 'get', deviceIp]), new RegExp(`dev ${TUN}\\b`));
    });

    step("curl through both listeners egresses at the device, the bytes crossing the TUN device", async () => {
      const [rx, tx] = [tunBytes('rx'), tunBytes('tx')];
      const started = Date.now();
      assert.equal(remoteOf(await viaHttp(device.registrationKey, `${whoami.url}/connect`, ['-p'])), device.addr);
      const firstMs = Date.now() - started;
      assert.equal(remoteOf(await viaHttp(device.registrationKey, `${whoami.url}/forward`)), device.addr);
      assert.equal(remoteOf(await viaSocks(device.registrationKey, `${whoami.url}/socks`)), device.addr);
      // Three requests and their answers: a few hundred bytes each way at the least, TCP and WireGuard aside.
      assert.ok(tunBytes('tx') - tx > 600 && tunBytes('rx') - rx > 600, `TUN counted tx +${tunBytes('tx') - tx}, rx +${tunBytes('rx') - rx} bytes`);
      assert.ok(firstMs < 3_000, `the first request after approval took ${firstMs} ms`);
    });

    step('an open tunnel is a kernel TCP connection from our 100.x address to the device’s, not a LocalAPI dial', async () => {
      tunnel = await LineTunnel.open(gw.opts.ports.http, device.registrationKey, `${CONTROL_IP}:${echo.port}`);
      assert.equal(await tunnel.ask('one'), `${device.addr} one`);
      const selfIp = (await run('ip', ['-o', '-4', 'addr', 'show', 'dev', TUN])).match(/inet (100\.[\d.]+)\//)?.[1];
      assert.ok(selfIp, 'the TUN device has our tailnet address');
      const sockets = await kernelSockets();
      assert.ok(sockets.some((s) => s.startsWith(`${selfIp}:`)), `a kernel socket ${selfIp} -> ${deviceIp}:${DEVICE_PROXY_PORT}: ${JSON.stringify(sockets)}`);
      assert.equal(await tunnel.ask('two'), `${device.addr} two`);
      tunnel.close();
      tunnel = undefined;
    });

    step("killing tailgate's tailscaled fails connections fast (503 / SOCKS 0x03), then the supervisor brings it back", async () => {
      const pid = gw.tailscaledPid();
      assert.ok(pid);
      process.kill(pid, 'SIGKILL');
      await waitFor('/readyz to report the tailnet down', 5_000, async () => ((await gw.readyStatus()) === 503 ? true : undefined), 50);
      const started = Date.now();
      const http = await viaHttp(device.registrationKey, `${whoami.url}/down`, ['-p']);
      const socks = await viaSocks(device.registrationKey, `${whoami.url}/down`);
      const elapsed = Date.now() - started;
      assert.equal(http.connectCode, 503, http.stderr);
      assert.equal(http.headers['x-tailgate-error'], 'network-down');
      assert.equal(socks.exitCode, 97, socks.stderr);
      assert.match(socks.stderr, /\(3\)|network unreachable/i, socks.stderr);
      assert.ok(elapsed < 2_000, `failed fast (${elapsed} ms for both)`);

      await waitFor('tailnet back', 90_000, async () => ((await gw.readyStatus()) === 200 ? true : undefined), 250);
      assert.notEqual(gw.tailscaledPid(), pid, 'a new tailscaled runs');
      await waitFor('the device reachable again', 30_000, async () => (await viaHttp(device.registrationKey, `${whoami.url}/probe`)).stdout.startsWith('{') || undefined, 500);
      assert.equal(remoteOf(await viaHttp(device.registrationKey, `${whoami.url}/after`, ['-p'])), device.addr);
      assert.equal(remoteOf(await viaSocks(device.registrationKey, `${whoami.url}/after`)), device.addr);
    });

    step('SIGTERM stops tailgate and its tailscaled, which takes the TUN device with it', async () => {
      assert.equal(await gw.stop(), 0);
      assert.equal(gw.tailscaledPid(), undefined, 'no tailscaled left behind');
      await waitFor(`${TUN} removed`, 10_000, () => (tunStats() === undefined ? true : undefined), 100);
    });
  });
}
