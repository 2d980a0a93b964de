// What the latest status read says about the peers: answers peerOnline() without I/O, re-reads for checkPeer(),
// and tells listeners which peers went offline between two reads.
import type { Clock } from './clock.js';
import { peerCheck, peerLink, peersByIp, type LocalPeerStatus, type LocalStatus } from './localapi.js';
import type { PeerCheck, PeerLink } from './types.js';

/** A snapshot at most this old answers checkPeer() without another read; concurrent checks share one read. */
const PEER_RECHECK_MS = 250;

export class StatusView {
  private peers = new Map<string, LocalPeerStatus>();
  /** When the read behind `peers` was started, so that an older read finishing later is dropped. */
  private asOf = -Infinity;
  private pendingRead: Promise<void> | undefined;
  private readonly offlineListeners = new Set<(ip: string) => void>();
  private readonly changeListeners = new Set<(ip: string, online: boolean | undefined) => void>();
  /** Our own tailnet addresses as last read; kept while tailscaled restarts. */
  selfIps: string[] = [];
  /** Peers in the last status read. */
  peerCount = 0;

  constructor(
    private readonly clock: Clock,
    /** Reads the status afresh; a read that is taken makes its way back through apply(). */
    private readonly read: (timeoutMs: number) => Promise<unknown>,
  ) {}

  peerOnline(ip: string): boolean | undefined {
    const peer = this.peers.get(ip);
    return peer === undefined ? undefined : peer.Online === true;
  }

  peerLink(ip: string): PeerLink | undefined {
    const peer = this.peers.get(ip);
    return peer === undefined ? undefined : peerLink(peer);
  }

  async checkPeer(ip: string, timeoutMs: number): Promise<PeerCheck> {
    if (this.clock.now() - this.asOf > PEER_RECHECK_MS) {
      this.pendingRead ??= this.read(timeoutMs)
        .then(() => undefined)
        .finally(() => (this.pendingRead = undefined));
      await this.pendingRead;
    }
    // Wall-clock time: it is compared with tailscaled's handshake times.
    return peerCheck(this.peers.get(ip), Date.now());
  }

  onPeerOffline(listener: (ip: string) => void): () => void {
    this.offlineListeners.add(listener);
    return () => this.offlineListeners.delete(listener);
  }

  onPeerChange(listener: (ip: string, online: boolean | undefined) => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  /** Takes a status read that started at `startedAt`, unless a read started later was taken already. */
  apply(status: LocalStatus, startedAt: number): boolean {
    if (startedAt < this.asOf) return false;
    this.asOf = startedAt;
    const previous = this.peers;
    this.peers = peersByIp(status);
    this.selfIps = status.Self?.TailscaleIPs ?? status.TailscaleIPs ?? [];
    this.peerCount = Object.keys(status.Peer ?? {}).length;
    if (this.offlineListeners.size > 0) {
      for (const [ip, peer] of previous) {
        if (peer.Online === true && this.peers.get(ip)?.Online !== true) for (const listener of this.offlineListeners) listener(ip);
      }
    }
    if (this.changeListeners.size > 0) this.announceChanges(previous);
    return true;
  }

  private announceChanges(previous: Map<string, LocalPeerStatus>): void {
    for (const [ip, peer] of this.peers) {
      const was = previous.get(ip);
      const online = peer.Online === true;
      if (was === undefined || (was.Online === true) !== online) for (const listener of this.changeListeners) listener(ip, online);
    }
    for (const ip of previous.keys()) {
      if (!this.peers.has(ip)) for (const listener of this.changeListeners) listener(ip, undefined);
    }
  }

  /** tailscaled is gone: no peer is known any more, and reads it answered before now are stale. */
  forget(): void {
    const previous = this.peers;
    this.peers = new Map();
    this.asOf = this.clock.now();
    if (this.changeListeners.size > 0) this.announceChanges(previous);
  }
}
