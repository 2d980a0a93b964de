export interface TailnetState {
  /** True once tailscaled reports BackendState Running. */
  running: boolean;
  /** tailscaled's BackendState, or a word of ours such as "starting", "restarting", "stopped". */
  backendState: string;
  /** Our own tailnet addresses. */
  selfIps: string[];
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

/** Read-only view of the supervised tailscaled, for readiness, /nodes and failing fast. */
export interface TailnetView {
  state(): TailnetState;
  /** Online state of the peer with this tailnet IP in the latest status snapshot; undefined when the peer is unknown. */
  peerOnline(ip: string): boolean | undefined;
  /**
   * Reads tailscaled's status afresh (unless the snapshot is only a moment old) and reports on the peer. The snapshot
   * behind peerOnline() can be a poll interval old, so a caller about to refuse a connection because of it asks here
   * first. Optional: a view without one is taken at its word.
   */
  checkPeer?(ip: string, timeoutMs: number): Promise<PeerCheck>;
}
