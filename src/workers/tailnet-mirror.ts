// The supervised tailscaled lives in the primary; a worker sees it through a mirror of what the connector and the
// device board ask of it: whether the tailnet is up (state, unavailableReason) and which peers are online. The primary
// publishes a full picture when a worker says hello, then every change (peer changes as they happen, the state when a
// poll finds it changed). What the mirror cannot do is ask tailscaled itself (checkPeer, controlSync, warmUp, answers):
// a worker takes the mirror at its word, and the primary warms up devices for all.
import type { TailnetState, TailnetView } from '../tailnet/types.js';

export interface TailnetSnapshot {
  state: TailnetState;
  unavailable: string | null;
  /** Peers' online state by tailnet IP: every registered device's when `full`, else the ones that changed. */
  peers: [ip: string, online: boolean | undefined][];
  full: boolean;
}

/** The worker's side. */
export class TailnetMirror implements TailnetView {
  private current: TailnetState = { running: false, backendState: 'starting', selfIps: [], ready: false };
  private unavailable: string | null = 'waiting for the primary to report the tailnet';
  private readonly peers = new Map<string, boolean | undefined>();
  private readonly listeners = new Set<(ip: string, online: boolean | undefined) => void>();
  private received!: () => void;
  /** Settles with the first snapshot. */
  readonly first = new Promise<void>((resolve) => (this.received = resolve));

  apply(s: TailnetSnapshot): void {
    this.current = s.state;
    this.unavailable = s.unavailable;
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
}

/** The primary's side: what to send, and when. */
export class TailnetPublisher {
  private last = '';
  private timer: NodeJS.Timeout | undefined;
  private readonly unwatch: (() => void) | undefined;

  constructor(
    private readonly view: TailnetView,
    private readonly publish: (s: TailnetSnapshot) => void,
    pollMs = 250,
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

  private now(): { state: TailnetState; unavailable: string | null } {
    return { state: this.view.state(), unavailable: this.view.unavailableReason() };
  }

  close(): void {
    clearInterval(this.timer);
    this.unwatch?.();
  }
}
