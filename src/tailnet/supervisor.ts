// Runs tailscaled as our child: start, join the tailnet with the auth key, watch the backend state, restart on
// exit with capped exponential backoff, and stop it cleanly. Everything else reads its state through
// TailnetView, which answers from the latest status snapshot without any I/O; only checkPeer()
// reads a fresh one, for the rare caller about to refuse a connection because of the snapshot.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import type { TailnetConfig } from './types.js';
import type { Logger } from '../log.js';
import { findPeer, LocalApiClient, peerCheck, peersByIp, type LocalPeerStatus, type LocalStatus } from './localapi.js';
import type { PeerCheck, TailnetState, TailnetView } from './types.js';

export interface SupervisorOptions {
  /** How often the backend state is polled while running. */
  pollMs?: number;
  /** First restart delay; doubles up to maxBackoffMs, reset once tailscaled is Running again. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** After SIGTERM, how long tailscaled gets before SIGKILL. */
  stopGraceMs?: number;
  /** Port for tailscaled's SOCKS5 server; 0 = pick a free loopback port. Only used when socks5 dialing is on. */
  socksPort?: number;
}

/** Variables tailscaled has no use for and must not inherit (they would be readable in /proc/PID/environ). */
const SECRET_ENV = ['TS_AUTHKEY', 'TS_AUTH_KEY', 'HEADSCALE_API_KEY', 'TAILGATE_ADMIN_TOKEN', 'TAILGATE_ENROLL_TOKEN', 'DATABASE_URL'];

/** Keys tailscale and headscale print: auth keys, API keys, registration ids. */
const SECRET_PATTERN = /\b(?:tskey-[A-Za-z0-9_-]+|hskey-[a-z]+-[A-Za-z0-9_-]+)/g;

export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

const REJOIN_INTERVAL_MS = 30_000;

/** A snapshot at most this old answers checkPeer() without another read; concurrent checks share one read. */
const PEER_RECHECK_MS = 250;

/** Status poll period while a run waits for its first netmap from control: readiness should follow it closely. */
const SYNC_POLL_MS = 100;

/** Registered devices warmed up at once after a (re)start. */
const WARM_UP_CONCURRENCY = 8;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class TailscaledSupervisor implements TailnetView {
  readonly localApi: LocalApiClient;
  private readonly log: Logger;
  private readonly pollMs: number;
  private readonly minBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly stopGraceMs: number;
  private socksPortValue: number;

  private child: ChildProcess | undefined;
  private upChild: ChildProcess | undefined;
  private current: TailnetState = { running: false, backendState: 'starting', selfIps: [], ready: false };
  /** This run of tailscaled has had a netmap from control (Self.Online: it is in the map poll). */
  private synced = false;
  /** This run is ready: synced and warmed up, or the ready timeout passed. */
  private runReady = false;
  private waitingFor = 'a netmap from control';
  private readyTimer: NodeJS.Timeout | undefined;
  private readinessBegun = false;
  private readonly syncWaiters = new Set<() => void>();
  private readonly offlineListeners = new Set<(ip: string) => void>();
  /** Tailnet IPs of the devices the gateway serves, warmed up after every (re)start. */
  private registeredDevices: (() => Promise<string[]>) | undefined;
  private peers = new Map<string, LocalPeerStatus>();
  /** When the read behind `peers` was started (performance.now()), so an older read finishing later is dropped. */
  private peersAsOf = -Infinity;
  private peerRead: Promise<void> | undefined;
  private downReason: string | null = 'tailscaled is starting';
  private stopping = false;
  private backoffMs: number;
  private pollTimer: NodeJS.Timeout | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private restarts = 0;
  private launching = false;
  private lastRejoin = 0;
  /** Bumped on every (re)start so that a poll or bring-up of a previous incarnation cannot overwrite newer state. */
  private generation = 0;

  constructor(
    private readonly cfg: TailnetConfig,
    log: Logger,
    opts: SupervisorOptions = {},
  ) {
    this.log = log.child({ component: 'tailnet' });
    this.localApi = new LocalApiClient(cfg.socket);
    this.pollMs = opts.pollMs ?? 1_000;
    this.minBackoffMs = opts.minBackoffMs ?? 500;
    this.maxBackoffMs = opts.maxBackoffMs ?? 30_000;
    this.stopGraceMs = opts.stopGraceMs ?? 5_000;
    this.backoffMs = this.minBackoffMs;
    this.socksPortValue = opts.socksPort ?? 0;
  }

  get socksPort(): number {
    return this.socksPortValue;
  }

  get usesSocks(): boolean {
    return this.cfg.userspace && this.cfg.dialMode === 'socks5';
  }

  /** pid of the running tailscaled, for operators and tests. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  get restartCount(): number {
    return this.restarts;
  }

  state(): TailnetState {
    return this.current;
  }

  peerOnline(ip: string): boolean | undefined {
    const peer = this.peers.get(ip);
    return peer === undefined ? undefined : peer.Online === true;
  }

  async checkPeer(ip: string, timeoutMs: number): Promise<PeerCheck> {
    if (performance.now() - this.peersAsOf > PEER_RECHECK_MS) {
      this.peerRead ??= this.readStatus(timeoutMs)
        .then(() => undefined)
        .finally(() => (this.peerRead = undefined));
      await this.peerRead;
    }
    return peerCheck(this.peers.get(ip), Date.now());
  }

  unavailableReason(): string | null {
    return this.downReason;
  }

  onPeerOffline(listener: (ip: string) => void): () => void {
    this.offlineListeners.add(listener);
    return () => this.offlineListeners.delete(listener);
  }

  controlSync(timeoutMs: number): Promise<void> | null {
    if (this.synced || this.runReady || !this.current.running) return null;
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.syncWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.syncWaiters.add(done);
    });
  }

  /** Which devices to warm up once a (re)started tailscaled has its netmap: the gateway's registered devices. */
  warmUpAfterStart(devices: () => Promise<string[]>): void {
    this.registeredDevices = devices;
  }

  private releaseSyncWaiters(): void {
    for (const done of [...this.syncWaiters]) done();
  }

  /**
   * Gets a just-approved device ready for its first connection: waits until it is in our netmap, then pings it
   * through WireGuard (TSMP), which completes the handshake. Without this the first TCP connection to a new device
   * waits about 5 s (measured), or fails at once while the device is not in the netmap yet. Best effort: false if
   * the device did not show up or answer within the time.
   */
  async warmUp(ip: string, timeoutMs = 10_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    let last = 'not in the netmap, or no DERP home or endpoints yet';
    while (Date.now() < deadline && !this.stopping) {
      try {
        // What it reads becomes our view too, so a connection right after the warm-up sees the device online.
        const peer = findPeer(await this.readStatus(2_000), ip);
        // A handshake sent before the peer has reported any way to reach it (DERP home or endpoints) is dropped
        // ("no UDP or DERP addr") and WireGuard only retries 5 s later, so wait for one first.
        if (peer?.Online === true && (peer.Relay || peer.Addrs?.length)) {
          const wait = Math.max(200, Math.min(3_000, deadline - Date.now()));
          const path = `/localapi/v0/ping?ip=${encodeURIComponent(ip)}&type=TSMP`;
          const answer = JSON.parse(await this.localApi.post(path, wait)) as { Err?: string };
          if (!answer.Err) return true;
          last = answer.Err;
        }
      } catch (err) {
        last = (err as Error).message;
      }
      await sleep(100);
    }
    this.log.warn({ ip, last }, 'could not warm up the path to a new device; its first connection may be slow');
    return false;
  }

  /** Starts tailscaled and resolves once it is Running; rejects (after stopping it) if that takes longer than TS_UP_TIMEOUT_MS. */
  async start(): Promise<void> {
    await mkdir(this.cfg.stateDir, { recursive: true, mode: 0o700 });
    await mkdir(path.dirname(this.cfg.socket), { recursive: true, mode: 0o700 });
    if (this.usesSocks && this.socksPortValue === 0) this.socksPortValue = await freeLoopbackPort();
    try {
      await this.launch(this.cfg.upTimeoutMs);
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /** SIGTERM, then SIGKILL after the grace period. Idempotent. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.setDown('tailscaled is stopped', 'stopped');
    clearTimeout(this.pollTimer);
    clearTimeout(this.restartTimer);
    clearTimeout(this.readyTimer);
    this.releaseSyncWaiters();
    this.upChild?.kill('SIGTERM');
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      let graceTimer: NodeJS.Timeout | undefined;
      const grace = new Promise<false>((resolve) => (graceTimer = setTimeout(() => resolve(false), this.stopGraceMs)));
      const killed = await Promise.race([exited.then(() => true), grace]);
      clearTimeout(graceTimer);
      if (!killed) {
        this.log.warn({ graceMs: this.stopGraceMs }, 'tailscaled ignored SIGTERM, killing it');
        child.kill('SIGKILL');
        await exited;
      }
    }
    await this.localApi.close().catch(() => undefined);
  }

  private setDown(reason: string, backendState: string): void {
    this.downReason = reason;
    this.current = { running: false, backendState, selfIps: this.current.selfIps, ready: false };
  }

  private async launch(upTimeoutMs: number): Promise<void> {
    this.launching = true;
    try {
      await this.bringUp(upTimeoutMs);
    } finally {
      this.launching = false;
    }
  }

  private async bringUp(upTimeoutMs: number): Promise<void> {
    const generation = ++this.generation;
    const deadline = Date.now() + upTimeoutMs;
    this.spawnDaemon(generation);
    let status = await this.waitForLocalApi(generation, deadline);
    if (status.BackendState !== 'Running') {
      status = await this.waitWhileStarting(generation, deadline, status);
    }
    if (status.BackendState === 'NeedsLogin' || status.BackendState === 'Stopped' || status.BackendState === 'NoState') {
      await this.up(generation, deadline);
    }
    await this.waitUntilRunning(generation, deadline);
    this.backoffMs = this.minBackoffMs;
    this.beginReadiness(generation);
    this.schedulePoll(generation);
  }

  /**
   * Running on the disk cache is not ready: the cached netmap may hold no peers, and the first handshake with a device
   * can be dropped and retried 5 s later. Ready once control's netmap arrived and the registered devices are warmed up,
   * or once the ready timeout passed (control unreachable: serve with what we have, and say so).
   */
  private beginReadiness(generation: number): void {
    clearTimeout(this.readyTimer);
    this.readinessBegun = true;
    if (this.runReady) return;
    const timeoutMs = this.cfg.readyTimeoutMs;
    this.readyTimer = setTimeout(() => {
      if (generation !== this.generation || this.runReady || this.stopping) return;
      this.log.warn({ timeoutMs, waitingFor: this.waitingFor }, 'tailnet not ready within TS_READY_TIMEOUT_MS; serving with the netmap tailscaled has');
      this.markReady();
    }, timeoutMs);
    this.readyTimer.unref();
    if (this.synced) void this.warmUpRegistered(generation);
  }

  private markReady(): void {
    clearTimeout(this.readyTimer);
    this.runReady = true;
    this.releaseSyncWaiters();
    if (this.current.running) this.current = { ...this.current, ready: true, waitingFor: undefined };
  }

  private async warmUpRegistered(generation: number): Promise<void> {
    const started = Date.now();
    let ips: string[] = [];
    try {
      ips = (await this.registeredDevices?.()) ?? [];
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'cannot list the registered devices to warm them up');
    }
    // Devices control reports offline cannot be warmed up; waiting for them would only delay readiness.
    const online = [...new Set(ips)].filter((ip) => this.peers.get(ip)?.Online === true);
    if (generation !== this.generation || this.stopping) return;
    this.waitingFor = `the warm-up of ${online.length} registered device(s)`;
    if (this.current.running) this.current = { ...this.current, waitingFor: this.waitingFor };
    let warmed = 0;
    let next = 0;
    const budget = Math.max(1_000, this.cfg.readyTimeoutMs - (Date.now() - started));
    const worker = async () => {
      while (next < online.length && generation === this.generation && !this.stopping) {
        const ip = online[next++]!;
        if (await this.warmUp(ip, budget)) warmed++;
      }
    };
    await Promise.all(Array.from({ length: Math.min(WARM_UP_CONCURRENCY, online.length) }, worker));
    if (generation !== this.generation || this.stopping || this.runReady) return;
    this.log.info({ registered: ips.length, online: online.length, warmed, ms: Date.now() - started }, 'tailnet ready: netmap from control, registered devices warmed up');
    this.markReady();
  }

  private spawnDaemon(generation: number): void {
    const args = [`--statedir=${this.cfg.stateDir}`, `--socket=${this.cfg.socket}`];
    if (this.cfg.userspace) args.push('--tun=userspace-networking');
    if (this.usesSocks) args.push(`--socks5-server=127.0.0.1:${this.socksPortValue}`);
    args.push(...this.cfg.tailscaledExtraArgs);

    const env = { ...process.env };
    for (const name of SECRET_ENV) delete env[name];
    const child = spawn(this.cfg.tailscaledBin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.synced = false;
    this.runReady = false;
    this.readinessBegun = false;
    this.waitingFor = 'a netmap from control';
    clearTimeout(this.readyTimer);
    this.setDown('tailscaled is starting', 'starting');
    this.pipeOutput(child, 'tailscaled');
    child.once('error', (err) => {
      this.log.error({ err: err.message, bin: this.cfg.tailscaledBin }, 'cannot run tailscaled');
    });
    child.once('exit', (code, signal) => this.onDaemonExit(generation, code, signal));
    this.log.info({ pid: child.pid, args }, 'tailscaled started');
  }

  private onDaemonExit(generation: number, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.stopping || generation !== this.generation) return;
    this.setDown(`tailscaled exited (${signal ?? `code ${code}`}); restarting`, 'restarting');
    this.peers = new Map();
    this.peersAsOf = performance.now();
    clearTimeout(this.pollTimer);
    // A launch in progress notices the exit itself and schedules the retry.
    if (this.launching) return;
    this.log.error({ code, signal, restartInMs: this.backoffMs }, 'tailscaled exited; restarting');
    this.scheduleRestart();
  }

  private scheduleRestart(): void {
    if (this.stopping) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.maxBackoffMs);
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => void this.restart(), delay);
  }

  private async restart(): Promise<void> {
    if (this.stopping) return;
    this.restarts++;
    try {
      // No overall deadline after the first start: keep trying with backoff; each attempt gets the up timeout.
      await this.launch(this.cfg.upTimeoutMs);
      this.log.info({ restarts: this.restarts }, 'tailscaled is Running again');
    } catch (err) {
      if (this.stopping) return;
      this.log.error({ err: (err as Error).message, retryInMs: this.backoffMs }, 'tailscaled restart failed');
      await this.killChild();
      this.scheduleRestart();
    }
  }

  private async killChild(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL');
    await exited;
  }

  private pipeOutput(proc: ChildProcess, name: string): void {
    const lines = (stream: NodeJS.ReadableStream | null) => {
      if (!stream) return;
      createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
        this.log.info(`${name}: ${this.scrub(line)}`);
      });
    };
    lines(proc.stdout);
    lines(proc.stderr);
  }

  private scrub(line: string): string {
    let out = line.replace(SECRET_PATTERN, '[redacted]');
    if (this.cfg.authKey.length >= 8 && out.includes(this.cfg.authKey)) out = out.split(this.cfg.authKey).join('[redacted]');
    return out;
  }

  private checkAlive(generation: number): void {
    if (this.stopping) throw new Error('tailnet supervisor is stopping');
    if (generation !== this.generation || !this.child || this.child.exitCode !== null || this.child.signalCode !== null) {
      throw new Error('tailscaled exited during start-up (see the tailscaled: lines above)');
    }
  }

  private async waitForLocalApi(generation: number, deadline: number): Promise<LocalStatus> {
    let lastErr = '';
    while (Date.now() < deadline) {
      this.checkAlive(generation);
      try {
        return await this.localApi.status(2_000);
      } catch (err) {
        lastErr = (err as Error).message;
      }
      await sleep(100);
    }
    throw new Error(`tailscaled's LocalAPI did not answer on ${this.cfg.socket} in time (${lastErr})`);
  }

  private async waitWhileStarting(generation: number, deadline: number, status: LocalStatus): Promise<LocalStatus> {
    // NoState right after start means "still reading its state file"; give it a moment to settle.
    const settleBy = Math.min(deadline, Date.now() + 5_000);
    while ((status.BackendState === 'NoState' || status.BackendState === 'Starting') && Date.now() < settleBy) {
      await sleep(200);
      this.checkAlive(generation);
      status = await this.localApi.status(2_000);
    }
    return status;
  }

  private async up(generation: number, deadline: number): Promise<void> {
    // The key reaches `tailscale up` through a 0600 file: never its argv (visible in ps) nor its environment.
    const keyFile = path.join(this.cfg.stateDir, `.authkey-${process.pid}`);
    await writeFile(keyFile, this.cfg.authKey, { mode: 0o600 });
    const timeoutS = Math.max(1, Math.ceil((deadline - Date.now()) / 1000));
    const args = [`--socket=${this.cfg.socket}`, 'up', '--reset', `--auth-key=file:${keyFile}`, `--hostname=${this.cfg.hostname}`, '--accept-dns=false', `--timeout=${timeoutS}s`];
    if (this.cfg.loginServer) args.push(`--login-server=${this.cfg.loginServer}`);
    args.push(...this.cfg.upExtraArgs);
    this.log.info({ loginServer: this.cfg.loginServer ?? '(tailscale default)', hostname: this.cfg.hostname }, 'joining the tailnet (tailscale up)');
    try {
      await new Promise<void>((resolve, reject) => {
        const env = { ...process.env };
        for (const name of SECRET_ENV) delete env[name];
        const proc = spawn(this.cfg.tailscaleBin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
        this.upChild = proc;
        const output: string[] = [];
        const collect = (chunk: Buffer) => output.push(this.scrub(chunk.toString('utf8')));
        proc.stdout?.on('data', collect);
        proc.stderr?.on('data', collect);
        proc.once('error', (err) => reject(new Error(`cannot run ${this.cfg.tailscaleBin}: ${err.message}`)));
        proc.once('exit', (code, signal) => {
          this.upChild = undefined;
          const text = output.join('').trim().replace(/\s+/g, ' ').slice(0, 400);
          if (code === 0) {
            if (text) this.log.info(`tailscale up: ${text}`);
            resolve();
          } else {
            reject(new Error(`tailscale up failed (${signal ?? `exit ${code}`}): ${text || 'no output'}`));
          }
        });
      });
    } finally {
      await rm(keyFile, { force: true });
    }
    this.checkAlive(generation);
  }

  private async waitUntilRunning(generation: number, deadline: number): Promise<void> {
    let state = '';
    while (Date.now() < deadline) {
      this.checkAlive(generation);
      try {
        const status = await this.readStatus(2_000);
        state = status.BackendState;
        if (status.BackendState === 'Running') return;
      } catch (err) {
        state = (err as Error).message;
      }
      await sleep(200);
    }
    throw new Error(`tailscaled did not reach Running within ${this.cfg.upTimeoutMs} ms (last state: ${state || 'unknown'})`);
  }

  /** Reads the status and makes it our view, unless tailscaled was restarted meanwhile or a newer read landed first. */
  private async readStatus(timeoutMs: number): Promise<LocalStatus> {
    const generation = this.generation;
    const startedAt = performance.now();
    const status = await this.localApi.status(timeoutMs);
    if (generation === this.generation && !this.stopping && startedAt >= this.peersAsOf) {
      this.peersAsOf = startedAt;
      this.apply(status);
    }
    return status;
  }

  private apply(status: LocalStatus): void {
    const running = status.BackendState === 'Running';
    const selfIps = status.Self?.TailscaleIPs ?? status.TailscaleIPs ?? [];
    const wasRunning = this.current.running;
    const previous = this.peers;
    this.peers = peersByIp(status);
    this.downReason = running ? null : `tailnet is not up (tailscaled state ${status.BackendState})`;
    if (wasRunning !== running) this.log.info({ backendState: status.BackendState, selfIps }, running ? 'tailnet is up' : 'tailnet is down');
    if (running && !this.synced && status.Self?.Online === true) {
      this.synced = true;
      this.log.info({ peers: Object.keys(status.Peer ?? {}).length }, 'netmap from control received');
      this.releaseSyncWaiters();
      // Until bringUp() has seen Running, beginReadiness() starts the warm-up instead.
      if (this.readinessBegun) void this.warmUpRegistered(this.generation);
    }
    const ready = running && this.runReady;
    this.current = { running, backendState: status.BackendState, selfIps, ready, ...(running && !ready ? { waitingFor: this.waitingFor } : {}) };
    if (this.offlineListeners.size > 0) {
      for (const [ip, peer] of previous) {
        if (peer.Online === true && this.peers.get(ip)?.Online !== true) for (const listener of this.offlineListeners) listener(ip);
      }
    }
  }

  private schedulePoll(generation: number): void {
    clearTimeout(this.pollTimer);
    this.pollTimer = setTimeout(() => this.poll(generation), this.synced ? this.pollMs : Math.min(this.pollMs, SYNC_POLL_MS));
    this.pollTimer.unref();
  }

  /**
   * Logged out while running (Headscale expired the node's key): join again with the auth key, which works while it
   * is reusable and valid, at most once per REJOIN_INTERVAL_MS so a dead key is not hammered. (A node *deleted* in
   * Headscale is not reported as logged out: tailscaled stays "Running" on its last netmap while control answers 404.)
   */
  private async rejoin(generation: number): Promise<void> {
    if (Date.now() - this.lastRejoin < REJOIN_INTERVAL_MS) return;
    this.lastRejoin = Date.now();
    this.log.warn('tailscaled was logged out (node key expired in Headscale?); joining again with TS_AUTHKEY');
    try {
      await this.up(generation, Date.now() + this.cfg.upTimeoutMs);
    } catch (err) {
      this.log.error({ err: (err as Error).message, retryInMs: REJOIN_INTERVAL_MS }, 'joining again failed');
    }
  }

  private async poll(generation: number): Promise<void> {
    if (this.stopping || generation !== this.generation) return;
    try {
      const status = await this.readStatus(Math.max(1_000, this.pollMs * 2));
      if (generation !== this.generation || this.stopping) return;
      if (status.BackendState === 'NeedsLogin') await this.rejoin(generation);
    } catch (err) {
      if (generation !== this.generation || this.stopping) return;
      if (this.current.running) this.log.warn({ err: (err as Error).message }, 'tailscaled LocalAPI not answering');
      this.setDown('tailscaled is not answering', 'unresponsive');
    }
    this.schedulePoll(generation);
  }
}
