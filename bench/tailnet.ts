// Scenario 5 of issue 4: what tailgate costs on the real tailnet path. Both paths reach the same device
// through the same tailscaled (the one tailgate supervises) and the same device tailscaled:
//
//   tailscale-socks5  client --SOCKS5--> tailscaled's own SOCKS5 server --tailnet--> device proxy --> sink
//                     (the client then sends the device proxy its CONNECT itself)
//   tailgate          client --CONNECT/SOCKS5 + key--> tailgate --LocalAPI dial--> tailscaled --tailnet--> device proxy --> sink
//   tailgate-kernel   client --CONNECT/SOCKS5 + key--> tailgate (TS_USERSPACE=false) --kernel TCP to 100.x--> TUN
//                     --> its own tailscaled --tailnet--> device proxy --> sink
//
// Real headscale and tailscaled (pinned builds from scripts/go-tools.sh), the offline scene of
// testbed/tailnet-scene.ts inside a private network namespace (`unshare -n`): no packet leaves the
// machine. The device joins without an auth key and is approved through tailgate's POST /register, as in
// production. The kernel-mode tailgate is a second node on the same database; its tailscaled makes a TUN device in the
// namespace. Pinning as in the loopback benchmark: cpu0 = both tailgates (and the tailscaleds they start), the
// device's tailscaled and proxy; cpu1 = load generator, sink, headscale, orchestrator.
//
// bench/scenarios/tailnet-overhead.ts runs this (`--only tailnet-overhead`) through runTailnetOverhead(); the
// file itself is the process inside the namespace and answers with one JSON line on stdout.
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import {
  CONTROL_IP,
  DEVICE_PROXY_PORT,
  HEADSCALE_URL,
  inPrivateNetns,
  OFFLINE_TAILSCALE_ENV,
  run,
  spawnInPrivateNetns,
  tailscaledPid,
  TailnetScene,
} from '../testbed/tailnet-scene.js';
import { requireTailnetTools, toolsEnv, type TailnetTools } from '../testbed/tailnet-tools.js';
import { waitFor } from '../testbed/wait.js';
import { glibcTunables } from '../src/core/malloc.js';
import type { ProxySpec } from './lib/client.js';
import { cpuSeconds, freePort, gatewaySample, LoadGen, procStat, spawnPinned, stop, trackGroup, waitReadyLine, type Pinned } from './lib/procs.js';
import type { Row } from './lib/report.js';
import { measureSetup, measureThroughput, type CpuSample, type Measured, type MeasureCtx } from './lib/measure.js';
import type { UsableResult } from './loadgen.js';

export interface TailnetPlan {
  repo: string;
  logDir: string;
  deviceBin: string;
  proxyCpu: number;
  endpointCpu: number;
  bytesEachWay: number;
  throughputRepeats: number;
  setupRepeats: number;
  setupSliceMs: number;
  setupConcurrency: number;
  /** Tunnels per path before the measured slices: the setup code paths are cold after the throughput runs. */
  setupWarmupTunnels: number;
  /** Also measure a tailgate in kernel mode (TS_USERSPACE=false), path `tailgate-kernel`, on these listeners. */
  kernel: boolean;
  kernelListeners: ('http' | 'socks5')[];
}

export interface TailnetOutcome {
  rows: Row[];
  details: Record<string, unknown>[];
  versions: Record<string, string>;
}

const SCENARIO_TIMEOUT_MS = 8 * 60_000;

/** From the orchestrator (outside, as root): runs this file inside a fresh network namespace and returns what it measured. */
export async function runTailnetOverhead(plan: TailnetPlan, log: (s: string) => void): Promise<TailnetOutcome> {
  const tools = await requireTailnetTools();
  const { child, sweep } = spawnInPrivateNetns([fileURLToPath(import.meta.url)], { ...process.env, ...toolsEnv(tools), BENCH_TAILNET_PLAN: JSON.stringify(plan) });
  trackGroup(child);
  let outcome: TailnetOutcome | undefined;
  let stderrTail = '';
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    if (line.startsWith('{"outcome":')) outcome = (JSON.parse(line) as { outcome: TailnetOutcome }).outcome;
    else log(line);
  });
  child.stderr.on('data', (c: Buffer) => (stderrTail = (stderrTail + c.toString('utf8')).slice(-4000)));
  const timer = setTimeout(sweep, SCENARIO_TIMEOUT_MS);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', (err: Error) => reject(new Error(`cannot run unshare (util-linux): ${err.message}`)));
    child.once('exit', resolve);
  });
  clearTimeout(timer);
  sweep();
  if (code !== 0 || !outcome) throw new Error(`the tailnet benchmark failed (exit ${code}): ${stderrTail.trim().slice(-1500)}`);
  return outcome;
}

// ---------------------------------------------------------------- inside the namespace

async function firstLine(cmd: string, args: string[]): Promise<string> {
  try {
    return (await run(cmd, args, { timeoutMs: 10_000 })).trim().split('\n')[0] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** The read and write system calls of a process so far and their bytes (/proc/<pid>/io), and its context switches. */
function ioSample(pid: number): CpuSample {
  const io = readFileSync(`/proc/${pid}/io`, 'utf8') + readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)$`, 'm').exec(io)?.[1] ?? NaN);
  return {
    gatewaySyscr: field('syscr'),
    gatewaySyscw: field('syscw'),
    gatewayRchar: field('rchar'),
    gatewayWchar: field('wchar'),
    gatewaySwitches: field('voluntary_ctxt_switches') + field('nonvoluntary_ctxt_switches'),
  };
}

async function inside(plan: TailnetPlan): Promise<TailnetOutcome> {
  const say = (s: string) => process.stdout.write(`${s}\n`);
  const tools: TailnetTools = await requireTailnetTools();
  Object.assign(process.env, OFFLINE_TAILSCALE_ENV);
  const dir = path.join(plan.logDir, 'tailnet');
  mkdirSync(dir, { recursive: true });
  const procs: Pinned[] = [];
  let loadgen: LoadGen | undefined;
  // PostgreSQL through its unix socket: the host's 127.0.0.1:5432 is not in this namespace, the socket file is.
  const dbName = `tailgate_bench_tn_${process.pid}_${Date.now()}`;
  const admin = postgres({ host: '/var/run/postgresql', user: 'postgres', database: 'postgres', max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE DATABASE ${dbName}`);
  let scene: TailnetScene | undefined;
  try {
    scene = await TailnetScene.start(tools, dir);
    say(`tailnet scene up in ${dir} (headscale at ${HEADSCALE_URL})`);
    const device = await scene.addDevice('bench-device', 1, { proxy: [plan.deviceBin, String(DEVICE_PROXY_PORT)], cpu: plan.proxyCpu });
    const sink = spawnPinned('sink', plan.endpointCpu, process.execPath, ['--import', 'tsx', 'bench/servers/sink.ts', '0', CONTROL_IP], {
      cwd: plan.repo,
      pipeStdout: true,
      logFile: path.join(dir, 'sink.log'),
    });
    procs.push(sink);
    const target = { host: CONTROL_IP, port: (await waitReadyLine(sink, 20_000)).port };

    // BENCH_TAILNET_DIAL_MODE=socks5 makes tailgate dial through that same SOCKS5 server (it then starts it itself).
    const dialMode = process.env.BENCH_TAILNET_DIAL_MODE ?? 'localapi';
    const adminToken = randomBytes(24).toString('hex');
    // Same launch line and diagnostics hook as the loopback benchmark (bench/lib/paths.ts).
    const extra = process.env.BENCH_TAILGATE_NODE_ARGS?.split(/\s+/).filter(Boolean) ?? [];
    /** One tailgate of this scene: its own ports, tailnet node and state directory; both share the database. */
    const startTailgate = async (name: string, env: Record<string, string>) => {
      const ports = { http: await freePort(), socks: await freePort(), api: await freePort() };
      const proc = spawnPinned(name, plan.proxyCpu, process.execPath, ['--initial-old-space-size=64', ...extra, 'dist/main.js'], {
        cwd: plan.repo,
        logFile: path.join(dir, `${name}.log`),
        env: {
          ...process.env,
          TAILGATE_LISTEN_HOST: '127.0.0.1',
          TAILGATE_HTTP_PORT: String(ports.http),
          TAILGATE_SOCKS_PORT: String(ports.socks),
          TAILGATE_API_PORT: String(ports.api),
          TAILGATE_ADMIN_TOKEN: adminToken,
          TAILGATE_DATA_DIR: path.join(dir, `${name}-data`),
          DATABASE_URL: `postgres:///${dbName}`,
          PGHOST: '/var/run/postgresql',
          PGUSER: 'postgres',
          TS_AUTHKEY: scene!.preAuthKey,
          TS_LOGIN_SERVER: HEADSCALE_URL,
          TS_HOSTNAME: name,
          TS_STATE_DIR: path.join(dir, `${name}-tailscale`),
          TS_UP_TIMEOUT_MS: '60000',
          TAILSCALED_BIN: tools.tailscaled,
          TAILSCALE_BIN: tools.tailscale,
          HEADSCALE_URL,
          HEADSCALE_API_KEY: scene!.apiKey,
          HEADSCALE_USER: scene!.user,
          // As `npm start` runs it (README "The malloc trim threshold").
          GLIBC_TUNABLES: glibcTunables(process.env.GLIBC_TUNABLES),
          ...env,
        },
      });
      procs.push(proc);
      const api = `http://127.0.0.1:${ports.api}`;
      const socket = path.join(dir, `${name}-tailscale`, 'tailscaled.sock');
      return {
        proc,
        ports,
        api,
        socket,
        ready: async () => {
          // An exit ends the wait at once (waitFor takes a throwing probe for "not yet").
          const state = await waitFor(`${name} /readyz`, 120_000, async () => {
            if (proc.child.exitCode !== null) return 'exited';
            return (await fetch(`${api}/readyz`, { signal: AbortSignal.timeout(2_000) })).status === 200 ? 'ready' : undefined;
          }, 300);
          if (state === 'exited') throw new Error(`${name} exited (${proc.child.exitCode}); see ${dir}/${name}.log`);
          return waitFor(`${name}’s tailscaled`, 10_000, () => tailscaledPid(socket));
        },
      };
    };
    const tailgate = await startTailgate('tailgate', {
      TS_DIAL_MODE: dialMode,
      // The baseline's way in: tailscaled's own SOCKS5 server, on the very tailscaled tailgate dials through.
      ...(dialMode === 'socks5' ? {} : { TS_TAILSCALED_EXTRA_ARGS: `--socks5-server=127.0.0.1:${await freePort()}` }),
    });
    // Kernel mode (TS_USERSPACE=false): a second tailgate on the same database, whose tailscaled makes a TUN device in
    // this namespace; tailgate dials the device's 100.x address with the kernel's stack. It starts alongside the
    // first one; the device it learns from the shared registry once the first one has approved it.
    let kernel = plan.kernel ? await startTailgate('tailgate-kernel', { TS_USERSPACE: 'false' }) : undefined;
    let kernelFailure: string | undefined;
    // A kernel mode that cannot come up (no /dev/net/tun, no NET_ADMIN) costs its own rows, not the userspace ones;
    // --check then names the missing tailgate-kernel rows.
    const kernelReady = kernel?.ready().catch(async (err: Error) => {
      say(`! tailgate-kernel did not come up, measuring without it: ${err.message}`);
      kernelFailure = err.message;
      await stop(kernel!.proc, 15_000);
      kernel = undefined;
      return undefined;
    });
    const [gatewayTailscaled, kernelTailscaled] = await Promise.all([tailgate.ready(), kernelReady]);
    const gatewaySocket = tailgate.socket;
    const socksFlag = readFileSync(`/proc/${gatewayTailscaled}/cmdline`, 'utf8').split('\0').filter((a) => a.startsWith('--socks5-server=')).pop();
    if (!socksFlag) throw new Error('tailgate’s tailscaled runs without --socks5-server');
    const tailscaledSocksPort = Number(socksFlag.slice(socksFlag.lastIndexOf(':') + 1));

    // The device's pending registration key becomes its proxy key, as an operator would do it.
    const key = device.registrationKey;
    const reg = await fetch(`${tailgate.api}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
      body: JSON.stringify({ key }),
      signal: AbortSignal.timeout(30_000),
    });
    const body = (await reg.json()) as { node?: { ip: string } };
    if (reg.status !== 201 || !body.node) throw new Error(`POST /register answered ${reg.status}: ${JSON.stringify(body).slice(0, 300)}`);
    const deviceIp = body.node.ip;
    say(`device approved through tailgate: ${deviceIp}`);

    loadgen = await LoadGen.start(plan.endpointCpu, plan.repo, process.env);
    procs.push(loadgen.proc);
    const socksBaseline: ProxySpec = { kind: 'socks5', host: '127.0.0.1', port: tailscaledSocksPort, device: { host: deviceIp, port: DEVICE_PROXY_PORT } };
    const viaHttp: ProxySpec = { kind: 'http', host: '127.0.0.1', port: tailgate.ports.http, key };
    const viaSocks: ProxySpec = { kind: 'socks5', host: '127.0.0.1', port: tailgate.ports.socks, key };
    const viaKernel = (listener: 'http' | 'socks5'): ProxySpec =>
      listener === 'http' ? { kind: 'http', host: '127.0.0.1', port: kernel!.ports.http, key } : { kind: 'socks5', host: '127.0.0.1', port: kernel!.ports.socks, key };
    const usable = async (proxy: ProxySpec) => {
      const r = await loadgen!.request<UsableResult>({ type: 'until-usable', proxy, target, deadlineMs: 30_000 }, 60_000);
      return r.ok ? undefined : `the device is not usable through ${proxy.kind}:${proxy.port}: ${r.lastError}`;
    };
    for (const proxy of [socksBaseline, viaHttp, viaSocks]) {
      const failure = await usable(proxy);
      if (failure !== undefined) throw new Error(failure);
    }
    for (const proxy of kernel ? plan.kernelListeners.map(viaKernel) : []) {
      const failure = await usable(proxy);
      if (failure === undefined || kernel === undefined) continue;
      say(`! tailgate-kernel: ${failure}; measuring without it`);
      kernelFailure = failure;
      await stop(kernel.proc, 15_000);
      kernel = undefined;
    }
    const peer = await firstLine(tools.tailscale, [`--socket=${gatewaySocket}`, 'status']);
    say(`tailgate's tailscaled sees: ${peer}`);

    // `gatewayTailscaled` is the tailscaled on the measured path: the userspace one (whose SOCKS5 server the baseline
    // uses) or the kernel-mode one; the kernel's own TCP work for the TUN device is in whichever process it ran for.
    const around = (tailscaled: number) => (): CpuSample => ({
      gatewayTailscaled: cpuSeconds(tailscaled),
      // The device side: its tailscaled and its proxy.
      device: cpuSeconds(device.tailscaled.pid!) + cpuSeconds(device.proxy.pid!),
      sink: cpuSeconds(sink.pid),
      loadgen: cpuSeconds(loadgen!.proc.pid),
    });
    const common = around(gatewayTailscaled);
    // tailgate's own process only: the tailscaled it supervises is its child, counted apart as `gatewayTailscaled`.
    const gateway = (): CpuSample => ({ ...gatewaySample(procStat(tailgate.proc.pid)), ...ioSample(tailgate.proc.pid), ...common() });
    const paths: Measured[] = [
      { path: 'tailscale-socks5', proxy: socksBaseline, cpu: common },
      { path: 'tailgate', listener: 'http', proxy: viaHttp, cpu: gateway },
      { path: 'tailgate', listener: 'socks5', proxy: viaSocks, cpu: gateway },
    ];
    if (kernel) {
      const aroundKernel = around(kernelTailscaled!);
      const kernelPid = kernel.proc.pid;
      const kernelGateway = (): CpuSample => ({ ...gatewaySample(procStat(kernelPid)), ...ioSample(kernelPid), ...aroundKernel() });
      for (const listener of plan.kernelListeners) paths.push({ path: 'tailgate-kernel', listener, proxy: viaKernel(listener), cpu: kernelGateway });
    }
    const ctx: MeasureCtx = { loadgen, target, rows: [], details: [], log: say };
    if (kernelFailure !== undefined) ctx.details.push({ scenario: 'tailnet-overhead', path: 'tailgate-kernel', error: kernelFailure });
    for (const tunnels of [1, 16]) {
      say(`tailnet-throughput-${tunnels}: ${(plan.bytesEachWay * 2) / (1 << 20)} MiB per run over ${tunnels} tunnel(s), median of ${plan.throughputRepeats}`);
      await measureThroughput(ctx, paths, { scenario: `tailnet-throughput-${tunnels}`, tunnels, bytesEachWay: plan.bytesEachWay, repeats: plan.throughputRepeats });
    }
    say(`tailnet-setup: concurrency ${plan.setupConcurrency}, ${plan.setupRepeats} x ${plan.setupSliceMs} ms per path`);
    await measureSetup(ctx, paths, {
      names: { rate: 'tailnet-setup-rate', p50: 'tailnet-setup-p50', p99: 'tailnet-setup-p99', details: 'tailnet-setup' },
      concurrency: plan.setupConcurrency,
      repeats: plan.setupRepeats,
      sliceMs: plan.setupSliceMs,
      soloMs: plan.setupSliceMs,
      warmupTunnels: plan.setupWarmupTunnels,
      // The device side's CPU per tunnel grows with each slice of a round (its tailscaled keeps the state of the
      // connections just closed), so a fixed order would always measure the same paths on the most loaded device:
      // each round starts one path further on.
      order: (rep) => [...paths.slice(rep % paths.length), ...paths.slice(0, rep % paths.length)],
    });
    for (const d of ctx.details) {
      const cpu = d.cpuSeconds as CpuSample | undefined;
      if (!String(d.scenario).startsWith('tailnet-throughput') || cpu === undefined) continue;
      const mib = (plan.bytesEachWay * 2) / (1 << 20);
      // tailscaled's CPU per GiB next to the gateway's (measure.ts has the gateway's and the device side's).
      if (cpu.gatewayTailscaled !== undefined) d.tailscaledCpuMsPerGiB = Math.round((cpu.gatewayTailscaled * 1000 * 1024 * 10) / mib) / 10;
      // The gateway's system calls per MiB relayed and their average size: small reads mean more wake-ups per byte.
      if (cpu.gatewaySyscr !== undefined) {
        d.gatewayIo = {
          readsPerMiB: Math.round((cpu.gatewaySyscr / mib) * 10) / 10,
          writesPerMiB: Math.round((cpu.gatewaySyscw! / mib) * 10) / 10,
          bytesPerRead: Math.round(cpu.gatewayRchar! / Math.max(1, cpu.gatewaySyscr)),
          bytesPerWrite: Math.round(cpu.gatewayWchar! / Math.max(1, cpu.gatewaySyscw!)),
          // Of the main thread only (/proc/<pid>/status): each one is a wake-up on a core shared with three busy processes.
          contextSwitchesPerMiB: Math.round((cpu.gatewaySwitches! / mib) * 10) / 10,
        };
      }
    }
    return {
      rows: ctx.rows,
      details: ctx.details,
      versions: {
        tailscale: await firstLine(tools.tailscale, ['version']),
        headscale: await firstLine(tools.headscale, ['version']),
        'tailgate dial mode (tailnet)': dialMode,
        ...(kernel ? { 'tailgate-kernel (tailnet)': `TS_USERSPACE=false, listeners ${plan.kernelListeners.join(', ')}` } : {}),
      },
    };
  } finally {
    await loadgen?.close();
    for (const p of procs.reverse()) await stop(p, 15_000);
    await scene?.close();
    await admin.unsafe(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch(() => undefined);
    await admin.end();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.env.TAILGATE_E2E_NETNS !== '1' || !inPrivateNetns()) {
    process.stderr.write('bench/tailnet.ts runs inside a private network namespace; start it with npm run bench -- --only tailnet-overhead\n');
    process.exit(2);
  }
  try {
    const outcome = await inside(JSON.parse(process.env.BENCH_TAILNET_PLAN ?? '') as TailnetPlan);
    process.stdout.write(`${JSON.stringify({ outcome })}\n`);
    process.exit(0);
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  }
}
