// The tailscaled supervisor and both userspace dialers against real headscale + tailscaled, in a private network
// namespace: start-up failures are clear and leave nothing running, restarts after a crash, failure reasons of each
// dial mode, and a clean stop.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import type { TailnetConfig } from '../src/tailnet/types.js';
import { DeviceConnector } from '../src/tunnel/connector.js';
import { HeadscaleRegistrar } from '../src/headscale/client.js';
import { startTailnet, type Tailnet } from '../src/tailnet/index.js';
import { peerCheck, WIREGUARD_SESSION_MS } from '../src/tailnet/localapi.js';
import { LocalApiDialer } from '../src/tailnet/localapi-dialer.js';
import { TailscaledSocksDialer } from '../src/tailnet/socks-dialer.js';
import { stopLeftoverTailscaleds, tailscaledsOnSocket } from '../src/tailnet/tailscaled-process.js';
import { createTempDir } from './helpers/db.js';
import { dialFails } from './helpers/dial-fails.js';
import { defineNetnsRun } from './helpers/netns-run.js';
import { HEADSCALE_URL, OFFLINE_TAILSCALE_ENV, TailnetScene, type SceneDevice } from '../testbed/tailnet-scene.js';
import { waitFor } from '../testbed/wait.js';
import { requireTailnetTools, type TailnetTools } from '../testbed/tailnet-tools.js';

/**
 * A connection to the device's proxy the way the gateway opens one: through the device connector, whose gate refuses at
 * once while the tailnet is down (the dialers themselves do not ask).
 */
function throughGate(t: Tailnet, ip: string): Promise<unknown> {
  return new DeviceConnector(t.dialer, 10_000, t.view).openDevice({ nodeId: 0, keyHash: '', ip, port: 8939, protocol: 'http' });
}

const thisFile = fileURLToPath(import.meta.url);
const TIMEOUT_MS = 5 * 60_000;

function pidsWithArg(arg: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').includes(arg)) found.push(Number(entry));
    } catch {
      // gone
    }
  }
  return found;
}

if (defineNetnsRun(thisFile, 'tailscaled supervisor and dialers', TIMEOUT_MS)) {
  describe('tailscaled supervisor and dialers', { timeout: TIMEOUT_MS }, () => {
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    let tmp: { dir: string; remove(): Promise<void> };
    let tools: TailnetTools;
    let scene: TailnetScene;
    let device: SceneDevice;
    let deviceIp = '';
    let tailnet: Tailnet | undefined;
    const config = (name: string, overrides: Partial<TailnetConfig> = {}): TailnetConfig => ({
      authKey: scene.preAuthKey,
      loginServer: HEADSCALE_URL,
      hostname: name,
      stateDir: path.join(tmp.dir, name),
      socket: path.join(tmp.dir, name, 'tailscaled.sock'),
      userspace: true,
      tailscaledBin: tools.tailscaled,
      tailscaleBin: tools.tailscale,
      dialMode: 'socks5',
      upExtraArgs: [],
      tailscaledExtraArgs: [],
      upTimeoutMs: 30_000,
      readyTimeoutMs: 30_000,
      ...overrides,
    });

    before(async () => {
      Object.assign(process.env, OFFLINE_TAILSCALE_ENV);
      tools = await requireTailnetTools();
      tmp = await createTempDir('tailgate-sup');
      scene = await TailnetScene.start(tools, tmp.dir);
      device = await scene.addDevice('device-s', 1);
      deviceIp = (await new HeadscaleRegistrar({ url: HEADSCALE_URL, apiKey: scene.apiKey, user: scene.user, timeoutMs: 5_000 }, log).approve(device.registrationKey)).ipv4;
    });
    after(async () => {
      await tailnet?.stop();
      await scene?.close();
      await tmp?.remove();
    });

    test('a rejected auth key fails start-up with a clear message and leaves no tailscaled running', async () => {
      const cfg = config('badkey', { authKey: 'hskey-auth-this-key-does-not-exist-0000000000', upTimeoutMs: 15_000 });
      await assert.rejects(startTailnet(cfg, log), /tailscale up failed|did not reach Running/);
      assert.deepEqual(pidsWithArg(`--socket=${cfg.socket}`), []);
      assert.deepEqual(readdirSync(cfg.stateDir).filter((f) => f.startsWith('.authkey')), [], 'the key file is removed');
    });

    test('a missing tailscaled binary fails start-up clearly', async () => {
      await assert.rejects(startTailnet(config('nobin', { tailscaledBin: '/nonexistent/tailscaled', upTimeoutMs: 5_000 }), log), /tailscaled exited during start-up/);
    });

    test('starts, joins with the auth key from a file (never argv), and sees the device online', async () => {
      const cfg = config('gw');
      tailnet = await startTailnet(cfg, log);
      const state = tailnet.view.state();
      assert.equal(state.running, true);
      assert.equal(state.backendState, 'Running');
      assert.ok(state.selfIps.some((ip) => ip.startsWith('100.')));
      assert.equal(tailnet.view.unavailableReason(), null);
      await waitFor('device online in the netmap', 20_000, () => (tailnet!.view.peerOnline(deviceIp) === true ? true : undefined));
      assert.equal(tailnet.view.peerOnline('100.64.99.99'), undefined);
      const argv = readFileSync(`/proc/${tailnet.supervisor.pid}/cmdline`, 'utf8');
      assert.ok(!argv.includes(scene.preAuthKey));
      assert.ok(!existsSync(path.join(cfg.stateDir, `.authkey-${process.pid}`)), 'key file removed after up');
      assert.ok(lines.some((l) => l.includes('tailscaled: ')), "tailscaled's output reaches our log with a prefix");
      assert.ok(!lines.join('').includes(scene.preAuthKey), 'the auth key is not logged');
    });

    test('each dial mode reaches the device and reports a closed port in its own words', async () => {
      const socks = new TailscaledSocksDialer(tailnet!.supervisor);
      const localapi = new LocalApiDialer(path.join(tmp.dir, 'gw', 'tailscaled.sock'));
      // The first WireGuard handshake can be dropped while the device's netmap does not list us yet; WireGuard
      // retries after 5 s (REKEY_TIMEOUT), so allow for that once.
      await waitFor('device reachable', 30_000, async () => {
        (await localapi.dial(deviceIp, 8939, 3_000)).destroy();
        return true;
      }, 250);
      for (const dialer of [socks, localapi]) {
        const s = await dialer.dial(deviceIp, 8939, 10_000);
        s.write('GET / HTTP/1.0\r\n\r\n');
        const answer = await new Promise<string>((resolve) => {
          let text = '';
          s.on('data', (c: Buffer) => (text += c.toString()));
          s.on('close', () => resolve(text));
        });
        assert.match(answer, /^HTTP\/1\.[01] \d{3}/, 'the device proxy answered');
      }
      // Nothing listens on port 9 at the device: LocalAPI tells refusal apart, tailscaled's SOCKS5 only says "failed".
      await dialFails(localapi.dial(deviceIp, 9, 10_000), 'refused', /refused/);
      await dialFails(socks.dial(deviceIp, 9, 10_000), 'unreachable', /SOCKS5 reply 1/);
    });

    test('warmUp(ip) makes the first connection to a just-approved device immediate', async (t) => {
      const second = await scene.addDevice('device-w', 2);
      const ip = (await new HeadscaleRegistrar({ url: HEADSCALE_URL, apiKey: scene.apiKey, user: scene.user, timeoutMs: 5_000 }, log).approve(second.registrationKey)).ipv4;
      const warmStart = Date.now();
      assert.equal(await tailnet!.supervisor.warmUp(ip), true);
      t.diagnostic(`warm-up took ${Date.now() - warmStart} ms`);
      // What the warm-up saw is the view now, not what the last poll (up to a second older) saw: a connection right
      // after approval must not be refused as offline.
      assert.equal(tailnet!.view.peerOnline(ip), true);
      assert.equal((await tailnet!.view.checkPeer!(ip, 1_000)).online, true);
      assert.deepEqual(await tailnet!.view.checkPeer!('100.64.99.99', 1_000), { online: undefined, liveSession: false });
      const started = Date.now();
      (await tailnet!.dialer.dial(ip, 8939, 10_000)).destroy();
      assert.ok(Date.now() - started < 1_000, `first dial took ${Date.now() - started} ms`);
      // The ping's WireGuard handshake shows in a status read taken after it (a check may reuse one up to 250 ms old).
      await waitFor('a live WireGuard session in the status', 5_000, async () => ((await tailnet!.view.checkPeer!(ip, 1_000)).liveSession ? true : undefined), 100);
      assert.equal(await tailnet!.supervisor.warmUp('100.64.99.99', 500), false, 'an address not in the netmap');
    });

    test('when tailscaled dies, dials fail at once with network-down, and it is restarted', async () => {
      const sup = tailnet!.supervisor;
      const oldPid = sup.pid!;
      process.kill(oldPid, 'SIGKILL');
      await waitFor('the exit to be noticed', 5_000, () => (sup.unavailableReason() !== null ? true : undefined), 10);
      assert.match(sup.unavailableReason()!, /tailscaled exited \(SIGKILL\); restarting|starting/);
      const started = Date.now();
      await dialFails(throughGate(tailnet!, deviceIp), 'network-down', /tailscaled/);
      assert.ok(Date.now() - started < 100, 'failed without waiting');
      assert.equal(tailnet!.view.state().running, false);
      await waitFor('Running again', 60_000, () => (sup.state().running ? true : undefined), 100);
      assert.notEqual(sup.pid, oldPid);
      assert.equal(sup.restartCount, 1);
      await waitFor('device reachable again', 20_000, async () => {
        (await tailnet!.dialer.dial(deviceIp, 8939, 5_000)).destroy();
        return true;
      }, 250);
    });

    test('when Headscale expires its node it is logged out, and it joins again with the (reusable) auth key', async () => {
      const sup = tailnet!.supervisor;
      const node = (await scene.nodes()).find((n) => n.name === 'gw');
      assert.ok(node);
      await scene.headscaleCli(['nodes', 'expire', '--identifier', node.id]);
      await waitFor('logged out', 30_000, () => (sup.state().running ? undefined : true), 50);
      assert.match(sup.unavailableReason()!, /NeedsLogin/);
      await waitFor('joined again', 60_000, () => (sup.state().running ? true : undefined), 100);
      assert.ok(lines.some((l) => l.includes('joining again with TS_AUTHKEY')));
    });

    test('stop() ends tailscaled with SIGTERM and dials are refused afterwards', async () => {
      const pid = tailnet!.supervisor.pid!;
      await tailnet!.stop();
      assert.deepEqual(pidsWithArg(`--socket=${path.join(tmp.dir, 'gw', 'tailscaled.sock')}`), []);
      assert.throws(() => process.kill(pid, 0), /ESRCH/);
      await dialFails(throughGate(tailnet!, deviceIp), 'network-down', /stopped/);
      tailnet = undefined;
    });

    test('kernel mode: a TUN device in this namespace, devices dialed by the kernel, still refused at once while down', async () => {
      tailnet = await startTailnet(config('kernel', { userspace: false }), log);
      assert.equal(tailnet.dialer.constructor.name, 'DirectDialer');
      const args = readFileSync(`/proc/${tailnet.supervisor.pid}/cmdline`, 'utf8').split('\0');
      assert.ok(!args.some((a) => a.startsWith('--tun=userspace')) && !args.some((a) => a.startsWith('--socks5-server')));
      await waitFor('device reachable through the TUN device', 30_000, async () => {
        const s = await tailnet!.dialer.dial(deviceIp, 8939, 3_000);
        s.destroy();
        return true;
      }, 250);
      process.kill(tailnet.supervisor.pid!, 'SIGKILL');
      await waitFor('the exit to be noticed', 5_000, () => (tailnet!.view.unavailableReason() !== null ? true : undefined), 10);
      await dialFails(throughGate(tailnet, deviceIp), 'network-down', /tailscaled/);
      await tailnet.stop();
      tailnet = undefined;
    });
  });
}

test("peerCheck reads tailscaled's peer status: Go's zero time means never, a session lasts WireGuard's REJECT_AFTER_TIME", () => {
  const now = Date.parse('2026-01-01T12:00:00Z');
  const zero = '0001-01-01T00:00:00Z';
  assert.deepEqual(peerCheck(undefined, now), { online: undefined, liveSession: false });
  assert.deepEqual(peerCheck({ Online: true, LastSeen: zero, LastHandshake: zero }, now), { online: true, liveSession: false });
  assert.deepEqual(peerCheck({ Online: false, LastSeen: '2026-01-01T11:59:50Z', LastHandshake: new Date(now - 1_000).toISOString() }, now), {
    online: false,
    liveSession: true,
    lastSeen: '2026-01-01T11:59:50.000Z',
  });
  assert.equal(peerCheck({ Online: false, LastHandshake: new Date(now - WIREGUARD_SESSION_MS).toISOString() }, now).liveSession, false);
  assert.equal(peerCheck({ LastHandshake: 'not a time' }, now).liveSession, false);
});

test('a tailscaled left on our socket by a killed gateway is stopped before a new one starts; one on another socket is left alone', async () => {
  const tmp = await createTempDir('tailgate-leftover');
  // Stand-ins found the way the supervisor finds a tailscaled: a program named tailscaled with --socket=<ours>.
  const fake = path.join(tmp.dir, 'tailscaled');
  symlinkSync(process.execPath, fake);
  const ours = path.join(tmp.dir, 'tailscaled.sock');
  const ready: Promise<unknown>[] = [];
  const start = (socket: string, ignoreTerm: boolean) => {
    const code = `${ignoreTerm ? "process.on('SIGTERM', () => {});" : ''} setInterval(() => {}, 1000); console.log('ready')`;
    const p = spawn(fake, ['-e', code, '--', `--socket=${socket}`], { stdio: ['ignore', 'pipe', 'ignore'] });
    ready.push(new Promise((resolve) => p.stdout.once('data', resolve)));
    return p;
  };
  const obeys = start(ours, false);
  const stubborn = start(ours, true);
  const other = start(path.join(tmp.dir, 'other.sock'), false);
  const exited = (p: ChildProcess) => new Promise<string | null>((resolve) => (p.exitCode !== null || p.signalCode !== null ? resolve(p.signalCode) : p.once('exit', (_c, s) => resolve(s))));
  try {
    await Promise.all(ready);
    assert.deepEqual(tailscaledsOnSocket(ours).sort(), [obeys.pid, stubborn.pid].sort());
    await stopLeftoverTailscaleds(ours, 500, pino({ level: 'silent' }));
    assert.deepEqual(await Promise.all([exited(obeys), exited(stubborn)]), ['SIGTERM', 'SIGKILL']);
    assert.deepEqual(tailscaledsOnSocket(ours), []);
    assert.equal(other.exitCode, null, 'a tailscaled on another socket keeps running');
    await stopLeftoverTailscaleds(ours, 500, pino({ level: 'silent' }));
  } finally {
    for (const p of [obeys, stubborn, other]) p.kill('SIGKILL');
    await tmp.remove();
  }
});
