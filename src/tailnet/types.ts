export interface TailnetState {
  /** True once tailscaled reports BackendState Running. */
  running: boolean;
  /** tailscaled's BackendState, or a word of ours such as "starting", "restarting", "stopped". */
  backendState: string;
  /** Our own tailnet addresses. */
  selfIps: string[];
}

/** Read-only view of the supervised tailscaled, for readiness, /nodes and failing fast. */
export interface TailnetView {
  state(): TailnetState;
  /** Online state of the peer with this tailnet IP; undefined when the peer is unknown. */
  peerOnline(ip: string): boolean | undefined;
}
