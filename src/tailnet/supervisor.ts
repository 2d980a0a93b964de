// Runs tailscaled as our child: start, join the tailnet with the auth key, watch the backend state, restart on
// exit with capped exponential backoff, and stop it cleanly. Its phases and their transitions are in lifecycle.ts;
// this file drives them. Everything else reads the state through TailnetView, which answers from
// the latest status snapshot without any I/O; only checkPeer() reads a fresh one, for the rare caller about to
// refuse a connection because of the snapshot.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { TailnetConfig } from './types.js';
import type { Logger } from '../log.js';
import { bringUp } from './bring-up.js';
import { sleep, systemClock, type Clock } from './clock.js';
import { joinWithAuthKey, type JoinTailnet } from './join.js';
import {
  activeRun,
  awaitsControl,
  hasControl,
  latestRun,
  next,
  Run,
  tailnetState,
  unavailableReason,
  waitingFor,
  type Backoff,
  type Phase,
  type SupervisorEvent,
  type SupervisorState,
} from './lifecycle.js';
import { LocalApiClient, type LocalStatus } from './localapi.js';
import { warmUp, warmUpAll, type WarmUpDeps } from './readiness.js';
import { StatusView } from './status-view.js';
import { localApiOf, type TailscaledApi } from './tailscaled-api.js';
import { freeLoopbackPort, killTailscaled, spawnTailscaled, stopLeftoverTailscaleds, stopTailscaled, tailscaledArgs, type LaunchTailscaled } from './tailscaled-process.js';
import type { PeerCheck, PeerLink, TailnetState, TailnetView } from './types.js';

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

/** What the supervisor drives and reads. The defaults are the real ones; tests pass their own. */
export interface SupervisorSeams {
  clock: Clock;
  launch: LaunchTailscaled;
  join: JoinTailnet;
  api: TailscaledApi;
}

const REJOIN_INTERVAL_MS = 30_000;

/** Status poll period while a run waits for its first netmap from control: readiness should follow it closely. */
const SYNC_POLL_MS = 100;

const EXITED_DURING_START = 'tailscaled exited during start-up (see the tailscaled: lines above)';

export class TailscaledSupervisor implements TailnetView {
  /** tailscaled's LocalAPI client; measurements read it directly. */
  readonly localApi: LocalApiClient;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly launch: LaunchTailscaled;
  private readonly join: JoinTailnet;
  private readonly api: TailscaledApi;
  private readonly pollMs: number;
  private readonly backoff: Backoff;
  private readonly stopGraceMs: number;
  private socksPortValue: number;

  /** The one piece of state that decides everything else; changed only by dispatch(). */
  private current: SupervisorState = { phase: 'idle' };
  private readonly view: StatusView;
  /** Aborted by stop(): ends the backoff wait and the warm-ups asked for from outside. */
  private readonly lifetime = new AbortController();
  private stopping: Promise<void> | undefined;
  private readonly syncWaiters = new Set<() => void>();
  /** Tailnet IPs of the devices the gateway serves, warmed up after every (re)start. */
  private registeredDevices: (() => Promise<string[]>) | undefined;
  private runs = 0;
  private lastRejoinAt = -Infinity;
  /** Warm-ups of single devices in progress, by tailnet IP. */
  private readonly warmUps = new Map<string, Promise<boolean>>();
  private pendingAnswer: Promise<boolean> | undefined;

  constructor(
    private readonly cfg: TailnetConfig,
    log: Logger,
    opts: SupervisorOptions = {},
    seams: Partial<SupervisorSeams> = {},
  ) {
    this.log = log.child({ component: 'tailnet' });
    this.localApi = new LocalApiClient(cfg.socket);
    this.clock = seams.clock ?? systemClock;
    this.launch = seams.launch ?? spawnTailscaled(cfg, this.log);
    this.join = seams.join ?? joinWithAuthKey(cfg, this.log);
    this.api = seams.api ?? localApiOf(this.localApi);
    this.pollMs = opts.pollMs ?? 1_000;
    this.backoff = { minMs: opts.minBackoffMs ?? 500, maxMs: opts.maxBackoffMs ?? 30_000 };
    this.stopGraceMs = opts.stopGraceMs ?? 5_000;
    this.socksPortValue = opts.socksPort ?? 0;
    this.view = new StatusView(this.clock, (timeoutMs) => this.readStatus(activeRun(this.current), timeoutMs, this.lifetime.signal));
  }

  get socksPort(): number {
    return this.socksPortValue;
  }

  get usesSocks(): boolean {
    return this.cfg.userspace && this.cfg.dialMode === 'socks5';
  }

  /** pid of the running tailscaled (between runs: of the last one), for operators and tests. */
  get pid(): number | undefined {
    return latestRun(this.current)?.process.pid;
  }

  get restartCount(): number {
    return Math.max(0, this.runs - 1);
  }

  /** The supervisor's own phase (finer than state()), for operators and tests. */
  get phase(): Phase {
    return this.current.phase;
  }

  state(): TailnetState {
    return tailnetState(this.current, this.view.selfIps);
  }

  peerOnline(ip: string): boolean | undefined {
    return this.view.peerOnline(ip);
  }

  peerLink(ip: string): PeerLink | undefined {
    return this.view.peerLink(ip);
  }

  checkPeer(ip: string, timeoutMs: number): Promise<PeerCheck> {
    return this.view.checkPeer(ip, timeoutMs);
  }

  unavailableReason(): string | null {
    return unavailableReason(this.current);
  }

  onPeerChange(listener: (ip: string, online: boolean | undefined) => void): () => void {
    return this.view.onPeerChange(listener);
  }

  onPeerOffline(listener: (ip: string) => void): () => void {
    return this.view.onPeerOffline(listener);
  }

  controlSync(timeoutMs: number): Promise<void> | null {
    if (!awaitsControl(this.current)) return null;
    return new Promise<void>((resolve) => {
      const done = () => {
        cancel();
        this.syncWaiters.delete(done);
        resolve();
      };
      const cancel = this.clock.schedule(timeoutMs, done);
      this.syncWaiters.add(done);
    });
  }

  /** Which devices to warm up once a (re)started tailscaled has its netmap: the gateway's registered devices. */
  warmUpAfterStart(devices: () => Promise<string[]>): void {
    this.registeredDevices = devices;
  }

  /**
   * Gets a just-approved device ready for its first connection (see readiness.ts). Best effort: false if the device
   * did not show up or answer within the time.
   */
  warmUp(ip: string, timeoutMs = 10_000): Promise<boolean> {
    return this.tracked(ip, () => warmUp(this.warmUpDeps(undefined), ip, timeoutMs, this.lifetime.signal));
  }

  /** One warm-up per device at a time, visible to connections through warming() while it runs. */
  private tracked(ip: string, start: () => Promise<boolean>): Promise<boolean> {
    let pending = this.warmUps.get(ip);
    if (pending === undefined) {
      pending = start().finally(() => this.warmUps.delete(ip));
      this.warmUps.set(ip, pending);
    }
    return pending;
  }

  answers(timeoutMs: number): Promise<boolean> {
    this.pendingAnswer ??= this.api
      .status(timeoutMs, this.lifetime.signal)
      .then(
        () => true,
        () => false,
      )
      .finally(() => (this.pendingAnswer = undefined));
    return this.pendingAnswer;
  }

  warming(ip: string): Promise<boolean> | undefined {
    return this.warmUps.size === 0 ? undefined : this.warmUps.get(ip);
  }

  warmingIps(): string[] {
    return this.warmUps.size === 0 ? [] : [...this.warmUps.keys()];
  }

  /** Starts tailscaled and resolves once it is Running; rejects (after stopping it) if that takes longer than TS_UP_TIMEOUT_MS. */
  async start(): Promise<void> {
    await mkdir(this.cfg.stateDir, { recursive: true, mode: 0o700 });
    await mkdir(path.dirname(this.cfg.socket), { recursive: true, mode: 0o700 });
    if (this.usesSocks && this.socksPortValue === 0) this.socksPortValue = await freeLoopbackPort();
    try {
      await stopLeftoverTailscaleds(this.cfg.socket, this.stopGraceMs, this.log);
      await this.bringUp(this.spawn(0));
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /** SIGTERM, then SIGKILL after the grace period. Idempotent, and safe while start() is still waiting. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    const reason = new Error('tailnet supervisor is stopping');
    const run = latestRun(this.current);
    this.lifetime.abort(reason);
    this.dispatch({ type: 'stop' });
    run?.end(reason);
    if (run) await stopTailscaled(run.process, this.stopGraceMs, this.clock, this.log);
    await this.api.close().catch(() => undefined);
  }

  /** Moves to the state `event` leads to, if any; logs phase changes and runs what entering the new state starts. */
  private dispatch(event: SupervisorEvent): boolean {
    const from = this.current;
    const to = next(from, event, this.backoff);
    if (to === undefined) return false;
    this.current = to;
    if (to.phase !== from.phase) this.log.info({ from: from.phase, to: to.phase, run: latestRun(to)?.id }, `tailnet supervisor: ${from.phase} -> ${to.phase}`);
    this.enter(from, to);
    return true;
  }

  private enter(from: SupervisorState, to: SupervisorState): void {
    const cameUp = from.phase === 'starting' || from.phase === 'joining';
    switch (to.phase) {
      case 'waitingForControl':
        if (cameUp) this.onRunning(to.run);
        break;
      case 'warmingUp':
        if (cameUp) this.onRunning(to.run);
        if (from.phase !== 'warmingUp') this.onControl(to.run);
        break;
      case 'ready':
        if (from.phase !== 'ready') {
          to.run.cancelReadyTimer?.();
          this.releaseSyncWaiters();
        } else if (to.control && !hasControl(from)) {
          // Control came after the ready timeout: warm the devices up all the same, for their first connections.
          this.onControl(to.run);
        }
        break;
      case 'restarting':
        this.view.forget();
        void this.restartAfter(to.delayMs);
        break;
      case 'stopped':
        this.releaseSyncWaiters();
        break;
    }
  }

  /**
   * Running on the disk cache is not ready: the cached netmap may hold no peers, and the first handshake with a device
   * can be dropped and retried 5 s later. Ready once control's netmap arrived and the registered devices are warmed up,
   * or once the ready timeout passed (control unreachable: serve with what we have, and say so).
   */
  private onRunning(run: Run): void {
    const timeoutMs = this.cfg.readyTimeoutMs;
    run.cancelReadyTimer = this.clock.schedule(timeoutMs, () => {
      const before = waitingFor(this.current);
      if (this.dispatch({ type: 'readyTimeout', run })) {
        this.log.warn({ timeoutMs, waitingFor: before }, 'tailnet not ready within TS_READY_TIMEOUT_MS; serving with the netmap tailscaled has');
      }
    });
    void this.poll(run);
  }

  private onControl(run: Run): void {
    this.log.info({ peers: this.view.peerCount }, 'netmap from control received');
    this.releaseSyncWaiters();
    void this.warmUpRegistered(run);
  }

  private releaseSyncWaiters(): void {
    for (const done of [...this.syncWaiters]) done();
  }

  private async warmUpRegistered(run: Run): Promise<void> {
    const started = this.clock.now();
    let ips: string[] = [];
    try {
      ips = (await this.registeredDevices?.()) ?? [];
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'cannot list the registered devices to warm them up');
    }
    if (run.ended) return;
    // Devices control reports offline cannot be warmed up; waiting for them would only delay readiness.
    const online = [...new Set(ips)].filter((ip) => this.view.peerOnline(ip) === true);
    this.dispatch({ type: 'devicesListed', run, online: online.length });
    const budget = Math.max(1_000, this.cfg.readyTimeoutMs - (this.clock.now() - started));
    const deps = this.warmUpDeps(run);
    const warmed = await warmUpAll(online, (ip) => this.tracked(ip, () => warmUp(deps, ip, budget, run.signal)), run.signal);
    if (this.dispatch({ type: 'warmedUp', run })) {
      this.log.info({ registered: ips.length, online: online.length, warmed, ms: Math.round(this.clock.now() - started) }, 'tailnet ready: netmap from control, registered devices warmed up');
    }
  }

  /** Reads through `run`, or (asked from outside) through whichever run is current at each read. */
  private warmUpDeps(run: Run | undefined): WarmUpDeps {
    return { clock: this.clock, api: this.api, log: this.log, read: (timeoutMs, signal) => this.readStatus(run ?? activeRun(this.current), timeoutMs, signal) };
  }

  /** A new run of tailscaled; bringUp() takes it to Running. */
  private spawn(afterDelayMs: number): Run {
    this.lifetime.signal.throwIfAborted();
    if (this.current.phase !== 'idle' && this.current.phase !== 'restarting') throw new Error(`tailscaled cannot be started while ${this.current.phase}`);
    const proc = this.launch(tailscaledArgs(this.cfg, this.usesSocks ? this.socksPortValue : undefined));
    const run = new Run(++this.runs, proc, afterDelayMs);
    this.dispatch({ type: 'spawned', run });
    void proc.exited.then(({ code, signal }) => this.onExit(run, code, signal));
    return run;
  }

  private onExit(run: Run, code: number | null, signal: NodeJS.Signals | null): void {
    if (run.ended || activeRun(this.current) !== run) return;
    if (this.current.phase === 'starting' || this.current.phase === 'joining') {
      // bringUp() fails with this and its caller decides: start() gives up, a restart tries again later.
      run.end(new Error(EXITED_DURING_START));
      return;
    }
    run.end(new Error('tailscaled exited'));
    this.dispatch({ type: 'exited', run, reason: exitReason(code, signal) });
    this.log.error({ code, signal, restartInMs: this.pendingRestartMs() }, 'tailscaled exited; restarting');
  }

  private pendingRestartMs(): number | undefined {
    return this.current.phase === 'restarting' ? this.current.delayMs : undefined;
  }

  private async restartAfter(delayMs: number): Promise<void> {
    try {
      await sleep(this.clock, delayMs, this.lifetime.signal);
    } catch {
      return;
    }
    const run = this.spawn(delayMs);
    try {
      // No overall deadline after the first start: keep trying with backoff; each attempt gets the up timeout.
      await this.bringUp(run);
      this.log.info({ restarts: this.restartCount }, 'tailscaled is Running again');
    } catch (err) {
      if (this.lifetime.signal.aborted) return;
      run.end(err as Error);
      const { code, signal } = await killTailscaled(run.process);
      this.dispatch({ type: 'exited', run, reason: exitReason(code, signal) });
      this.log.error({ err: (err as Error).message, retryInMs: this.pendingRestartMs() }, 'tailscaled restart failed');
    }
  }

  /** From spawn to Running within TS_UP_TIMEOUT_MS (see bring-up.ts); then the run's readiness begins. */
  private async bringUp(run: Run): Promise<void> {
    const running = await bringUp(
      {
        clock: this.clock,
        api: this.api,
        join: this.join,
        read: (timeoutMs) => this.readStatus(run, timeoutMs, run.signal),
        joining: () => void this.dispatch({ type: 'joining', run }),
        socket: this.cfg.socket,
        upTimeoutMs: this.cfg.upTimeoutMs,
      },
      run.signal,
    );
    this.dispatch({ type: 'running', run, control: running.Self?.Online === true });
  }

  /**
   * Reads the status and makes it our view, unless it was read through a run that is over by now (a late read of an
   * earlier tailscaled says nothing about this one) or a read started later has landed first.
   */
  private async readStatus(run: Run | undefined, timeoutMs: number, signal: AbortSignal): Promise<LocalStatus> {
    const startedAt = this.clock.now();
    const status = await this.api.status(timeoutMs, signal);
    if (run !== undefined && !run.ended && activeRun(this.current) === run && this.view.apply(status, startedAt)) {
      const wasRunning = unavailableReason(this.current) === null;
      this.dispatch({ type: 'status', run, backendState: status.BackendState, control: status.Self?.Online === true });
      const running = unavailableReason(this.current) === null;
      if (running !== wasRunning) this.log.info({ backendState: status.BackendState, selfIps: this.view.selfIps }, running ? 'tailnet is up' : 'tailnet is down');
    }
    return status;
  }

  /** Polls the status while the run lasts: every pollMs, or every SYNC_POLL_MS until control's netmap came. */
  private async poll(run: Run): Promise<void> {
    for (;;) {
      try {
        await sleep(this.clock, hasControl(this.current) ? this.pollMs : Math.min(this.pollMs, SYNC_POLL_MS), run.signal);
      } catch {
        return;
      }
      try {
        const status = await this.readStatus(run, Math.max(1_000, this.pollMs * 2), run.signal);
        if (run.ended) return;
        if (status.BackendState === 'NeedsLogin') await this.rejoin(run);
      } catch (err) {
        if (run.ended) return;
        if (this.state().running) this.log.warn({ err: (err as Error).message }, 'tailscaled LocalAPI not answering');
        this.dispatch({ type: 'unresponsive', run });
      }
    }
  }

  /**
   * Logged out while running (Headscale expired the node's key): join again with the auth key, which works while it
   * is reusable and valid, at most once per REJOIN_INTERVAL_MS so a dead key is not hammered. (A node *deleted* in
   * Headscale is not reported as logged out: tailscaled stays "Running" on its last netmap while control answers 404.)
   */
  private async rejoin(run: Run): Promise<void> {
    const now = this.clock.now();
    if (now - this.lastRejoinAt < REJOIN_INTERVAL_MS) return;
    this.lastRejoinAt = now;
    this.log.warn('tailscaled was logged out (node key expired in Headscale?); joining again with TS_AUTHKEY');
    try {
      await this.join(this.cfg.upTimeoutMs, run.signal);
    } catch (err) {
      if (run.ended) return;
      this.log.error({ err: (err as Error).message, retryInMs: REJOIN_INTERVAL_MS }, 'joining again failed');
    }
  }
}

function exitReason(code: number | null, signal: NodeJS.Signals | null): string {
  return `tailscaled exited (${signal ?? `code ${code}`}); restarting`;
}
