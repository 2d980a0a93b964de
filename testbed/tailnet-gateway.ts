// tailgate itself in the tailnet scene: `node src/main.ts` supervising its own tailscaled (joined with the scene's
// pre-auth key), its registry in a PostgreSQL database reached through the server's unix socket. Several can run in
// one scene on one database, each with its own ports, tailscaled node and state directory.
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tailscaledsOnSocket } from '../src/tailnet/tailscaled-process.js';
import { HEADSCALE_URL, OFFLINE_TAILSCALE_ENV, tailscaledPid, type TailnetScene } from './tailnet-scene.js';
import { waitFor } from './wait.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface SceneGatewayOptions {
  /** Log file name (`<name>.log` in the scene's directory), tailnet host name and state directory name. */
  name: string;
  /** Database on the local PostgreSQL, reached through /var/run/postgresql (the host's TCP port is not in the namespace). */
  database: string;
  ports: { http: number; socks: number; api: number };
  adminToken: string;
  enrollToken: string;
  connectTimeoutMs: number;
  /** More environment (TS_DIAL_MODE, …). */
  env?: Record<string, string>;
}

export interface ApiAnswer {
  status: number;
  json: Record<string, unknown>;
}

/** One tailgate of the scene; start() (again after a stop or a kill) runs it on the same state directory. */
export class SceneGateway {
  process: ChildProcess | undefined;
  readonly stateDir: string;
  readonly socket: string;

  constructor(
    private readonly scene: TailnetScene,
    readonly opts: SceneGatewayOptions,
  ) {
    this.stateDir = path.join(scene.dir, `${opts.name}-ts`);
    this.socket = path.join(this.stateDir, 'tailscaled.sock');
  }

  get name(): string {
    return this.opts.name;
  }

  get apiUrl(): string {
    return `http://127.0.0.1:${this.opts.ports.api}`;
  }

  /** pid of the node process (tailgate), while it runs. */
  get pid(): number {
    const pid = this.process?.pid;
    if (pid === undefined || !this.running) throw new Error(`${this.name} is not running`);
    return pid;
  }

  get running(): boolean {
    return this.process !== undefined && this.process.exitCode === null && this.process.signalCode === null;
  }

  log(): string {
    return this.scene.logOf(this.name);
  }

  /** The tailscaled serving this gateway's LocalAPI socket (its child, or one a killed gateway left behind). */
  tailscaledPid(): number | undefined {
    return tailscaledPid(this.socket);
  }

  /** Every tailscaled started with this gateway's socket: more than one means one was orphaned. */
  tailscaledPids(): number[] {
    return tailscaledsOnSocket(this.socket);
  }

  /** Starts tailgate and resolves once /readyz answers 200. */
  async start(readyTimeoutMs = 120_000): Promise<void> {
    if (this.running) throw new Error(`${this.name} is already running`);
    const { opts, scene } = this;
    const child = scene.spawnLogged(opts.name, process.execPath, ['--import', 'tsx', path.join(repoRoot, 'src/main.ts')], {
      ...process.env,
      ...OFFLINE_TAILSCALE_ENV,
      TAILGATE_LISTEN_HOST: '127.0.0.1',
      TAILGATE_HTTP_PORT: String(opts.ports.http),
      TAILGATE_SOCKS_PORT: String(opts.ports.socks),
      TAILGATE_API_PORT: String(opts.ports.api),
      TAILGATE_ADMIN_TOKEN: opts.adminToken,
      TAILGATE_ENROLL_TOKEN: opts.enrollToken,
      TAILGATE_DATA_DIR: path.join(scene.dir, `${opts.name}-data`),
      DATABASE_URL: `postgres:///${opts.database}`,
      PGHOST: '/var/run/postgresql',
      PGUSER: 'postgres',
      TAILGATE_CONNECT_TIMEOUT_MS: String(opts.connectTimeoutMs),
      TS_AUTHKEY: scene.preAuthKey,
      TS_LOGIN_SERVER: HEADSCALE_URL,
      TS_HOSTNAME: opts.name,
      TS_STATE_DIR: this.stateDir,
      TS_UP_TIMEOUT_MS: '60000',
      TAILSCALED_BIN: scene.tools.tailscaled,
      TAILSCALE_BIN: scene.tools.tailscale,
      HEADSCALE_URL,
      HEADSCALE_API_KEY: scene.apiKey,
      HEADSCALE_USER: scene.user,
      ...opts.env,
    });
    this.process = child;
    await waitFor(`${opts.name} /readyz`, readyTimeoutMs, async () => {
      if (child.exitCode !== null) throw new Error(`${opts.name} exited (${child.exitCode}):\n${this.log().slice(-3000)}`);
      const res = await fetch(`${this.apiUrl}/readyz`, { signal: AbortSignal.timeout(2_000) });
      return res.status === 200 ? true : undefined;
    }, 20);
  }

  /** SIGTERM; resolves with the exit code. */
  async stop(timeoutMs = 30_000): Promise<number | null> {
    const child = this.process;
    if (child === undefined || !this.running) return child?.exitCode ?? null;
    child.kill('SIGTERM');
    return waitFor(`${this.name} to exit`, timeoutMs, () => (child.exitCode !== null || child.signalCode !== null ? { code: child.exitCode } : undefined), 50).then((r) => r.code);
  }

  /** SIGKILL to tailgate's process alone, as a crash would: its tailscaled is not told. */
  async kill(): Promise<void> {
    const child = this.process;
    if (child === undefined || !this.running) return;
    child.kill('SIGKILL');
    await waitFor(`${this.name} to die`, 10_000, () => (child.signalCode !== null || child.exitCode !== null ? true : undefined), 20);
  }

  async api(method: string, url: string, body?: unknown, headers: Record<string, string> = { authorization: `Bearer ${this.opts.adminToken}` }): Promise<ApiAnswer> {
    const res = await fetch(`${this.apiUrl}${url}`, {
      method,
      headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await res.text();
    return { status: res.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
  }

  async readyStatus(): Promise<number> {
    return (await fetch(`${this.apiUrl}/readyz`, { signal: AbortSignal.timeout(5_000) })).status;
  }

  /** Open file descriptors of the tailgate process. */
  fdCount(): number {
    return readdirSync(`/proc/${this.pid}/fd`).length;
  }

  /** Resident set size of the tailgate process, in bytes. */
  rssBytes(): number {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${this.pid}/status`, 'utf8'));
    if (!m) throw new Error(`no VmRSS in /proc/${this.pid}/status`);
    return Number(m[1]) * 1024;
  }
}
