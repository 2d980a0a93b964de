// The supervised tailscaled lives in the primary; a worker sees it through a mirror of what the connector and the
// device board ask of it. What every connection reads is answered from memory: whether the tailnet is up (state,
// unavailableReason), which peers are online, whether control's netmap is in, which devices are warming up. The
// primary publishes a full picture when a worker says hello, then every change (peer changes as they happen, the rest
// when a poll finds it changed). What asks tailscaled itself, only on the paths where a connection would otherwise
// be refused or dialled too early (checkPeer, answers, waiting for a warm-up or for control), is a call to the primary.
import type { PeerCheck, TailnetState, TailnetView } from '../tailnet/types.js';

/** The calls a worker's mirror makes to the primary's tailscaled view. */
export type TailnetCall = { method: 'checkPeer'; args: [ip: string, timeoutMs: number] } | { method: 'answers'; args: [timeoutMs: number] } | { method: 'controlSync'; args: [timeoutMs: number] } | { method: 'warming'; args: [ip: string] };

export interface TailnetSnapshot {
  state: TailnetState;
  unavailable: string | null;
  /** No wait for control's netmap is needed now (controlSync() would answer null). */
  synced: boolean;
  /** Devices being warmed up now. */
  warming: string[];
  /** Peers' online state by tailnet IP: every registered device's when `full`, else the ones that changed. */
  peers: [ip: string, online: boolean | undefined][];
  full: boolean;
}

/** The worker's side. */
export class TailnetMirror implements TailnetView {
  private current: TailnetState = { running: false, backendState: 'starting', selfIps: [], ready: false };
  private unavailable: string | null = 'waiting for the primary to report the tailnet';
  private synced = false;
  private warmingNow = new Set<string>();
  private readonly peers = new Map<string, boolean | undefined>();
  private readonly listeners = new Set<(ip: string, online: boolean | undefined) => void>();
  private received!: () => void;
  /** Settles with the first snapshot. */
  readonly first = new Promise<void>((resolve) => (this.received = resolve));

  constructor(private readonly call: (c: TailnetCall) => Promise<unknown>) {}

  apply(s: TailnetSnapshot): void {
    this.current = s.state;
    this.unavailable = s.unavailable;
    this.synced = s.synced;
    this.warmingNow = new Set(s.warming);
    if (s.full) this.peers.clear();
    for (const [ip, online] of s.peers) {
      const before = this.peers.get(ip);
      this.peers.set(ip, online);
      if (!s.full || before !== online) for (const l of this.listeners) l(ip, online);
    }
    this.received();
  }

  state(): TailnetState {
    return this.current;
  }

  unavailableReason(): string | null {
    return this.unavailable;
  }

  peerOnline(ip: string): boolean | undefined {
    return this.peers.get(ip);
  }

  onPeerChange(listener: (ip: string, online: boolean | undefined) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  checkPeer(ip: string, timeoutMs: number): Promise<PeerCheck> {
    return this.call({ method: 'checkPeer', args: [ip, timeoutMs] }) as Promise<PeerCheck>;
  }

  answers(timeoutMs: number): Promise<boolean> {
    return this.call({ method: 'answers', args: [timeoutMs] }) as Promise<boolean>;
  }

  controlSync(timeoutMs: number): Promise<void> | null {
    return this.synced ? null : (this.call({ method: 'controlSync', args: [timeoutMs] }) as Promise<void>);
  }

  /**
   * A device warming up, or one the mirror has not heard of yet (approved a moment ago: its warm-up may have started
   * since the last picture), is asked about; the primary answers when its warm-up is over, or at once without one.
   */
  warming(ip: string): Promise<boolean> | undefined {
    if (!this.warmingNow.has(ip) && this.peers.has(ip)) return undefined;
    return this.call({ method: 'warming', args: [ip] }) as Promise<boolean>;
  }
}

/** The primary's answer to a worker's TailnetCall. */
export function answerTailnetCall(view: TailnetView, c: TailnetCall): Promise<unknown> {
  switch (c.method) {
    case 'checkPeer':
      return view.checkPeer?.(...c.args) ?? Promise.resolve({ online: view.peerOnline(c.args[0]), liveSession: false });
    case 'answers':
      return view.answers?.(...c.args) ?? Promise.resolve(true);
    case 'controlSync':
      return view.controlSync?.(...c.args) ?? Promise.resolve();
    case 'warming':
      return view.warming?.(...c.args) ?? Promise.resolve(true);
  }
}

/** The primary's side: what to send, and when. */
export class TailnetPublisher {
  private last = '';
  private timer: NodeJS.Timeout | undefined;
  private readonly unwatch: (() => void) | undefined;

  constructor(
    private readonly view: TailnetView,
    private readonly publish: (s: TailnetSnapshot) => void,
    pollMs = 100,
  ) {
    this.unwatch = view.onPeerChange?.((ip, online) => this.publish({ ...this.now(), peers: [[ip, online]], full: false }));
    this.timer = setInterval(() => {
      const s = this.now();
      const text = JSON.stringify(s);
      if (text === this.last) return;
      this.last = text;
      this.publish({ ...s, peers: [], full: false });
    }, pollMs);
    this.timer.unref();
  }

  /** The whole picture for a worker that just started: the state, and the online state of every device address. */
  full(deviceIps: readonly string[]): TailnetSnapshot {
    return { ...this.now(), peers: deviceIps.map((ip) => [ip, this.view.peerOnline(ip)]), full: true };
  }

  private now(): Omit<TailnetSnapshot, 'peers' | 'full'> {
    const view = this.view;
    // controlSync(0) answers null when no wait is needed; otherwise its promise settles at once and is dropped.
    return { state: view.state(), unavailable: view.unavailableReason(), synced: (view.controlSync?.(0) ?? null) === null, warming: view.warmingIps?.() ?? [] };
  }

  close(): void {
    clearInterval(this.timer);
    this.unwatch?.();
  }
}
