// A whole tailnet on one machine, offline: headscale plus device tailscaleds, each device in its own network
// namespace joined to the scene's namespace by a veth pair. Meant to run inside a private network namespace
// (see spawnInPrivateNetns), so no packet can leave the machine.
//
//   scene netns (the test process, headscale, tailgate + its tailscaled, the destination servers)
//     lo: 127.0.0.1, 10.99.0.1/32  <- headscale's server_url, DERP and STUN address
//     tgd1 10.99.1.1/24 ==veth== eth0 10.99.1.2/24  device 1 netns (tailscaled, HTTP proxy on 127.0.0.1:8939)
//     tgd2 10.99.2.1/24 ==veth== eth0 10.99.2.2/24  device 2 netns
// Devices route everything to the scene netns; forwarding is off there, so devices cannot reach each other, and a
// connection a device's proxy makes to 10.99.0.1 arrives from that device's own 10.99.N.2: the proof of egress.
import { spawn, execFile, type ChildProcess, type ChildProcessByStdio } from 'node:child_process';
import { createWriteStream, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { LocalApiClient, type LocalStatus } from '../src/tailnet/localapi.js';
import { tailscaledsOnSocket } from '../src/tailnet/tailscaled-process.js';
import type { TailnetTools } from './tailnet-tools.js';
import { waitFor } from './wait.js';

export const CONTROL_IP = '10.99.0.1';
export const HEADSCALE_PORT = 8080;
export const HEADSCALE_URL = `http://${CONTROL_IP}:${HEADSCALE_PORT}`;
export const DEVICE_PROXY_PORT = 8939;
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * What tailscaled needs to work with no internet: no log uploads, no port mapping probes, no "network is down"
 * pause (the scene has no default route), and DERP over plain HTTP to headscale's embedded DERP server.
 */
export const OFFLINE_TAILSCALE_ENV: Record<string, string> = {
  TS_NO_LOGS_NO_SUPPORT: 'true',
  TS_DISABLE_PORTMAPPER: '1',
  TS_ASSUME_NETWORK_UP_FOR_TEST: '1',
  TS_DEBUG_USE_DERP_HTTP: '1',
};

/** True in the namespace spawnInPrivateNetns made (it passes down the namespace it was started from). */
export function inPrivateNetns(): boolean {
  const outer = process.env.TAILGATE_E2E_OUTER_NETNS;
  return outer !== undefined && outer !== '' && readlinkSync('/proc/self/ns/net') !== outer;
}

export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 30_000, maxBuffer: 8 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${path.basename(cmd)} ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

export interface SceneDevice {
  name: string;
  /** The device's own address on its veth: what a server in the scene sees when the device's proxy connects. */
  addr: string;
  netnsPid: number;
  socket: string;
  localApi: LocalApiClient;
  /** Registration key from the auth URL `tailscale up` printed (hskey-authreq-… on headscale 0.29). */
  registrationKey: string;
  authUrl: string;
  tailscaled: ChildProcess;
  /** The device's proxy on 127.0.0.1:DEVICE_PROXY_PORT of its namespace. */
  proxy: ChildProcess;
}

export interface DeviceOptions {
  /** The device's proxy command line (listening on 127.0.0.1:DEVICE_PROXY_PORT, printing a line with "ready"); default: the npm `proxy` package. */
  proxy?: string[];
  /** Pin the device's tailscaled and proxy to this CPU (benchmarks). */
  cpu?: number;
}

export class TailnetScene {
  private readonly procs: ChildProcess[] = [];
  readonly devices: SceneDevice[] = [];
  apiKey = '';
  preAuthKey = '';
  readonly user = 'tailgate';
  private headscaleConfig = '';

  private constructor(
    readonly tools: TailnetTools,
    readonly dir: string,
  ) {}

  static async start(tools: TailnetTools, dir: string): Promise<TailnetScene> {
    if (!inPrivateNetns()) throw new Error('the tailnet scene must run inside a private network namespace (spawnInPrivateNetns)');
    const scene = new TailnetScene(tools, dir);
    try {
      await scene.startHeadscale();
    } catch (err) {
      await scene.close();
      throw err;
    }
    return scene;
  }

  /** Environment for a tailscaled / tailgate in this scene (offline switches included). */
  tailscaleEnv(): NodeJS.ProcessEnv {
    return { ...process.env, ...OFFLINE_TAILSCALE_ENV };
  }

  spawnLogged(name: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
    const log = createWriteStream(path.join(this.dir, `${name}.log`), { flags: 'a' });
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.pipe(log, { end: false });
    child.stderr!.pipe(log, { end: false });
    child.once('exit', () => setTimeout(() => log.end(), 100));
    this.procs.push(child);
    return child;
  }

  logOf(name: string): string {
    try {
      return readFileSync(path.join(this.dir, `${name}.log`), 'utf8');
    } catch {
      return '';
    }
  }

  headscaleCli(args: string[]): Promise<string> {
    return run(this.tools.headscale, ['-c', this.headscaleConfig, ...args]);
  }

  private async startHeadscale(): Promise<void> {
    await run('ip', ['link', 'set', 'lo', 'up']);
    await run('ip', ['addr', 'add', `${CONTROL_IP}/32`, 'dev', 'lo']);
    const hsDir = path.join(this.dir, 'headscale');
    await mkdir(hsDir, { recursive: true });
    this.headscaleConfig = path.join(hsDir, 'config.yaml');
    // Offline DERP: the embedded DERP server on headscale's own (plain HTTP) listener, announced with a fixed IPv4,
    // and STUN on the same address so each tailscaled learns an endpoint it can be reached on directly.
    await writeFile(
      this.headscaleConfig,
      `server_url: ${HEADSCALE_URL}
listen_addr: 0.0.0.0:${HEADSCALE_PORT}
metrics_listen_addr: 127.0.0.1:9090
grpc_listen_addr: 127.0.0.1:50443
grpc_allow_insecure: false
noise:
  private_key_path: ${hsDir}/noise_private.key
prefixes:
  v4: 100.64.0.0/10
  v6: fd7a:115c:a1e0::/48
  allocation: sequential
derp:
  server:
    enabled: true
    region_id: 999
    region_code: scene
    region_name: Scene embedded DERP
    verify_clients: true
    stun_listen_addr: 0.0.0.0:3478
    private_key_path: ${hsDir}/derp_server_private.key
    automatically_add_embedded_derp_region: true
    ipv4: ${CONTROL_IP}
  urls: []
  paths: []
  auto_update_enabled: false
disable_check_updates: true
database:
  type: sqlite
  sqlite:
    path: ${hsDir}/db.sqlite
    write_ahead_log: true
log:
  level: info
  format: text
dns:
  magic_dns: false
  override_local_dns: false
  nameservers:
    global: []
unix_socket: ${hsDir}/headscale.sock
unix_socket_permission: "0770"
`,
    );
    const hs = this.spawnLogged('headscale', this.tools.headscale, ['-c', this.headscaleConfig, 'serve']);
    await waitFor('headscale /health', 30_000, async () => {
      if (hs.exitCode !== null) throw new Error(`headscale exited: ${this.logOf('headscale').slice(-1500)}`);
      const res = await fetch(`${HEADSCALE_URL}/health`);
      return res.ok ? true : undefined;
    });
    await this.headscaleCli(['users', 'create', this.user]);
    const users = JSON.parse(await this.headscaleCli(['users', 'list', '-o', 'json'])) as { id: number | string; name: string }[];
    const userId = String(users.find((u) => u.name === this.user)!.id);
    const pak = JSON.parse(await this.headscaleCli(['preauthkeys', 'create', '--user', userId, '--reusable', '--expiration', '2h', '-o', 'json'])) as { key: string };
    this.preAuthKey = pak.key;
    this.apiKey = JSON.parse(await this.headscaleCli(['apikeys', 'create', '--expiration', '2h', '-o', 'json'])) as string;
  }

  /** Nodes as headscale's CLI lists them. */
  async nodes(): Promise<{ id: string; name: string; ip_addresses: string[]; online?: boolean }[]> {
    const out = JSON.parse(await this.headscaleCli(['nodes', 'list', '-o', 'json'])) as { id: number | string; name: string; ip_addresses: string[]; online?: boolean }[] | null;
    return (out ?? []).map((n) => ({ ...n, id: String(n.id) }));
  }

  /**
   * A device in its own netns: tailscaled, an interactive `tailscale up` (no auth key) whose auth URL carries the
   * registration key, and the device's HTTP proxy. The device waits for approval; approve it through tailgate.
   */
  async addDevice(name: string, index: number, opts: DeviceOptions = {}): Promise<SceneDevice> {
    // taskset execs nsenter, which execs the command: the pinning holds for the process and its threads.
    const pin = (args: string[]): [string, string[]] => (opts.cpu === undefined ? ['nsenter', args] : ['taskset', ['-c', String(opts.cpu), 'nsenter', ...args]]);
    const holder = spawn('unshare', ['--net', '--', 'sleep', '3600'], { stdio: 'ignore' });
    this.procs.push(holder);
    const pid = holder.pid!;
    const nsPath = `/proc/${pid}/ns/net`;
    await waitFor(`netns of ${name}`, 5_000, () => (readlinkSync(nsPath) !== readlinkSync('/proc/self/ns/net') ? true : undefined), 20);
    const host = `tgd${index}`;
    const addr = `10.99.${index}.2`;
    await run('ip', ['link', 'add', host, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', String(pid)]);
    await run('ip', ['addr', 'add', `10.99.${index}.1/24`, 'dev', host]);
    await run('ip', ['link', 'set', host, 'up']);
    const inNs = (cmd: string, args: string[]) => run('nsenter', [`--net=${nsPath}`, '--', cmd, ...args]);
    await inNs('ip', ['link', 'set', 'lo', 'up']);
    await inNs('ip', ['addr', 'add', `${addr}/24`, 'dev', 'eth0']);
    await inNs('ip', ['link', 'set', 'eth0', 'up']);
    await inNs('ip', ['route', 'add', 'default', 'via', `10.99.${index}.1`]);

    const stateDir = path.join(this.dir, name);
    await mkdir(stateDir, { recursive: true });
    const socket = path.join(stateDir, 'tailscaled.sock');
    const env = this.tailscaleEnv();
    const tailscaled = this.spawnLogged(
      `${name}-tailscaled`,
      ...pin([`--net=${nsPath}`, '--', this.tools.tailscaled, `--statedir=${stateDir}`, `--socket=${socket}`, '--tun=userspace-networking']),
      env,
    );
    const localApi = new LocalApiClient(socket);
    await waitFor(`${name} tailscaled LocalAPI`, 20_000, () => localApi.status(1_000));

    // Interactive join, as a person at the device would do it: it prints a URL and waits for approval.
    this.spawnLogged(`${name}-up`, 'nsenter', [
      `--net=${nsPath}`,
      '--',
      this.tools.tailscale,
      `--socket=${socket}`,
      'up',
      `--login-server=${HEADSCALE_URL}`,
      `--hostname=${name}`,
      '--accept-dns=false',
    ], env);
    const authUrl = await waitFor(`${name} auth URL`, 30_000, async () => (await localApi.status(1_000)).AuthURL || undefined);
    const printed = await waitFor(`${name} printed auth URL`, 10_000, () => (this.logOf(`${name}-up`).includes(authUrl) ? true : undefined));
    void printed;
    const registrationKey = authUrl.slice(authUrl.lastIndexOf('/') + 1);

    const proxyCommand = opts.proxy ?? [process.execPath, '--import', 'tsx', path.join(repoRoot, 'testbed/tailnet-device-proxy.ts'), String(DEVICE_PROXY_PORT)];
    const proxy = this.spawnLogged(`${name}-proxy`, ...pin([`--net=${nsPath}`, '--', ...proxyCommand]));
    await waitFor(`${name} proxy`, 20_000, () => {
      if (proxy.exitCode !== null) throw new Error(`${name} proxy exited: ${this.logOf(`${name}-proxy`)}`);
      return this.logOf(`${name}-proxy`).includes('ready') ? true : undefined;
    });

    const device: SceneDevice = { name, addr, netnsPid: pid, socket, localApi, registrationKey, authUrl, tailscaled, proxy };
    this.devices.push(device);
    return device;
  }

  /**
   * Cuts the device off from headscale (control, DERP and STUN all live on CONTROL_IP) and ends the connections it
   * has open to it, from headscale's side so that headscale notices at once. Its direct path to tailgate (the veth
   * subnet) stays: headscale reports it offline about 10 s later (its reconnect grace), while it is still reachable.
   * Packets to CONTROL_IP go to a next hop with a MAC nobody has and vanish without an error: a route that makes
   * sends fail (prohibit, unreachable) makes tailscaled rebind its UDP socket every few seconds, which is another test.
   */
  async cutControl(device: SceneDevice): Promise<void> {
    const inNs = (args: string[]) => run('nsenter', [`--net=/proc/${device.netnsPid}/ns/net`, '--', 'ip', ...args]);
    const nowhere = device.addr.replace(/\.\d+$/, '.3');
    await inNs(['neigh', 'add', nowhere, 'lladdr', '02:00:00:00:00:01', 'dev', 'eth0', 'nud', 'permanent']);
    await inNs(['route', 'add', `${CONTROL_IP}/32`, 'via', nowhere, 'dev', 'eth0']);
    await run('ss', ['-K', '-t', 'src', CONTROL_IP, 'dst', device.addr]);
  }

  /**
   * Why a scene test failed: what headscale and each tailscaled believe about every node, then the end of every log.
   * `sockets` adds tailscaled LocalAPI sockets beyond the devices' (tailgate's own).
   */
  async diagnostics(sockets: Record<string, string> = {}, linesPerLog = 40): Promise<string> {
    const out: string[] = ['==== tailnet scene diagnostics ===='];
    try {
      const nodes = JSON.parse(await this.headscaleCli(['nodes', 'list', '-o', 'json'])) as { name: string; online?: boolean; last_seen?: { seconds?: number } }[] | null;
      for (const n of nodes ?? []) out.push(`headscale: ${n.name} online=${n.online === true} last_seen=${n.last_seen?.seconds ? new Date(n.last_seen.seconds * 1000).toISOString() : '-'}`);
    } catch (err) {
      out.push(`headscale nodes list failed: ${(err as Error).message.split('\n')[0]}`);
    }
    const all: [string, string][] = [...this.devices.map((d): [string, string] => [d.name, d.socket]), ...Object.entries(sockets)];
    for (const [name, socket] of all) {
      const api = new LocalApiClient(socket);
      try {
        const st: LocalStatus = await api.status(2_000);
        out.push(`${name} tailscaled: ${st.BackendState}`);
        for (const p of Object.values(st.Peer ?? {})) {
          out.push(
            `  peer ${p.HostName} ${p.TailscaleIPs?.join(',')} Online=${p.Online} LastSeen=${p.LastSeen} LastHandshake=${p.LastHandshake} CurAddr=${p.CurAddr} Relay=${p.Relay}`,
          );
        }
      } catch (err) {
        out.push(`${name} tailscaled status: ${(err as Error).message}`);
      } finally {
        await api.close().catch(() => undefined);
      }
    }
    for (const file of readdirSync(this.dir).filter((f) => f.endsWith('.log')).sort()) {
      const lines = this.logOf(file.slice(0, -4)).trimEnd().split('\n');
      out.push(`---- ${file} (last ${Math.min(linesPerLog, lines.length)} of ${lines.length} lines) ----`);
      for (const line of lines.slice(-linesPerLog)) out.push(line.length > 400 ? `${line.slice(0, 400)}…` : line);
    }
    // Test keys are throw-away, but CI output is no place for keys either (registration keys are proxy keys).
    let text = out.join('\n').replace(/\b(?:tskey|hskey)-[A-Za-z0-9_-]+/g, '[key]');
    for (const secret of [this.apiKey, this.preAuthKey]) if (secret.length >= 8) text = text.split(secret).join('[key]');
    return text;
  }

  async deviceIps(device: SceneDevice, timeoutMs = 30_000): Promise<string[]> {
    return waitFor(`${device.name} Running`, timeoutMs, async () => {
      const st = await device.localApi.status(1_000);
      return st.BackendState === 'Running' && st.Self?.TailscaleIPs?.length ? st.Self.TailscaleIPs : undefined;
    });
  }

  async close(): Promise<void> {
    for (const d of this.devices) await d.localApi.close().catch(() => undefined);
    const alive = this.procs.filter((p) => p.exitCode === null && p.signalCode === null);
    await Promise.all(
      alive.reverse().map(
        (p) =>
          new Promise<void>((resolve) => {
            const t = setTimeout(() => {
              p.kill('SIGKILL');
            }, 5_000);
            p.once('exit', () => {
              clearTimeout(t);
              resolve();
            });
            p.kill('SIGTERM');
          }),
      ),
    );
  }
}

/**
 * Starts `node --import tsx ...nodeArgs` (from the repository root) inside a fresh network namespace (`unshare -n`),
 * marked so that inPrivateNetns() holds there. It gets a process group of its own: `sweep()` kills whatever the
 * scene left behind (it should leave nothing) along with it.
 */
export function spawnInPrivateNetns(nodeArgs: string[], env: NodeJS.ProcessEnv): { child: ChildProcessByStdio<null, Readable, Readable>; sweep(): void } {
  const child = spawn('unshare', ['--net', '--', process.execPath, '--import', 'tsx', ...nodeArgs], {
    env: { ...env, TAILGATE_E2E_NETNS: '1', TAILGATE_E2E_OUTER_NETNS: readlinkSync('/proc/self/ns/net') },
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const sweep = () => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // group already empty
    }
  };
  return { child, sweep };
}

/** The tailscaled serving LocalAPI on `socket` (started by tailgate's supervisor), found by its command line. */
export function tailscaledPid(socket: string): number | undefined {
  return tailscaledsOnSocket(socket)[0];
}
