// gost v3, the baseline of issue 14, built from sources outside this repository (scripts/bench-tools.sh gost) and
// started two ways, each the way its users would:
//  - `start`: the command line, `-L http://KEY:KEY@… -L socks5://KEY:KEY@… -F http://<device>`, for the scenarios
//    that only carry traffic (throughput, setup, idle memory, attacks);
//  - `startWithApi`: the same services from a config file whose handlers name one auther instead of carrying the
//    user inline, plus the web API. `PUT /config/authers/<name>` then replaces that auther's user list while gost
//    runs (no restart, open tunnels stay up): its way of taking a new user, measured where tailgate takes new keys.
// Logging is at warn: at info gost writes a line per connection.
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { benchTool, type Env, type Listener, type PathName, type RunningGateway } from './paths.js';
import { freePort, spawnPinned, stop, waitPort } from './procs.js';

const execFileP = promisify(execFile);

/** What `scripts/bench-tools.sh gost` builds; `gostVersion` asks the binary itself. */
export const GOST_VERSION = '3.2.7-nightly.20260802';

/** Builds gost from the sources TAILGATE_GOST_SOURCE points at (or finds the cached binary); returns its path. */
export const ensureGost = (repo: string) => benchTool(repo, 'gost');

/** The auther every service's handler names in the API-driven configuration. */
export const GOST_AUTHER = 'users';

export interface GostGateway extends RunningGateway {
  ports: { http: number; socks: number };
}

/** One HTTP request, as data: the load generator sends it itself when it times what follows it. */
export interface HttpRequestSpec {
  method: 'PUT' | 'POST' | 'DELETE';
  url: string;
  headers: Record<string, string>;
  body?: string;
}

export interface GostApiGateway extends GostGateway {
  apiUrl: string;
  /** The request that makes `keys` the auther's whole user list: the API has no call that adds or removes one user. */
  usersRequest(keys: Iterable<string>): HttpRequestSpec;
  /** Sends `usersRequest(keys)`; throws unless gost answers 2xx. */
  setUsers(keys: Iterable<string>): Promise<void>;
  /** `DELETE /config/authers/<name>`: the handlers still name it. */
  deleteAuther(): Promise<void>;
  /** `POST /config/authers`: registers it again with `keys`. */
  createAuther(keys: Iterable<string>): Promise<void>;
}

export interface GostKind {
  path: PathName;
  family: 'gost';
  listeners: readonly Listener[];
  start(env: Env): Promise<GostGateway>;
  startWithApi(env: Env): Promise<GostApiGateway>;
}

export interface GostOptions {
  /** The taskset CPU list gost is pinned to (e.g. `0,1`); default: the proxies' core, `env.proxyCpu`. */
  cpus?: string;
  /** The path its rows carry; default `gost`. */
  path?: PathName;
}

const users = (keys: Iterable<string>) => [...keys].map((k) => ({ username: k, password: k }));

export function gostKind(bin: string, opts: GostOptions = {}): GostKind {
  const name = opts.path ?? 'gost';
  const gostEnv = { ...process.env, GOST_LOGGER_LEVEL: 'warn' };
  const spawnGost = (env: Env, args: string[]) =>
    spawnPinned(name, opts.cpus ?? env.proxyCpu, bin, args, { env: gostEnv, logFile: path.join(env.logDir, `${name}.log`) });
  const serviceArgs = (env: Env, ports: { http: number; socks: number }) => [
    '-L',
    `http://${env.key}:${env.key}@127.0.0.1:${ports.http}`,
    '-L',
    `socks5://${env.key}:${env.key}@127.0.0.1:${ports.socks}`,
    '-F',
    `http://${env.device.host}:${env.device.port}`,
  ];
  const listenersOf = (env: Env, ports: { http: number; socks: number }): GostGateway['listeners'] => [
    { listener: 'http', proxy: { kind: 'http', host: '127.0.0.1', port: ports.http, key: env.key } },
    { listener: 'socks5', proxy: { kind: 'socks5', host: '127.0.0.1', port: ports.socks, key: env.key } },
  ];

  const start = async (env: Env): Promise<GostGateway> => {
    const ports = { http: await freePort(), socks: await freePort() };
    const p = spawnGost(env, serviceArgs(env, ports));
    await waitPort(ports.http, 20_000, p);
    await waitPort(ports.socks, 20_000, p);
    return { path: name, proc: p, ports, listeners: listenersOf(env, ports), stop: () => stop(p) };
  };

  const startWithApi = async (env: Env): Promise<GostApiGateway> => {
    const ports = { http: await freePort(), socks: await freePort(), api: await freePort() };
    // gost's own translation of the command line above (-O json prints it and exits), so that the services are
    // exactly those of `start`; only the inline user moves into a named auther, and the API is added.
    const { stdout } = await execFileP(bin, ['-O', 'json', ...serviceArgs(env, ports)], { env: gostEnv, timeout: 10_000, maxBuffer: 4 << 20 });
    const config = JSON.parse(stdout) as { services?: { handler?: { auth?: unknown; auther?: string } }[]; [k: string]: unknown };
    if (!config.services || config.services.length !== 2) throw new Error(`gost -O json gave ${config.services?.length ?? 0} services, not 2`);
    for (const s of config.services) {
      if (!s.handler?.auth) throw new Error('gost -O json: a service without handler.auth; the inline user is expected there');
      delete s.handler.auth;
      s.handler.auther = GOST_AUTHER;
    }
    const apiUser = { username: 'bench', password: randomBytes(12).toString('hex') };
    config.authers = [{ name: GOST_AUTHER, auths: users([env.key]) }];
    config.api = { addr: `127.0.0.1:${ports.api}`, auth: apiUser };
    config.log = { level: 'warn' };
    const file = path.join(env.logDir, `${name}-api-${ports.api}.json`);
    writeFileSync(file, JSON.stringify(config, null, 2) + '\n', { mode: 0o600 });
    const p = spawnGost(env, ['-C', file]);
    await waitPort(ports.http, 20_000, p);
    await waitPort(ports.socks, 20_000, p);
    await waitPort(ports.api, 20_000, p);
    const apiUrl = `http://127.0.0.1:${ports.api}`;
    const headers = { 'content-type': 'application/json', authorization: `Basic ${Buffer.from(`${apiUser.username}:${apiUser.password}`).toString('base64')}` };
    const send = async (req: HttpRequestSpec) => {
      const res = await fetch(req.url, { method: req.method, headers: req.headers, body: req.body, signal: AbortSignal.timeout(10_000) });
      const text = await res.text();
      if (!res.ok) throw new Error(`gost ${req.method} ${new URL(req.url).pathname} answered ${res.status}: ${text.slice(0, 200)}`);
    };
    const usersRequest = (keys: Iterable<string>): HttpRequestSpec => ({
      method: 'PUT',
      url: `${apiUrl}/config/authers/${GOST_AUTHER}`,
      headers,
      body: JSON.stringify({ name: GOST_AUTHER, auths: users(keys) }),
    });
    return {
      path: name,
      proc: p,
      ports,
      apiUrl,
      listeners: listenersOf(env, ports),
      stop: () => stop(p),
      usersRequest,
      setUsers: (keys) => send(usersRequest(keys)),
      deleteAuther: () => send({ method: 'DELETE', url: `${apiUrl}/config/authers/${GOST_AUTHER}`, headers }),
      createAuther: (keys) => send({ method: 'POST', url: `${apiUrl}/config/authers`, headers, body: JSON.stringify({ name: GOST_AUTHER, auths: users(keys) }) }),
    };
  };

  return { path: name, family: 'gost', listeners: ['http', 'socks5'], start, startWithApi };
}

/** `gost -V` prints `gost <version> (<go version> <os>/<arch>)`; the version and the toolchain are kept. */
export async function gostVersion(bin: string): Promise<string> {
  try {
    const { stdout } = await execFileP(bin, ['-V'], { timeout: 5_000 });
    const m = /^gost (\S+) \(([^)]*)\)/.exec(stdout.trim());
    if (m) return `${m[1]} (${m[2]})`;
  } catch {
    // fall through
  }
  return GOST_VERSION;
}
