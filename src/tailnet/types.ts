/** How tailgate dials devices through its tailscaled in userspace mode. */
export type TailnetDialMode = 'localapi' | 'socks5';

/** The supervised tailscaled's settings (TS_* and TAILSCALE*_BIN), validated by config.ts. */
export interface TailnetConfig {
  authKey: string;
  loginServer: string | undefined;
  hostname: string;
  stateDir: string;
  socket: string;
  userspace: boolean;
  tailscaledBin: string;
  tailscaleBin: string;
  dialMode: TailnetDialMode;
  /** Extra flags for `tailscale up`, split on whitespace. */
  upExtraArgs: string[];
  /** Extra flags for `tailscaled`, split on whitespace. */
  tailscaledExtraArgs: string[];
  upTimeoutMs: number;
  /**
   * After tailscaled is Running: how long readiness waits for a netmap from control (not only the disk cache) and the
   * warm-up of the registered devices, before the gateway calls itself ready anyway on what it has.
   */
  readyTimeoutMs: number;
}

export interface TailnetState {
  /** True once tailscaled reports BackendState Running. */
  running: boolean;
  /** tailscaled's BackendState, or a word of ours such as "starting", "restarting", "stopped". */
  backendState: string;
  /** Our own tailnet addresses. */
  selfIps: string[];
  /**
   * Running, and this run of tailscaled has had a netmap from control (not only its disk cache, which can hold no
   * peers at all) and has warmed up the registered devices; or the ready timeout passed, and we serve with what we have.
   */
  ready: boolean;
  /** While running but not ready: what readiness is waiting for. */
  waitingFor?: string;
}

/** What a status read taken just now says about one peer. */
export interface PeerCheck {
  /** Control's online flag (the peer keeps a control connection); undefined when the peer is not in the netmap. */
  online: boolean | undefined;
  /** We hold a WireGuard session with it young enough to carry packets without a new handshake. */
  liveSession: boolean;
  /** When control last saw it (ISO time), reported for offline peers only. */
  lastSeen?: string;
}

/** How tailscaled reaches one peer, as its latest status read says. */
export interface PeerLink {
  /** The last WireGuard handshake (ISO time); null when there was none. */
  lastHandshake: string | null;
  /** True when traffic goes through DERP, false when a direct path is in use, null when there is neither yet. */
  relayed: boolean | null;
}

/** Read-only view of the supervised tailscaled, for readiness, /nodes and failing fast. */
export interface TailnetView {
  state(): TailnetState;
  /** null when a dial can be attempted now; otherwise why not (the connector fails fast instead of waiting for a timeout). */
  unavailableReason(): string | null;
  /** Online state of the peer with this tailnet IP in the latest status snapshot; undefined when the peer is unknown. */
  peerOnline(ip: string): boolean | undefined;
  /** The link to the peer with this tailnet IP in the latest status snapshot; undefined when the peer is unknown. */
  peerLink?(ip: string): PeerLink | undefined;
  /**
   * Reads tailscaled's status afresh (unless the snapshot is only a moment old) and reports on the peer. The snapshot
   * behind peerOnline() can be a poll interval old, so a caller about to refuse a connection because of it asks here
   * first. Optional: a view without one is taken at its word.
   */
  checkPeer?(ip: string, timeoutMs: number): Promise<PeerCheck>;
  /**
   * Calls `listener` with the tailnet IP of every peer that a status read finds offline (or gone) after it was online.
   * Returns the function that stops it.
   */
  onPeerOffline?(listener: (ip: string) => void): () => void;
  /**
   * Calls `listener` with the tailnet IP of every peer whose online state a status read changed: true online, false
   * offline, undefined no longer known (gone from the netmap, or tailscaled itself gone). Returns the function that
   * stops it.
   */
  onPeerChange?(listener: (ip: string, online: boolean | undefined) => void): () => void;
  /**
   * null when a dial may go ahead now; otherwise a promise that settles once this run of tailscaled has its netmap from
   * control, or after `timeoutMs`, whichever is first. A dial right after a restart would otherwise go out on the cached
   * netmap, in which a registered device can be missing.
   */
  controlSync?(timeoutMs: number): Promise<void> | null;
  /**
   * Gets the path to a device ready for its first connection (waits until it is online in our netmap, then pings it);
   * one warm-up per device at a time. Best effort: false if it did not show up or answer within `timeoutMs`.
   */
  warmUp?(ip: string, timeoutMs?: number): Promise<boolean>;
  /**
   * Whether tailscaled answers a status read now: a fresh read (concurrent callers share it), never the snapshot. For a
   * connection that broke under us, to tell tailscaled dying from the device failing before the exit is noticed.
   */
  answers?(timeoutMs: number): Promise<boolean>;
  /**
   * The warm-up of this device in progress, if any (after approval, or after tailscaled restarted): a connection waits
   * for it rather than dial into a WireGuard handshake that may be lost, or be refused while the device is not yet
   * online in our netmap.
   */
  warming?(ip: string): Promise<boolean> | undefined;
  /** The devices (tailnet IPs) whose warm-up runs now: what a worker process's mirror is told (src/workers/). */
  warmingIps?(): string[];
}
