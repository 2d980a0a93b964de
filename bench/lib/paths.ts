// The gateways under test. Each is started fresh, in its own process pinned to the proxies' core, and
// exposes the listeners the load generator drives. `direct` has no gateway: the client talks to the
// device proxy itself.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import type { ProxySpec } from './client.js';
import { freePort, spawnPinned, stop, waitPort, waitReadyLine, type Pinned } from './procs.js';

const execFileP = promisify(execFile);

export type PathName = 'direct' | 'tailgate' | 'glider' | 'proxy-chain';
export const ALL_PATHS: PathName[] = ['direct', 'tailgate', 'glider', 'proxy-chain'];

export interface Env {
  repo: string;
  logDir: string;
  /** Set by --profile: tailgate runs with --cpu-prof and --heapsnapshot-signal, writing here. */
  profileDir?: string;
  /** Names the next gateway's profile files (scenario and listener). */
  profileLabel?: string;
  proxyCpu: number;
  device: { host: string; port: number };
  /** The bench key every gateway accepts (username = password = key). */
  key: string;
}

export interface RunningGateway {
  path: PathName;
  proc: Pinned | undefined;
  listeners: { listener: 'http' | 'socks5'; proxy: ProxySpec }[];
  stop(): Promise<void>;
}

export interface GatewayKind {
  path: PathName;
  start(env: Env): Promise<RunningGateway>;
}

// ---------------------------------------------------------------- direct

export const direct: GatewayKind = {
  path: 'direct',
  async start(env) {
    return {
      path: 'direct',
      proc: undefined,
      listeners: [{ listener: 'http', proxy: { kind: 'http', host: env.device.host, port: env.device.port } }],
      stop: async () => {},
    };
  },
};

// ---------------------------------------------------------------- glider (stands in for gost)

export const GLIDER_VERSION = 'v0.16.4';

async function benchTool(repo: string, what: 'glider' | 'device'): Promise<string> {
  const { stdout } = await execFileP('bash', [path.join(repo, 'scripts/bench-tools.sh'), what], { cwd: repo, maxBuffer: 16 << 20, timeout: 300_000 });
  const bin = stdout.trim().split('\n').pop()!;
  if (!existsSync(bin)) throw new Error(`bench-tools.sh ${what} printed ${bin}, which does not exist`);
  return bin;
}

/** Builds (or finds cached) glider through scripts/bench-tools.sh; returns the binary path. */
export const ensureGlider = (repo: string) => benchTool(repo, 'glider');
/** Builds (or finds cached) the Go device stand-in, bench/device/main.go. */
export const ensureGoDevice = (repo: string) => benchTool(repo, 'device');

export function gliderArgs(listen: string[], forward?: string): string[] {
  // -check disable: with health checks on, glider would probe an Internet URL through the forwarder.
  const args = ['-check', 'disable'];
  if (process.env.BENCH_GLIDER_VERBOSE) args.push('-verbose');
  for (const l of listen) args.push('-listen', l);
  if (forward) args.push('-forward', forward);
  return args;
}

export interface GliderGateway extends RunningGateway {
  ports: { http: number; socks: number };
  /** Stops glider and starts it again on the same ports with the given key: how glider takes a new user. */
  restart(key: string): Promise<void>;
}

export function gliderKind(bin: string): GatewayKind & { startGlider(env: Env, key?: string): Promise<GliderGateway> } {
  const startGlider = async (env: Env, key = env.key): Promise<GliderGateway> => {
    const ports = { http: await freePort(), socks: await freePort() };
    const spawnGlider = (k: string) =>
      spawnPinned(
        'glider',
        env.proxyCpu,
        bin,
        gliderArgs([`http://${k}:${k}@127.0.0.1:${ports.http}`, `socks5://${k}:${k}@127.0.0.1:${ports.socks}`], `http://${env.device.host}:${env.device.port}`),
        { logFile: path.join(env.logDir, 'glider.log') },
      );
    const first = spawnGlider(key);
    await waitPort(ports.http, 10_000, first);
    await waitPort(ports.socks, 10_000, first);
    const gw: GliderGateway = {
      path: 'glider',
      proc: first,
      ports,
      listeners: [
        { listener: 'http', proxy: { kind: 'http', host: '127.0.0.1', port: ports.http, key } },
        { listener: 'socks5', proxy: { kind: 'socks5', host: '127.0.0.1', port: ports.socks, key } },
      ],
      stop: async () => stop(gw.proc),
      // Does not wait for the ports: the caller measures when the new key becomes usable.
      restart: async (k: string) => {
        await stop(gw.proc);
        gw.proc = spawnGlider(k);
      },
    };
    return gw;
  };
  return { path: 'glider', start: startGlider, startGlider };
}

export async function gliderVersion(bin: string): Promise<string> {
  try {
    const { stdout, stderr } = await execFileP(bin, ['-help'], { timeout: 5_000 }).catch((e: { stdout: string; stderr: string }) => e);
    const m = /glider (v?[\d.]+)/.exec(stdout + stderr);
    if (m) return m[1]!;
  } catch {
    // fall through
  }
  return GLIDER_VERSION;
}

// ---------------------------------------------------------------- proxy-chain

export const proxyChain: GatewayKind = {
  path: 'proxy-chain',
  async start(env) {
    const p = spawnPinned('proxy-chain', env.proxyCpu, process.execPath, ['--import', 'tsx', 'bench/servers/proxy-chain.ts', env.key, `${env.device.host}:${env.device.port}`, String(await freePort())], {
      cwd: env.repo,
      pipeStdout: true,
      logFile: path.join(env.logDir, 'proxy-chain.log'),
    });
    const { port } = await waitReadyLine(p, 20_000);
    return {
      path: 'proxy-chain',
      proc: p,
      listeners: [{ listener: 'http', proxy: { kind: 'http', host: '127.0.0.1', port, key: env.key } }],
      stop: () => stop(p),
    };
  },
};

export function proxyChainVersion(repo: string): string {
  return (JSON.parse(readFileSync(path.join(repo, 'node_modules/proxy-chain/package.json'), 'utf8')) as { version: string }).version;
}

// ---------------------------------------------------------------- tailgate

export interface TailgateSetup {
  databaseUrl: string;
  adminToken: string;
  dropDatabase(): Promise<void>;
}

/** Which source files tailgate needs before it can be benchmarked (the gateway's own modules). */
export const TAILGATE_REQUIRED = ['src/proxy/http-proxy.ts', 'src/proxy/socks-proxy.ts', 'src/api/server.ts', 'src/store/index.ts', 'src/routing/key-resolver.ts', 'src/routing/device-connector.ts'];

export function tailgateMissing(repo: string): string[] {
  return TAILGATE_REQUIRED.filter((f) => !existsSync(path.join(repo, f)));
}

export async function buildTailgate(repo: string): Promise<void> {
  try {
    await execFileP('npm', ['run', 'build'], { cwd: repo, maxBuffer: 16 << 20, timeout: 300_000 });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`npm run build failed:\n${(e.stdout ?? '').slice(-2000)}${(e.stderr ?? '').slice(-1000)}`);
  }
  if (!existsSync(path.join(repo, 'dist/main.js'))) throw new Error('npm run build produced no dist/main.js');
}

const PG_ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

export async function createTailgateDatabase(): Promise<TailgateSetup> {
  const name = `tailgate_bench_${process.pid}_${Date.now()}`;
  const admin = postgres(PG_ADMIN_URL, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  return {
    databaseUrl: `postgres://postgres@127.0.0.1:5432/${name}`,
    adminToken: randomBytes(24).toString('hex'),
    async dropDatabase() {
      const a = postgres(PG_ADMIN_URL, { max: 1, onnotice: () => {} });
      try {
        await a.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await a.end();
      }
    },
  };
}

export interface TailgateGateway extends RunningGateway {
  apiUrl: string;
  adminToken: string;
}

export async function registerKey(apiUrl: string, token: string, key: string, device: { host: string; port: number }): Promise<void> {
  const res = await fetch(`${apiUrl}/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ key, ip: device.host, port: device.port }),
    signal: AbortSignal.timeout(10_000),
  });
  if (!res.ok) throw new Error(`POST /register answered ${res.status}: ${(await res.text()).slice(0, 300)}`);
}

export function tailgateKind(setup: TailgateSetup): GatewayKind & { startTailgate(env: Env): Promise<TailgateGateway> } {
  let registered = false;
  const startTailgate = async (env: Env): Promise<TailgateGateway> => {
    const ports = { http: await freePort(), socks: await freePort(), api: await freePort() };
    const profile = env.profileDir
      ? ['--cpu-prof', `--cpu-prof-name=${env.profileLabel ?? 'tailgate'}.cpuprofile`, '--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${env.profileDir}`]
      : [];
    // Diagnostics hook, e.g. BENCH_TAILGATE_NODE_ARGS=--trace-gc (NODE_OPTIONS refuses some V8 flags).
    const extra = process.env.BENCH_TAILGATE_NODE_ARGS?.split(/\s+/).filter(Boolean) ?? [];
    const p = spawnPinned('tailgate', env.proxyCpu, process.execPath, [...profile, '--initial-old-space-size=64', ...extra, 'dist/main.js'], {
      cwd: env.repo,
      logFile: path.join(env.logDir, 'tailgate.log'),
      env: {
        ...process.env,
        TAILGATE_HTTP_PORT: String(ports.http),
        TAILGATE_SOCKS_PORT: String(ports.socks),
        TAILGATE_API_PORT: String(ports.api),
        TAILGATE_LISTEN_HOST: '127.0.0.1',
        TAILGATE_ADMIN_TOKEN: setup.adminToken,
        DATABASE_URL: setup.databaseUrl,
        TAILGATE_DATA_DIR: path.join(env.logDir, 'tailgate-data'),
        TAILGATE_ALLOW_CIDRS: '127.0.0.0/8',
      },
    });
    await waitPort(ports.http, 20_000, p);
    await waitPort(ports.socks, 20_000, p);
    await waitPort(ports.api, 20_000, p);
    const apiUrl = `http://127.0.0.1:${ports.api}`;
    if (!registered) {
      await registerKey(apiUrl, setup.adminToken, env.key, env.device);
      registered = true;
    }
    return {
      path: 'tailgate',
      proc: p,
      apiUrl,
      adminToken: setup.adminToken,
      listeners: [
        { listener: 'http', proxy: { kind: 'http', host: '127.0.0.1', port: ports.http, key: env.key } },
        { listener: 'socks5', proxy: { kind: 'socks5', host: '127.0.0.1', port: ports.socks, key: env.key } },
      ],
      stop: () => stop(p, 15_000),
    };
  };
  return { path: 'tailgate', start: startTailgate, startTailgate };
}
