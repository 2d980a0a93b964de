// The gateways under test. Each is started fresh, in its own process pinned to the proxies' core, and
// exposes the listeners the load generator drives. `direct` has no gateway: the client talks to the
// device proxy itself.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import type { ProxySpec } from './client.js';
import type { GostKind } from './gost.js';
import { freePort, runStep, spawnPinned, stop, waitPort, waitReadyLine, type Pinned } from './procs.js';
import { startServerScript } from './server-script.js';
import { glibcTunables } from '../../src/core/malloc.js';

const execFileP = promisify(execFile);

/** The paths `--paths` names. */
export const ALL_PATHS = ['direct', 'tailgate', 'gost', 'glider', 'proxy-chain', 'node-floor'] as const;
/** `tailgate@<short sha>` is an older tailgate built by `--baseline-ref`. */
export type PathName = (typeof ALL_PATHS)[number] | `tailgate@${string}`;
/** `https`: the HTTP proxy behind TLS; only this checkout's tailgate serves it (an older build may not have it). */
export type Listener = 'http' | 'socks5' | 'https';

export interface Env {
  repo: string;
  logDir: string;
  /** Set by --profile: tailgate runs with --cpu-prof and --heapsnapshot-signal, writing here. */
  profileDir?: string;
  /** Names the next gateway's profile files (scenario and listener). */
  profileLabel?: string;
  /** Where the gateway under test runs: a CPU number, or a taskset CPU list such as `0,1` (the `scale` group). */
  proxyCpu: number | string;
  /** TAILGATE_WORKERS for a tailgate started in this environment; 1 when absent. */
  tailgateWorkers?: number;
  device: { host: string; port: number };
  /** The bench key every gateway accepts (username = password = key). */
  key: string;
}

export interface RunningGateway {
  path: PathName;
  proc: Pinned | undefined;
  listeners: { listener: Listener; proxy: ProxySpec }[];
  stop(): Promise<void>;
}

interface KindOf<G extends RunningGateway> {
  path: PathName;
  /** The listeners it serves; a fresh process is started per (scenario, listener). */
  listeners: readonly Listener[];
  start(env: Env): Promise<G>;
}

/**
 * A way to start one path's gateway. `family` says which code it is: both `tailgate` and an older
 * `tailgate@<sha>` are the tailgate family, driven the same way (keys through its API).
 */
export type GatewayKind =
  | (KindOf<RunningGateway> & { family: 'direct' | 'proxy-chain' | 'node-floor' })
  | (KindOf<TailgateGateway> & { family: 'tailgate' })
  | (KindOf<GliderGateway> & { family: 'glider' })
  | GostKind;

// ---------------------------------------------------------------- direct

export const direct: GatewayKind = {
  path: 'direct',
  family: 'direct',
  listeners: ['http'],
  async start(env) {
    return {
      path: 'direct',
      proc: undefined,
      listeners: [{ listener: 'http', proxy: { kind: 'http', host: env.device.host, port: env.device.port } }],
      stop: async () => {},
    };
  },
};

// ---------------------------------------------------------------- glider (a second Go baseline, next to gost)

export const GLIDER_VERSION = 'v0.16.4';

export async function benchTool(repo: string, what: 'gost' | 'glider' | 'device'): Promise<string> {
  const { stdout } = await execFileP('bash', [path.join(repo, 'scripts/bench-tools.sh'), what], { cwd: repo, maxBuffer: 16 << 20, timeout: what === 'gost' ? 900_000 : 300_000 });
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

export function gliderKind(bin: string): GatewayKind {
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
  return { path: 'glider', family: 'glider', listeners: ['http', 'socks5'], start: startGlider };
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
  family: 'proxy-chain',
  listeners: ['http'],
  start: (env) => startServerScript(env, 'proxy-chain'),
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

/** What a checkout must have to be built and benchmarked as tailgate; the build itself checks the rest. */
export const TAILGATE_REQUIRED = ['package.json', 'src/main.ts'];

export function tailgateMissing(repo: string): string[] {
  return TAILGATE_REQUIRED.filter((f) => !existsSync(path.join(repo, f)));
}

/** `npm run build` in a checkout of tailgate (this one, or the baseline's); it must leave dist/main.js. */
export async function buildTailgate(dir: string): Promise<void> {
  await runStep('npm run build', 'npm', ['run', 'build'], dir, 300_000);
  if (!existsSync(path.join(dir, 'dist/main.js'))) throw new Error(`npm run build produced no dist/main.js in ${dir}`);
}

const PG_ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

let databases = 0;

export async function createTailgateDatabase(): Promise<TailgateSetup> {
  // One per tailgate build (the baseline's migrations may differ), so the pid and time alone are not unique.
  const name = `tailgate_bench_${process.pid}_${Date.now()}_${databases++}`;
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

/** One call to tailgate's management API with the admin token; the parsed answer, or an error with its status. */
export async function adminApi<T>(gw: { apiUrl: string; adminToken: string }, method: 'GET' | 'POST', route: string, body?: object): Promise<T> {
  const res = await fetch(`${gw.apiUrl}${route}`, {
    method,
    headers: { ...(body ? { 'content-type': 'application/json' } : {}), authorization: `Bearer ${gw.adminToken}` },
    body: body ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(10_000),
  });
  if (!res.ok) throw new Error(`${method} ${route} answered ${res.status}: ${(await res.text()).slice(0, 300)}`);
  return (await res.json()) as T;
}

export async function registerKey(apiUrl: string, token: string, key: string, device: { host: string; port: number }): Promise<void> {
  await adminApi({ apiUrl, adminToken: token }, 'POST', '/register', { key, ip: device.host, port: device.port });
}

/**
 * tailgate as a deployment runs it: `node --initial-old-space-size=64 dist/main.js` in `build.dir`,
 * configured through its environment, with a database of its own. This checkout is path `tailgate`;
 * an older build from --baseline-ref is started by exactly the same code from its own directory.
 */
export function tailgateKind(setup: TailgateSetup, build: { path: PathName; dir: string }): GatewayKind {
  // Shared by starts that overlap (the `scale` group starts its gateways at once): the key is registered once.
  let registration: Promise<void> | undefined;
  const withTls = build.path === 'tailgate';
  const startTailgate = async (env: Env): Promise<TailgateGateway> => {
    const ports = { http: await freePort(), socks: await freePort(), api: await freePort(), https: withTls ? await freePort() : 0 };
    const cert = withTls ? await (certificates[env.logDir] ??= benchCertificate(env.logDir)) : undefined;
    const workers = env.tailgateWorkers ?? 1;
    // The workers start once the primary has its database: about one more process start each.
    const startMs = 20_000 * workers;
    const label = env.profileLabel ?? 'tailgate';
    const profileName = build.path === 'tailgate' ? label : `${label}-${build.path}`;
    const profile = env.profileDir ? ['--cpu-prof', `--cpu-prof-name=${profileName}.cpuprofile`, '--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${env.profileDir}`] : [];
    // Diagnostics hook, e.g. BENCH_TAILGATE_NODE_ARGS=--trace-gc (NODE_OPTIONS refuses some V8 flags).
    const extra = process.env.BENCH_TAILGATE_NODE_ARGS?.split(/\s+/).filter(Boolean) ?? [];
    const p = spawnPinned(build.path, env.proxyCpu, process.execPath, [...profile, '--initial-old-space-size=64', ...extra, 'dist/main.js'], {
      cwd: build.dir,
      logFile: path.join(env.logDir, `${build.path}.log`),
      env: {
        ...process.env,
        TAILGATE_HTTP_PORT: String(ports.http),
        TAILGATE_SOCKS_PORT: String(ports.socks),
        TAILGATE_API_PORT: String(ports.api),
        TAILGATE_LISTEN_HOST: '127.0.0.1',
        TAILGATE_ADMIN_TOKEN: setup.adminToken,
        DATABASE_URL: setup.databaseUrl,
        TAILGATE_DATA_DIR: path.join(env.logDir, `${build.path}-data`),
        TAILGATE_ALLOW_CIDRS: '127.0.0.0/8',
        // idle-rss-per-tunnel opens tunnels up to the descriptor limit on purpose: no cap below it.
        TAILGATE_MAX_CONNECTIONS: '0',
        // One process unless asked (README "Worker processes"): the rows outside the `scale` group are of a single-process gateway.
        TAILGATE_WORKERS: String(workers),
        // As `npm start` and the Docker image run it (README "The malloc trim threshold"); a baseline build gets the same.
        GLIBC_TUNABLES: glibcTunables(process.env.GLIBC_TUNABLES),
        ...(cert ? { TAILGATE_TLS_CERT: cert.certFile, TAILGATE_TLS_KEY: cert.keyFile, TAILGATE_HTTPS_PORT: String(ports.https), TAILGATE_SOCKS_TLS_PORT: String(await freePort()) } : {}),
      },
    });
    try {
      await waitPort(ports.http, startMs, p);
      if (cert) await waitPort(ports.https, startMs, p);
      await waitPort(ports.socks, startMs, p);
      await waitPort(ports.api, startMs, p);
    } catch (err) {
      // A tailgate that did not come up in time must not outlive the run (its pipes would keep the driver alive).
      await stop(p, 15_000);
      throw err;
    }
    const apiUrl = `http://127.0.0.1:${ports.api}`;
    registration ??= registerKey(apiUrl, setup.adminToken, env.key, env.device).catch((err: Error) => {
      registration = undefined;
      throw err;
    });
    await registration;
    return {
      path: build.path,
      proc: p,
      apiUrl,
      adminToken: setup.adminToken,
      listeners: [
        { listener: 'http', proxy: { kind: 'http', host: '127.0.0.1', port: ports.http, key: env.key } },
        { listener: 'socks5', proxy: { kind: 'socks5', host: '127.0.0.1', port: ports.socks, key: env.key } },
        ...(cert ? [{ listener: 'https' as const, proxy: { kind: 'https' as const, host: '127.0.0.1', port: ports.https, key: env.key, ca: cert.ca } }] : []),
      ],
      stop: () => stop(p, 15_000),
    };
  };
  return { path: build.path, family: 'tailgate', listeners: withTls ? ['http', 'socks5', 'https'] : ['http', 'socks5'], start: startTailgate };
}

/** The certificate of each run's log directory, once made (or being made). */
const certificates: Record<string, ReturnType<typeof benchCertificate>> = {};

/**
 * A CA and a localhost certificate for the HTTPS listener, made once per run with openssl (P-256, what ACME clients
 * issue by default nowadays).
 */
async function benchCertificate(dir: string): Promise<{ certFile: string; keyFile: string; ca: string }> {
  const certFile = path.join(dir, 'tls-cert.pem');
  const keyFile = path.join(dir, 'tls-key.pem');
  const caFile = path.join(dir, 'tls-ca.pem');
  if (!existsSync(certFile)) {
    const caKey = path.join(dir, 'tls-ca-key.pem');
    const csr = path.join(dir, 'tls.csr');
    const ext = path.join(dir, 'tls.ext');
    writeFileSync(ext, 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    await runStep('openssl CA', 'openssl', ['req', '-x509', ...ec, '-days', '2', '-subj', '/CN=tailgate bench CA', '-keyout', caKey, '-out', caFile], dir, 20_000);
    await runStep('openssl key', 'openssl', ['req', '-new', ...ec, '-subj', '/CN=localhost', '-keyout', keyFile, '-out', csr], dir, 20_000);
    await runStep('openssl sign', 'openssl', ['x509', '-req', '-in', csr, '-CA', caFile, '-CAkey', caKey, '-set_serial', '1', '-days', '2', '-extfile', ext, '-out', certFile], dir, 20_000);
  }
  return { certFile, keyFile, ca: readFileSync(caFile, 'utf8') };
}
